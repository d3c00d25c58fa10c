/*
 * indrnn: Independently recurrent neural network (IndRNN), ReLU
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec indrnn.toml,
 * sha256 ad730790ca9b6c7a72b3a2b060b7ba153a8416d7a2e6150c7a9f0bd30c48c4a3.
 * Regenerate: lstm-verify export indrnn --target c -o indrnn_c.c
 *
 * Sources: Li, Li, Cook, Zhu & Gao 2018, Independently Recurrent Neural Network (IndRNN): Building a Longer and Deeper RNN, eq. 2 (sigma = relu, as in their experiments)
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     h' = relu(lin(x) + u*h)
 *
 * Inputs: x (input). State: h (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_h_x: (hidden, input)
 *     b_h: (hidden,)
 *     u: (hidden,)
 *
 * Note: The recurrent weight u is a vector (one weight per unit, u*h elementwise), so every unit
 * sees only its own past: the one-step Jacobian dh'/dh is diagonal and a lag-k gradient is a
 * product of k factors u*relu'(.). The paper keeps |u| <= 2**(1/T) (gradient growth at most 2
 * over T steps with relu) and initialises u uniformly (experiments and the authors' code): in (0,
 * 2**(1/T)) for lower layers, in (2**(-1/T), 2**(1/T)) for the last layer when a T-step memory is
 * needed; named init 'indrnn' uses the latter with T = t_max. relu'(0) = 0.
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   indrnn_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   indrnn_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; int input; } indrnn_sizes;

static double lv_relu_f64(double x) { return x > 0 ? x : 0; }

typedef struct {
    const double *W_h_x;
    const double *b_h;
    const double *u;
} indrnn_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void indrnn_step_f64(const indrnn_sizes *n, const indrnn_params_f64 *p, const double *A_x, const double *A_h, double *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_x = A_x + (size_t)b * n->input;
        const double *R_h = A_h + (size_t)b * n->hidden;
        double V_lin_h[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_h[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_h_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_h[j] = acc;
        }
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = lv_relu_f64(R_h[j]*p->u[j] + V_lin_h[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int indrnn_sequence_f64(const indrnn_sizes *n, const indrnn_params_f64 *p, const double *A_x, double *A_h, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        indrnn_step_f64(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    return 0;
}

static float lv_relu_f32(float x) { return x > 0 ? x : 0; }

typedef struct {
    const float *W_h_x;
    const float *b_h;
    const float *u;
} indrnn_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void indrnn_step_f32(const indrnn_sizes *n, const indrnn_params_f32 *p, const float *A_x, const float *A_h, float *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_x = A_x + (size_t)b * n->input;
        const float *R_h = A_h + (size_t)b * n->hidden;
        float V_lin_h[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_h[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_h_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_h[j] = acc;
        }
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = lv_relu_f32(R_h[j]*p->u[j] + V_lin_h[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int indrnn_sequence_f32(const indrnn_sizes *n, const indrnn_params_f32 *p, const float *A_x, float *A_h, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        indrnn_step_f32(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    return 0;
}
