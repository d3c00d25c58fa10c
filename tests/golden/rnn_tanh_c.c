/*
 * rnn_tanh: Vanilla (Elman) RNN with tanh
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec rnn_tanh.toml,
 * sha256 6bd93ff72081c5076352d38796cbcb68e4ba1662841ac70ea04507a03b45f51e.
 * Regenerate: lstm-verify export rnn_tanh --target c -o rnn_tanh_c.c
 *
 * Sources: Elman 1990, Finding Structure in Time; torch.nn.RNNCell(nonlinearity='tanh')
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     h' = tanh(lin(x, h))
 *
 * Inputs: x (input). State: h (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_h_x: (hidden, input)  = torch.nn.RNNCell.weight_ih block 0
 *     W_h_h: (hidden, hidden)  = torch.nn.RNNCell.weight_hh block 0
 *     b_h: (hidden,)  = torch.nn.RNNCell.bias_ih block 0 + torch.nn.RNNCell.bias_hh block 0
 * A parameter in two torch tensors is their sum (torch's bias_ih + bias_hh).
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   rnn_tanh_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   rnn_tanh_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; int input; } rnn_tanh_sizes;

static double lv_tanh_f64(double x) { return tanh(x); }

typedef struct {
    const double *W_h_x;
    const double *W_h_h;
    const double *b_h;
} rnn_tanh_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void rnn_tanh_step_f64(const rnn_tanh_sizes *n, const rnn_tanh_params_f64 *p, const double *A_x, const double *A_h, double *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_x = A_x + (size_t)b * n->input;
        const double *R_h = A_h + (size_t)b * n->hidden;
        double V_lin_h[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_h[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_h_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_h_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_h[j] = acc;
        }
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = lv_tanh_f64(V_lin_h[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int rnn_tanh_sequence_f64(const rnn_tanh_sizes *n, const rnn_tanh_params_f64 *p, const double *A_x, double *A_h, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        rnn_tanh_step_f64(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    return 0;
}

static float lv_tanh_f32(float x) { return tanhf(x); }

typedef struct {
    const float *W_h_x;
    const float *W_h_h;
    const float *b_h;
} rnn_tanh_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void rnn_tanh_step_f32(const rnn_tanh_sizes *n, const rnn_tanh_params_f32 *p, const float *A_x, const float *A_h, float *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_x = A_x + (size_t)b * n->input;
        const float *R_h = A_h + (size_t)b * n->hidden;
        float V_lin_h[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_h[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_h_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_h_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_h[j] = acc;
        }
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = lv_tanh_f32(V_lin_h[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int rnn_tanh_sequence_f32(const rnn_tanh_sizes *n, const rnn_tanh_params_f32 *p, const float *A_x, float *A_h, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        rnn_tanh_step_f32(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    return 0;
}
