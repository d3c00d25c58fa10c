/*
 * mgu_flax: Flax's minimal gated unit (flax.linen.MGUCell, reset_gate=True)
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec mgu_flax.toml,
 * sha256 0eed8d325d169c896c7c7e744f7ae3d2e86cb2382a914ded3a61382a4e7038ba.
 * Regenerate: lstm-verify export mgu_flax --target c -o mgu_flax_c.c
 *
 * Sources: flax.linen.MGUCell (flax/linen/recurrent.py, class MGUCell, Flax 0.12), after Zhou, Wu, Zhang & Zhou 2016, Minimal Gated Unit for Recurrent Neural Networks
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     f = sigmoid(lin(x, h))
 *     n = tanh(lin(x) + f*lin(h))
 *     h' = (1 - f)*n + f*h
 *
 * Inputs: x (input). State: h (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_f_x: (hidden, input)
 *     W_f_h: (hidden, hidden)
 *     W_n_x: (hidden, input)
 *     W_n_h: (hidden, hidden)
 *     b_f: (hidden,)
 *     b_n_x: (hidden,)
 *     b_n_h: (hidden,)
 *
 * Note: Not mgu, in two ways at once: f multiplies the hidden matmul with its own bias, f*(W_n_h
 * h + b_n_h), instead of entering it as W_n_h (f*h), and the update is (1 - f)*n + f*h, mgu's
 * terms swapped. Either alone is a different function, and negating f cannot repair the swap
 * because f also gates n. It is the reset-after GRU with r and z tied to one gate. The
 * initialisers (forget_bias_init = ones) change only where training starts.
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   mgu_flax_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   mgu_flax_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; int input; } mgu_flax_sizes;

static double lv_sigmoid_f64(double x) {
    /* stable: never exp of a large positive number */
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static double lv_tanh_f64(double x) { return tanh(x); }

typedef struct {
    const double *W_f_x;
    const double *W_f_h;
    const double *W_n_x;
    const double *W_n_h;
    const double *b_f;
    const double *b_n_x;
    const double *b_n_h;
} mgu_flax_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void mgu_flax_step_f64(const mgu_flax_sizes *n, const mgu_flax_params_f64 *p, const double *A_x, const double *A_h, double *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_x = A_x + (size_t)b * n->input;
        const double *R_h = A_h + (size_t)b * n->hidden;
        double V_lin_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_f[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_f_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_f[j] = acc;
        }
        double V_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f[j] = lv_sigmoid_f64(V_lin_f[j]);
        }
        double V_lin_n_x[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_n_x[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_n_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_n_x[j] = acc;
        }
        double V_lin_n_h[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_n_h[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_n_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_n_h[j] = acc;
        }
        double V_n[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_n[j] = lv_tanh_f64(V_f[j]*V_lin_n_h[j] + V_lin_n_x[j]);
        }
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_h[j]*V_f[j] + V_n[j]*(1.0 - V_f[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int mgu_flax_sequence_f64(const mgu_flax_sizes *n, const mgu_flax_params_f64 *p, const double *A_x, double *A_h, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        mgu_flax_step_f64(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
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
    const float *W_f_x;
    const float *W_f_h;
    const float *W_n_x;
    const float *W_n_h;
    const float *b_f;
    const float *b_n_x;
    const float *b_n_h;
} mgu_flax_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void mgu_flax_step_f32(const mgu_flax_sizes *n, const mgu_flax_params_f32 *p, const float *A_x, const float *A_h, float *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_x = A_x + (size_t)b * n->input;
        const float *R_h = A_h + (size_t)b * n->hidden;
        float V_lin_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_f[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_f_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_f[j] = acc;
        }
        float V_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f[j] = lv_sigmoid_f32(V_lin_f[j]);
        }
        float V_lin_n_x[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_n_x[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_n_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_n_x[j] = acc;
        }
        float V_lin_n_h[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_n_h[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_n_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_n_h[j] = acc;
        }
        float V_n[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_n[j] = lv_tanh_f32(V_f[j]*V_lin_n_h[j] + V_lin_n_x[j]);
        }
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_h[j]*V_f[j] + V_n[j]*(1.0 - V_f[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int mgu_flax_sequence_f32(const mgu_flax_sizes *n, const mgu_flax_params_f32 *p, const float *A_x, float *A_h, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        mgu_flax_step_f32(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    return 0;
}
