/*
 * lstm: LSTM with forget gate
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec lstm.toml,
 * sha256 712ce8b78ed21e5c056092ca7fe373ce13ca23c8ffbc54f4a7903c84639eac31.
 * Regenerate: lstm-verify export lstm --target c -o lstm_c.c
 *
 * Sources: Gers, Schmidhuber & Cummins 2000, Learning to Forget; torch.nn.LSTMCell
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     i = sigmoid(lin(x, h))
 *     f = sigmoid(lin(x, h))
 *     g = tanh(lin(x, h))
 *     o = sigmoid(lin(x, h))
 *     c' = f*c + i*g
 *     h' = o*tanh(c')
 *
 * Inputs: x (input). State: h (hidden), c (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_i_x: (hidden, input)  = torch.nn.LSTMCell.weight_ih block 0
 *     W_i_h: (hidden, hidden)  = torch.nn.LSTMCell.weight_hh block 0
 *     W_f_x: (hidden, input)  = torch.nn.LSTMCell.weight_ih block 1
 *     W_f_h: (hidden, hidden)  = torch.nn.LSTMCell.weight_hh block 1
 *     W_g_x: (hidden, input)  = torch.nn.LSTMCell.weight_ih block 2
 *     W_g_h: (hidden, hidden)  = torch.nn.LSTMCell.weight_hh block 2
 *     W_o_x: (hidden, input)  = torch.nn.LSTMCell.weight_ih block 3
 *     W_o_h: (hidden, hidden)  = torch.nn.LSTMCell.weight_hh block 3
 *     b_i: (hidden,)  = torch.nn.LSTMCell.bias_ih block 0 + torch.nn.LSTMCell.bias_hh block 0
 *     b_f: (hidden,)  = torch.nn.LSTMCell.bias_ih block 1 + torch.nn.LSTMCell.bias_hh block 1
 *     b_g: (hidden,)  = torch.nn.LSTMCell.bias_ih block 2 + torch.nn.LSTMCell.bias_hh block 2
 *     b_o: (hidden,)  = torch.nn.LSTMCell.bias_ih block 3 + torch.nn.LSTMCell.bias_hh block 3
 * A parameter in two torch tensors is their sum (torch's bias_ih + bias_hh).
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   lstm_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   lstm_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; int input; } lstm_sizes;

static double lv_sigmoid_f64(double x) {
    /* stable: never exp of a large positive number */
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static double lv_tanh_f64(double x) { return tanh(x); }

typedef struct {
    const double *W_i_x;
    const double *W_i_h;
    const double *W_f_x;
    const double *W_f_h;
    const double *W_g_x;
    const double *W_g_h;
    const double *W_o_x;
    const double *W_o_h;
    const double *b_i;
    const double *b_f;
    const double *b_g;
    const double *b_o;
} lstm_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void lstm_step_f64(const lstm_sizes *n, const lstm_params_f64 *p, const double *A_x, const double *A_h, const double *A_c, double *N_h, double *N_c, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_x = A_x + (size_t)b * n->input;
        const double *R_h = A_h + (size_t)b * n->hidden;
        const double *R_c = A_c + (size_t)b * n->hidden;
        double V_lin_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_i[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_i_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_i_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_i[j] = acc;
        }
        double V_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_i[j] = lv_sigmoid_f64(V_lin_i[j]);
        }
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
        double V_lin_g[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_g[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_g_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_g_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_g[j] = acc;
        }
        double V_g[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_g[j] = lv_tanh_f64(V_lin_g[j]);
        }
        double V_lin_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_o[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_o_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_o[j] = acc;
        }
        double V_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_o[j] = lv_sigmoid_f64(V_lin_o[j]);
        }
        double V_c_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c_[j] = R_c[j]*V_f[j] + V_g[j]*V_i[j];
        }
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = V_o[j]*lv_tanh_f64(V_c_[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
        memcpy(N_c + (size_t)b * n->hidden, V_c_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int lstm_sequence_f64(const lstm_sizes *n, const lstm_params_f64 *p, const double *A_x, double *A_h, double *A_c, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    double *X_c = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_c) {
        free(X_h);
        free(X_c);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        lstm_step_f64(n, p, A_x + (size_t)t * batch * n->input, A_h, A_c, X_h, X_c, batch, t0 + t);
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
static float lv_tanh_f32(float x) { return tanhf(x); }

typedef struct {
    const float *W_i_x;
    const float *W_i_h;
    const float *W_f_x;
    const float *W_f_h;
    const float *W_g_x;
    const float *W_g_h;
    const float *W_o_x;
    const float *W_o_h;
    const float *b_i;
    const float *b_f;
    const float *b_g;
    const float *b_o;
} lstm_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void lstm_step_f32(const lstm_sizes *n, const lstm_params_f32 *p, const float *A_x, const float *A_h, const float *A_c, float *N_h, float *N_c, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_x = A_x + (size_t)b * n->input;
        const float *R_h = A_h + (size_t)b * n->hidden;
        const float *R_c = A_c + (size_t)b * n->hidden;
        float V_lin_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_i[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_i_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_i_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_i[j] = acc;
        }
        float V_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_i[j] = lv_sigmoid_f32(V_lin_i[j]);
        }
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
        float V_lin_g[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_g[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_g_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_g_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_g[j] = acc;
        }
        float V_g[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_g[j] = lv_tanh_f32(V_lin_g[j]);
        }
        float V_lin_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_o[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_o_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_o[j] = acc;
        }
        float V_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_o[j] = lv_sigmoid_f32(V_lin_o[j]);
        }
        float V_c_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c_[j] = R_c[j]*V_f[j] + V_g[j]*V_i[j];
        }
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = V_o[j]*lv_tanh_f32(V_c_[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
        memcpy(N_c + (size_t)b * n->hidden, V_c_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int lstm_sequence_f32(const lstm_sizes *n, const lstm_params_f32 *p, const float *A_x, float *A_h, float *A_c, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    float *X_c = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_c) {
        free(X_h);
        free(X_c);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        lstm_step_f32(n, p, A_x + (size_t)t * batch * n->input, A_h, A_c, X_h, X_c, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_c, X_c, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    free(X_c);
    return 0;
}
