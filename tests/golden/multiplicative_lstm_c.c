/*
 * multiplicative_lstm: Multiplicative LSTM (mLSTM)
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec multiplicative_lstm.toml,
 * sha256 cc49e63692f85e06b5836de07be2267b9731c23c34d1f21dff3b782e8f114592.
 * Regenerate: lstm-verify export multiplicative_lstm --target c -o multiplicative_lstm_c.c
 *
 * Sources: Krause, Lu, Murray & Renals 2016, Multiplicative LSTM for sequence modelling, arXiv:1609.07959, eq. 18-22 with the LSTM's cell and output equations (check: paper text not consulted here; reconstructed from the authors' MATLAB code and ports quoting the paper)
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     m = lin(x, bias=false)*lin(h, bias=false)
 *     hhat = lin(x, m)
 *     i = sigmoid(lin(x, m))
 *     o = sigmoid(lin(x, m))
 *     f = sigmoid(lin(x, m))
 *     c' = f*c + i*hhat
 *     h' = tanh(c'*o)
 *
 * Inputs: x (input). State: h (hidden), c (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_m_x: (hidden, input)
 *     W_m_h: (hidden, hidden)
 *     W_hhat_x: (hidden, input)
 *     W_hhat_m: (hidden, hidden)
 *     W_i_x: (hidden, input)
 *     W_i_m: (hidden, hidden)
 *     W_o_x: (hidden, input)
 *     W_o_m: (hidden, hidden)
 *     W_f_x: (hidden, input)
 *     W_f_m: (hidden, hidden)
 *     b_hhat: (hidden,)
 *     b_i: (hidden,)
 *     b_o: (hidden,)
 *     b_f: (hidden,)
 *
 * Note: m = (W_mx x) (.) (W_mh h) is the multiplicative RNN's intermediate state; it replaces h
 * in the candidate hhat (the paper's h^) and in every gate. hhat has no tanh and the output gate
 * sits inside the tanh, h' = tanh(c' (.) o), as the authors' MATLAB code computes and as ports
 * quoting the paper write it. The paper writes no biases; here m has none (two bias-free maps
 * multiplied) and hhat, i, o and f have one each. Neighbouring implementations differ: the
 * authors' MATLAB code has no bias on hhat and adds one inside the output tanh, h' = tanh(c' (.)
 * o + b); their later Chainer code and OpenAI's sentiment-neuron code use the standard LSTM
 * arrangement, tanh(hhat) and o (.) tanh(c'). Each is a different function from this one.
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   multiplicative_lstm_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   multiplicative_lstm_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; int input; } multiplicative_lstm_sizes;

static double lv_sigmoid_f64(double x) {
    /* stable: never exp of a large positive number */
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static double lv_tanh_f64(double x) { return tanh(x); }

typedef struct {
    const double *W_m_x;
    const double *W_m_h;
    const double *W_hhat_x;
    const double *W_hhat_m;
    const double *W_i_x;
    const double *W_i_m;
    const double *W_o_x;
    const double *W_o_m;
    const double *W_f_x;
    const double *W_f_m;
    const double *b_hhat;
    const double *b_i;
    const double *b_o;
    const double *b_f;
} multiplicative_lstm_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void multiplicative_lstm_step_f64(const multiplicative_lstm_sizes *n, const multiplicative_lstm_params_f64 *p, const double *A_x, const double *A_h, const double *A_c, double *N_h, double *N_c, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_x = A_x + (size_t)b * n->input;
        const double *R_h = A_h + (size_t)b * n->hidden;
        const double *R_c = A_c + (size_t)b * n->hidden;
        double V_lin_m_x[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = 0;
            for (int k = 0; k < n->input; ++k)
                acc += p->W_m_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_m_x[j] = acc;
        }
        double V_lin_m_h[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = 0;
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_m_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_m_h[j] = acc;
        }
        double V_m[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_m[j] = V_lin_m_h[j]*V_lin_m_x[j];
        }
        double V_lin_hhat[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_hhat[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_hhat_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_hhat_m[(size_t)j * n->hidden + k] * V_m[k];
            V_lin_hhat[j] = acc;
        }
        double V_hhat[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_hhat[j] = V_lin_hhat[j];
        }
        double V_lin_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_i[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_i_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_i_m[(size_t)j * n->hidden + k] * V_m[k];
            V_lin_i[j] = acc;
        }
        double V_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_i[j] = lv_sigmoid_f64(V_lin_i[j]);
        }
        double V_lin_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_o[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_o_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o_m[(size_t)j * n->hidden + k] * V_m[k];
            V_lin_o[j] = acc;
        }
        double V_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_o[j] = lv_sigmoid_f64(V_lin_o[j]);
        }
        double V_lin_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_f[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_f_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f_m[(size_t)j * n->hidden + k] * V_m[k];
            V_lin_f[j] = acc;
        }
        double V_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f[j] = lv_sigmoid_f64(V_lin_f[j]);
        }
        double V_c_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c_[j] = R_c[j]*V_f[j] + V_hhat[j]*V_i[j];
        }
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = lv_tanh_f64(V_c_[j]*V_o[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
        memcpy(N_c + (size_t)b * n->hidden, V_c_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int multiplicative_lstm_sequence_f64(const multiplicative_lstm_sizes *n, const multiplicative_lstm_params_f64 *p, const double *A_x, double *A_h, double *A_c, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    double *X_c = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_c) {
        free(X_h);
        free(X_c);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        multiplicative_lstm_step_f64(n, p, A_x + (size_t)t * batch * n->input, A_h, A_c, X_h, X_c, batch, t0 + t);
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
    const float *W_m_x;
    const float *W_m_h;
    const float *W_hhat_x;
    const float *W_hhat_m;
    const float *W_i_x;
    const float *W_i_m;
    const float *W_o_x;
    const float *W_o_m;
    const float *W_f_x;
    const float *W_f_m;
    const float *b_hhat;
    const float *b_i;
    const float *b_o;
    const float *b_f;
} multiplicative_lstm_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void multiplicative_lstm_step_f32(const multiplicative_lstm_sizes *n, const multiplicative_lstm_params_f32 *p, const float *A_x, const float *A_h, const float *A_c, float *N_h, float *N_c, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_x = A_x + (size_t)b * n->input;
        const float *R_h = A_h + (size_t)b * n->hidden;
        const float *R_c = A_c + (size_t)b * n->hidden;
        float V_lin_m_x[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = 0;
            for (int k = 0; k < n->input; ++k)
                acc += p->W_m_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_m_x[j] = acc;
        }
        float V_lin_m_h[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = 0;
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_m_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_m_h[j] = acc;
        }
        float V_m[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_m[j] = V_lin_m_h[j]*V_lin_m_x[j];
        }
        float V_lin_hhat[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_hhat[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_hhat_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_hhat_m[(size_t)j * n->hidden + k] * V_m[k];
            V_lin_hhat[j] = acc;
        }
        float V_hhat[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_hhat[j] = V_lin_hhat[j];
        }
        float V_lin_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_i[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_i_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_i_m[(size_t)j * n->hidden + k] * V_m[k];
            V_lin_i[j] = acc;
        }
        float V_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_i[j] = lv_sigmoid_f32(V_lin_i[j]);
        }
        float V_lin_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_o[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_o_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o_m[(size_t)j * n->hidden + k] * V_m[k];
            V_lin_o[j] = acc;
        }
        float V_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_o[j] = lv_sigmoid_f32(V_lin_o[j]);
        }
        float V_lin_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_f[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_f_x[(size_t)j * n->input + k] * R_x[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f_m[(size_t)j * n->hidden + k] * V_m[k];
            V_lin_f[j] = acc;
        }
        float V_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f[j] = lv_sigmoid_f32(V_lin_f[j]);
        }
        float V_c_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c_[j] = R_c[j]*V_f[j] + V_hhat[j]*V_i[j];
        }
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = lv_tanh_f32(V_c_[j]*V_o[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
        memcpy(N_c + (size_t)b * n->hidden, V_c_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int multiplicative_lstm_sequence_f32(const multiplicative_lstm_sizes *n, const multiplicative_lstm_params_f32 *p, const float *A_x, float *A_h, float *A_c, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    float *X_c = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_c) {
        free(X_h);
        free(X_c);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        multiplicative_lstm_step_f32(n, p, A_x + (size_t)t * batch * n->input, A_h, A_c, X_h, X_c, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_c, X_c, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    free(X_c);
    return 0;
}
