/*
 * gru: GRU, reset gate after the hidden matmul (torch, cuDNN, Keras reset_after=True)
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec gru.toml,
 * sha256 68b8bf435917301d5faf73828411baa1d0cf870762ce56922be17387796ad40f.
 * Regenerate: lstm-verify export gru --target c -o gru_c.c
 *
 * Sources: Cho et al. 2014 (gating); torch.nn.GRUCell; Keras GRU(reset_after=True)
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     r = sigmoid(lin(x, h))
 *     z = sigmoid(lin(x, h))
 *     n = tanh(lin(x) + r*lin(h))
 *     h' = (1 - z)*n + z*h
 *
 * Inputs: x (input). State: h (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_r_x: (hidden, input)  = torch.nn.GRUCell.weight_ih block 0
 *     W_r_h: (hidden, hidden)  = torch.nn.GRUCell.weight_hh block 0
 *     W_z_x: (hidden, input)  = torch.nn.GRUCell.weight_ih block 1
 *     W_z_h: (hidden, hidden)  = torch.nn.GRUCell.weight_hh block 1
 *     W_n_x: (hidden, input)  = torch.nn.GRUCell.weight_ih block 2
 *     W_n_h: (hidden, hidden)  = torch.nn.GRUCell.weight_hh block 2
 *     b_r: (hidden,)  = torch.nn.GRUCell.bias_ih block 0 + torch.nn.GRUCell.bias_hh block 0
 *     b_z: (hidden,)  = torch.nn.GRUCell.bias_ih block 1 + torch.nn.GRUCell.bias_hh block 1
 *     b_n_x: (hidden,)  = torch.nn.GRUCell.bias_ih block 2
 *     b_n_h: (hidden,)  = torch.nn.GRUCell.bias_hh block 2
 * A parameter in two torch tensors is their sum (torch's bias_ih + bias_hh).
 *
 * Note: The hidden bias of n sits inside r*(...), so it is a separate parameter b_n_h.
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   gru_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   gru_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; int input; } gru_sizes;

static double lv_sigmoid_f64(double x) {
    /* stable: never exp of a large positive number */
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static double lv_tanh_f64(double x) { return tanh(x); }

typedef struct {
    const double *W_r_x;
    const double *W_r_h;
    const double *W_z_x;
    const double *W_z_h;
    const double *W_n_x;
    const double *W_n_h;
    const double *b_r;
    const double *b_z;
    const double *b_n_x;
    const double *b_n_h;
} gru_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void gru_step_f64(const gru_sizes *n, const gru_params_f64 *p, const double *A_x, const double *A_h, double *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_x = A_x + (size_t)b * n->input;
        const double *R_h = A_h + (size_t)b * n->hidden;
        double V_lin_r[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_r[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_r_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_r_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_r[j] = acc;
        }
        double V_r[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_r[j] = lv_sigmoid_f64(V_lin_r[j]);
        }
        double V_lin_z[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_z[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_z_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_z_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_z[j] = acc;
        }
        double V_z[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_z[j] = lv_sigmoid_f64(V_lin_z[j]);
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
            V_n[j] = lv_tanh_f64(V_lin_n_h[j]*V_r[j] + V_lin_n_x[j]);
        }
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_h[j]*V_z[j] + V_n[j]*(1.0 - V_z[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int gru_sequence_f64(const gru_sizes *n, const gru_params_f64 *p, const double *A_x, double *A_h, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        gru_step_f64(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
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
    const float *W_r_x;
    const float *W_r_h;
    const float *W_z_x;
    const float *W_z_h;
    const float *W_n_x;
    const float *W_n_h;
    const float *b_r;
    const float *b_z;
    const float *b_n_x;
    const float *b_n_h;
} gru_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void gru_step_f32(const gru_sizes *n, const gru_params_f32 *p, const float *A_x, const float *A_h, float *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_x = A_x + (size_t)b * n->input;
        const float *R_h = A_h + (size_t)b * n->hidden;
        float V_lin_r[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_r[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_r_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_r_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_r[j] = acc;
        }
        float V_r[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_r[j] = lv_sigmoid_f32(V_lin_r[j]);
        }
        float V_lin_z[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_z[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_z_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_z_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_z[j] = acc;
        }
        float V_z[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_z[j] = lv_sigmoid_f32(V_lin_z[j]);
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
            V_n[j] = lv_tanh_f32(V_lin_n_h[j]*V_r[j] + V_lin_n_x[j]);
        }
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_h[j]*V_z[j] + V_n[j]*(1.0 - V_z[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int gru_sequence_f32(const gru_sizes *n, const gru_params_f32 *p, const float *A_x, float *A_h, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        gru_step_f32(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    return 0;
}
