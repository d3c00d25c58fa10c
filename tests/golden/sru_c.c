/*
 * sru: Simple Recurrent Unit
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec sru.toml,
 * sha256 45f1ce5263d9a88bff0cb8b0f833b0f73910686cec153818f315c4045b13ef55.
 * Regenerate: lstm-verify export sru --target c -o sru_c.c
 *
 * Sources: Lei, Zhang, Wang, Dai & Artzi 2018, Simple Recurrent Units for Highly Parallelizable Recurrence (EMNLP), eq. 1-4; sru 2.6.0, SRUCell(rescale=False)
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     f = sigmoid(lin(x) + v_f*c)
 *     c' = f*c + (1 - f)*lin(x, bias=false)
 *     r = sigmoid(lin(x) + v_r*c)
 *     h' = r*c' + (1 - r)*x
 *
 * Inputs: x (hidden). State: h (hidden), c (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_f_x: (hidden, hidden)
 *     W_c_x: (hidden, hidden)
 *     W_r_x: (hidden, hidden)
 *     b_f: (hidden,)
 *     b_r: (hidden,)
 *     v_f: (hidden,)
 *     v_r: (hidden,)
 *
 * Note: The gates see the previous cell through the per-unit vectors v_f, v_r; the candidate W x
 * has no bias; the highway adds x itself, so input_size = hidden_size. h' does not read h: h is a
 * state only as the cell's output. The sru package's default rescale=True multiplies the highway
 * x by sqrt(1 + 2 exp(highway_bias)), which no layout can express.
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   sru_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   sru_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; } sru_sizes;

static double lv_sigmoid_f64(double x) {
    /* stable: never exp of a large positive number */
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

typedef struct {
    const double *W_f_x;
    const double *W_c_x;
    const double *W_r_x;
    const double *b_f;
    const double *b_r;
    const double *v_f;
    const double *v_r;
} sru_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void sru_step_f64(const sru_sizes *n, const sru_params_f64 *p, const double *A_x, const double *A_h, const double *A_c, double *N_h, double *N_c, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_x = A_x + (size_t)b * n->hidden;
        const double *R_c = A_c + (size_t)b * n->hidden;
        double V_lin_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_f[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f_x[(size_t)j * n->hidden + k] * R_x[k];
            V_lin_f[j] = acc;
        }
        double V_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f[j] = lv_sigmoid_f64(R_c[j]*p->v_f[j] + V_lin_f[j]);
        }
        double V_lin_c[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = 0;
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_c_x[(size_t)j * n->hidden + k] * R_x[k];
            V_lin_c[j] = acc;
        }
        double V_c_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c_[j] = R_c[j]*V_f[j] + V_lin_c[j]*(1.0 - V_f[j]);
        }
        double V_lin_r[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_r[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_r_x[(size_t)j * n->hidden + k] * R_x[k];
            V_lin_r[j] = acc;
        }
        double V_r[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_r[j] = lv_sigmoid_f64(R_c[j]*p->v_r[j] + V_lin_r[j]);
        }
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_x[j]*(1.0 - V_r[j]) + V_c_[j]*V_r[j];
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
        memcpy(N_c + (size_t)b * n->hidden, V_c_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int sru_sequence_f64(const sru_sizes *n, const sru_params_f64 *p, const double *A_x, double *A_h, double *A_c, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    double *X_c = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_c) {
        free(X_h);
        free(X_c);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        sru_step_f64(n, p, A_x + (size_t)t * batch * n->hidden, A_h, A_c, X_h, X_c, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_c, X_c, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    free(X_c);
    return 0;
}

static float lv_sigmoid_f32(float x) {
    /* stable: never exp of a large positive number */
    float e = expf(-fabsf(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

typedef struct {
    const float *W_f_x;
    const float *W_c_x;
    const float *W_r_x;
    const float *b_f;
    const float *b_r;
    const float *v_f;
    const float *v_r;
} sru_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void sru_step_f32(const sru_sizes *n, const sru_params_f32 *p, const float *A_x, const float *A_h, const float *A_c, float *N_h, float *N_c, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_x = A_x + (size_t)b * n->hidden;
        const float *R_c = A_c + (size_t)b * n->hidden;
        float V_lin_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_f[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f_x[(size_t)j * n->hidden + k] * R_x[k];
            V_lin_f[j] = acc;
        }
        float V_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f[j] = lv_sigmoid_f32(R_c[j]*p->v_f[j] + V_lin_f[j]);
        }
        float V_lin_c[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = 0;
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_c_x[(size_t)j * n->hidden + k] * R_x[k];
            V_lin_c[j] = acc;
        }
        float V_c_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c_[j] = R_c[j]*V_f[j] + V_lin_c[j]*(1.0 - V_f[j]);
        }
        float V_lin_r[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_r[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_r_x[(size_t)j * n->hidden + k] * R_x[k];
            V_lin_r[j] = acc;
        }
        float V_r[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_r[j] = lv_sigmoid_f32(R_c[j]*p->v_r[j] + V_lin_r[j]);
        }
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_x[j]*(1.0 - V_r[j]) + V_c_[j]*V_r[j];
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
        memcpy(N_c + (size_t)b * n->hidden, V_c_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int sru_sequence_f32(const sru_sizes *n, const sru_params_f32 *p, const float *A_x, float *A_h, float *A_c, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    float *X_c = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_c) {
        free(X_h);
        free(X_c);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        sru_step_f32(n, p, A_x + (size_t)t * batch * n->hidden, A_h, A_c, X_h, X_c, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_c, X_c, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    free(X_c);
    return 0;
}
