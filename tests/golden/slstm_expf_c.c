/*
 * slstm_expf: sLSTM (xLSTM), stabilised, exponential forget gate
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec slstm_expf.toml,
 * sha256 8d7fe60fb292730eef786275dc6ddf1d877cadccccc104a2345d8223863aabfa.
 * Regenerate: lstm-verify export slstm_expf --target c -o slstm_expf_c.c
 *
 * Sources: Beck, P\u00f6ppel, Spanring, Auer, Prudnikova, Kopp, Klambauer, Brandstetter & Hochreiter 2024, xLSTM: Extended Long Short-Term Memory, eq. 8-17 (sLSTM, f = exp(f~)) and the stabiliser of Section 2.2
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     zt = lin(x, h)
 *     it = lin(x, h)
 *     ft = lin(x, h)
 *     ot = lin(x, h)
 *     m' = max(ft + m, it)
 *     i = exp(it - m')
 *     f = exp(ft + m - m')
 *     c' = f*c + i*tanh(zt)
 *     n' = f*n + i
 *     h' = sigmoid(ot)*c'/n'
 *
 * Inputs: x (input). State: h (hidden), c (hidden), n (hidden), m (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_zt_x: (hidden, input)
 *     W_zt_h: (hidden, hidden), structural zeros where the mask fails
 *     W_it_x: (hidden, input)
 *     W_it_h: (hidden, hidden), structural zeros where the mask fails
 *     W_ft_x: (hidden, input)
 *     W_ft_h: (hidden, hidden), structural zeros where the mask fails
 *     W_ot_x: (hidden, input)
 *     W_ot_h: (hidden, hidden), structural zeros where the mask fails
 *     b_zt: (hidden,)
 *     b_it: (hidden,)
 *     b_ft: (hidden,)
 *     b_ot: (hidden,)
 *     head: (hidden,) fixed buffer, heads(heads=4)
 *
 * Note: slstm with the paper's other forget gate, f = exp(f~): log f = f~, so m' = max(f~ + m,
 * i~). Both gates are exponential, and only the stabiliser keeps c and n finite. Recurrent
 * weights block-diagonal per head (4 heads). Initial states are drawn with n in [0, 1].
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   slstm_expf_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   slstm_expf_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; int input; } slstm_expf_sizes;

static double lv_sigmoid_f64(double x) {
    /* stable: never exp of a large positive number */
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static double lv_tanh_f64(double x) { return tanh(x); }
static double lv_exp_f64(double x) { return exp(x); }
static double lv_max_f64(double a, double b) { return (a >= b || a != a) ? a : b; }

typedef struct {
    const double *W_zt_x;
    const double *W_zt_h;
    const double *W_it_x;
    const double *W_it_h;
    const double *W_ft_x;
    const double *W_ft_h;
    const double *W_ot_x;
    const double *W_ot_h;
    const double *b_zt;
    const double *b_it;
    const double *b_ft;
    const double *b_ot;
    const double *head;
} slstm_expf_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void slstm_expf_step_f64(const slstm_expf_sizes *n, const slstm_expf_params_f64 *p, const double *A_x, const double *A_h, const double *A_c, const double *A_n, const double *A_m, double *N_h, double *N_c, double *N_n, double *N_m, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_x = A_x + (size_t)b * n->input;
        const double *R_h = A_h + (size_t)b * n->hidden;
        const double *R_c = A_c + (size_t)b * n->hidden;
        const double *R_n = A_n + (size_t)b * n->hidden;
        const double *R_m = A_m + (size_t)b * n->hidden;
        double V_lin_zt[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_zt[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_zt_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                if (p->head[k] == p->head[j]) acc += p->W_zt_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_zt[j] = acc;
        }
        double V_zt[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_zt[j] = V_lin_zt[j];
        }
        double V_lin_it[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_it[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_it_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                if (p->head[k] == p->head[j]) acc += p->W_it_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_it[j] = acc;
        }
        double V_it[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_it[j] = V_lin_it[j];
        }
        double V_lin_ft[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_ft[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_ft_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                if (p->head[k] == p->head[j]) acc += p->W_ft_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_ft[j] = acc;
        }
        double V_ft[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_ft[j] = V_lin_ft[j];
        }
        double V_lin_ot[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_ot[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_ot_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                if (p->head[k] == p->head[j]) acc += p->W_ot_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_ot[j] = acc;
        }
        double V_ot[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_ot[j] = V_lin_ot[j];
        }
        double V_m_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_m_[j] = lv_max_f64(R_m[j] + V_ft[j], V_it[j]);
        }
        double V_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_i[j] = lv_exp_f64(V_it[j] - V_m_[j]);
        }
        double V_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f[j] = lv_exp_f64(R_m[j] + V_ft[j] - V_m_[j]);
        }
        double V_c_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c_[j] = R_c[j]*V_f[j] + V_i[j]*lv_tanh_f64(V_zt[j]);
        }
        double V_n_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_n_[j] = R_n[j]*V_f[j] + V_i[j];
        }
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = V_c_[j]*lv_sigmoid_f64(V_ot[j])/V_n_[j];
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
        memcpy(N_c + (size_t)b * n->hidden, V_c_, sizeof(double) * (size_t)n->hidden);
        memcpy(N_n + (size_t)b * n->hidden, V_n_, sizeof(double) * (size_t)n->hidden);
        memcpy(N_m + (size_t)b * n->hidden, V_m_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int slstm_expf_sequence_f64(const slstm_expf_sizes *n, const slstm_expf_params_f64 *p, const double *A_x, double *A_h, double *A_c, double *A_n, double *A_m, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    double *X_c = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    double *X_n = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    double *X_m = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_c || !X_n || !X_m) {
        free(X_h);
        free(X_c);
        free(X_n);
        free(X_m);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        slstm_expf_step_f64(n, p, A_x + (size_t)t * batch * n->input, A_h, A_c, A_n, A_m, X_h, X_c, X_n, X_m, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_c, X_c, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_n, X_n, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_m, X_m, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    free(X_c);
    free(X_n);
    free(X_m);
    return 0;
}

static float lv_sigmoid_f32(float x) {
    /* stable: never exp of a large positive number */
    float e = expf(-fabsf(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static float lv_tanh_f32(float x) { return tanhf(x); }
static float lv_exp_f32(float x) { return expf(x); }
static float lv_max_f32(float a, float b) { return (a >= b || a != a) ? a : b; }

typedef struct {
    const float *W_zt_x;
    const float *W_zt_h;
    const float *W_it_x;
    const float *W_it_h;
    const float *W_ft_x;
    const float *W_ft_h;
    const float *W_ot_x;
    const float *W_ot_h;
    const float *b_zt;
    const float *b_it;
    const float *b_ft;
    const float *b_ot;
    const float *head;
} slstm_expf_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void slstm_expf_step_f32(const slstm_expf_sizes *n, const slstm_expf_params_f32 *p, const float *A_x, const float *A_h, const float *A_c, const float *A_n, const float *A_m, float *N_h, float *N_c, float *N_n, float *N_m, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_x = A_x + (size_t)b * n->input;
        const float *R_h = A_h + (size_t)b * n->hidden;
        const float *R_c = A_c + (size_t)b * n->hidden;
        const float *R_n = A_n + (size_t)b * n->hidden;
        const float *R_m = A_m + (size_t)b * n->hidden;
        float V_lin_zt[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_zt[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_zt_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                if (p->head[k] == p->head[j]) acc += p->W_zt_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_zt[j] = acc;
        }
        float V_zt[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_zt[j] = V_lin_zt[j];
        }
        float V_lin_it[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_it[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_it_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                if (p->head[k] == p->head[j]) acc += p->W_it_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_it[j] = acc;
        }
        float V_it[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_it[j] = V_lin_it[j];
        }
        float V_lin_ft[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_ft[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_ft_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                if (p->head[k] == p->head[j]) acc += p->W_ft_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_ft[j] = acc;
        }
        float V_ft[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_ft[j] = V_lin_ft[j];
        }
        float V_lin_ot[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_ot[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_ot_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                if (p->head[k] == p->head[j]) acc += p->W_ot_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_ot[j] = acc;
        }
        float V_ot[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_ot[j] = V_lin_ot[j];
        }
        float V_m_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_m_[j] = lv_max_f32(R_m[j] + V_ft[j], V_it[j]);
        }
        float V_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_i[j] = lv_exp_f32(V_it[j] - V_m_[j]);
        }
        float V_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f[j] = lv_exp_f32(R_m[j] + V_ft[j] - V_m_[j]);
        }
        float V_c_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c_[j] = R_c[j]*V_f[j] + V_i[j]*lv_tanh_f32(V_zt[j]);
        }
        float V_n_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_n_[j] = R_n[j]*V_f[j] + V_i[j];
        }
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = V_c_[j]*lv_sigmoid_f32(V_ot[j])/V_n_[j];
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
        memcpy(N_c + (size_t)b * n->hidden, V_c_, sizeof(float) * (size_t)n->hidden);
        memcpy(N_n + (size_t)b * n->hidden, V_n_, sizeof(float) * (size_t)n->hidden);
        memcpy(N_m + (size_t)b * n->hidden, V_m_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int slstm_expf_sequence_f32(const slstm_expf_sizes *n, const slstm_expf_params_f32 *p, const float *A_x, float *A_h, float *A_c, float *A_n, float *A_m, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    float *X_c = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    float *X_n = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    float *X_m = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_c || !X_n || !X_m) {
        free(X_h);
        free(X_c);
        free(X_n);
        free(X_m);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        slstm_expf_step_f32(n, p, A_x + (size_t)t * batch * n->input, A_h, A_c, A_n, A_m, X_h, X_c, X_n, X_m, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_c, X_c, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_n, X_n, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_m, X_m, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    free(X_c);
    free(X_n);
    free(X_m);
    return 0;
}
