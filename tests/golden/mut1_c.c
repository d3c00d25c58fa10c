/*
 * mut1: MUT1 (architecture search)
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec mut1.toml,
 * sha256 1d3aaeed57a3cd9fd0ce8c0a155c2643284433c532bf58817f09ea5ea414e4a5.
 * Regenerate: lstm-verify export mut1 --target c -o mut1_c.c
 *
 * Sources: Jozefowicz, Zaremba & Sutskever 2015, An Empirical Exploration of Recurrent Network Architectures, MUT1
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     z = sigmoid(lin(x))
 *     r = sigmoid(lin(x, h))
 *     h' = tanh(lin(r*h) + tanh(x))*z + h*(1 - z)
 *
 * Inputs: x (hidden). State: h (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_z_x: (hidden, hidden)
 *     W_r_x: (hidden, hidden)
 *     W_r_h: (hidden, hidden)
 *     W_h_h: (hidden, hidden)
 *     b_z: (hidden,)
 *     b_r: (hidden,)
 *     b_h: (hidden,)
 *
 * Note: z weights h, 1 - z the candidate: the opposite of their GRU's convention. Adds tanh(x),
 * so input_size = hidden_size.
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   mut1_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   mut1_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; } mut1_sizes;

static double lv_sigmoid_f64(double x) {
    /* stable: never exp of a large positive number */
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static double lv_tanh_f64(double x) { return tanh(x); }

typedef struct {
    const double *W_z_x;
    const double *W_r_x;
    const double *W_r_h;
    const double *W_h_h;
    const double *b_z;
    const double *b_r;
    const double *b_h;
} mut1_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void mut1_step_f64(const mut1_sizes *n, const mut1_params_f64 *p, const double *A_x, const double *A_h, double *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_x = A_x + (size_t)b * n->hidden;
        const double *R_h = A_h + (size_t)b * n->hidden;
        double V_lin_z[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_z[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_z_x[(size_t)j * n->hidden + k] * R_x[k];
            V_lin_z[j] = acc;
        }
        double V_z[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_z[j] = lv_sigmoid_f64(V_lin_z[j]);
        }
        double V_lin_r[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_r[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_r_x[(size_t)j * n->hidden + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_r_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_r[j] = acc;
        }
        double V_r[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_r[j] = lv_sigmoid_f64(V_lin_r[j]);
        }
        double V_h_h_in[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_h_in[j] = R_h[j]*V_r[j];
        }
        double V_lin_h[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_h[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_h_h[(size_t)j * n->hidden + k] * V_h_h_in[k];
            V_lin_h[j] = acc;
        }
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_h[j]*(1.0 - V_z[j]) + V_z[j]*lv_tanh_f64(V_lin_h[j] + lv_tanh_f64(R_x[j]));
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int mut1_sequence_f64(const mut1_sizes *n, const mut1_params_f64 *p, const double *A_x, double *A_h, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        mut1_step_f64(n, p, A_x + (size_t)t * batch * n->hidden, A_h, X_h, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    return 0;
}

static float lv_sigmoid_f32(float x) {
    /* stable: never exp of a large positive number */
    float e = expf(-fabsf(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static float lv_tanh_f32(float x) { return tanhf(x); }

typedef struct {
    const float *W_z_x;
    const float *W_r_x;
    const float *W_r_h;
    const float *W_h_h;
    const float *b_z;
    const float *b_r;
    const float *b_h;
} mut1_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void mut1_step_f32(const mut1_sizes *n, const mut1_params_f32 *p, const float *A_x, const float *A_h, float *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_x = A_x + (size_t)b * n->hidden;
        const float *R_h = A_h + (size_t)b * n->hidden;
        float V_lin_z[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_z[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_z_x[(size_t)j * n->hidden + k] * R_x[k];
            V_lin_z[j] = acc;
        }
        float V_z[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_z[j] = lv_sigmoid_f32(V_lin_z[j]);
        }
        float V_lin_r[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_r[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_r_x[(size_t)j * n->hidden + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_r_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_r[j] = acc;
        }
        float V_r[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_r[j] = lv_sigmoid_f32(V_lin_r[j]);
        }
        float V_h_h_in[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_h_in[j] = R_h[j]*V_r[j];
        }
        float V_lin_h[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_h[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_h_h[(size_t)j * n->hidden + k] * V_h_h_in[k];
            V_lin_h[j] = acc;
        }
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_h[j]*(1.0 - V_z[j]) + V_z[j]*lv_tanh_f32(V_lin_h[j] + lv_tanh_f32(R_x[j]));
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int mut1_sequence_f32(const mut1_sizes *n, const mut1_params_f32 *p, const float *A_x, float *A_h, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        mut1_step_f32(n, p, A_x + (size_t)t * batch * n->hidden, A_h, X_h, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    return 0;
}
