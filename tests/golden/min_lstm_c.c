/*
 * min_lstm: Minimal LSTM (minLSTM), sequential mode with normalised gates
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec min_lstm.toml,
 * sha256 ac6396e132aafea4bfeb1671f13be0bfe05dbd730e85d96272ddce019c641d95.
 * Regenerate: lstm-verify export min_lstm --target c -o min_lstm_c.c
 *
 * Sources: Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, Were RNNs All We Needed?, Section 3 (minLSTM)
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     f_pre = lin(x)
 *     i_pre = lin(x)
 *     h_tilde = lin(x)
 *     f_norm = sigmoid(log(sigmoid(f_pre)) - log(sigmoid(i_pre)))
 *     i_norm = sigmoid(log(sigmoid(i_pre)) - log(sigmoid(f_pre)))
 *     h' = f_norm*h + i_norm*h_tilde
 *
 * Inputs: x (input). State: h (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_f_pre_x: (hidden, input)
 *     W_i_pre_x: (hidden, input)
 *     W_h_tilde_x: (hidden, input)
 *     b_f_pre: (hidden,)
 *     b_i_pre: (hidden,)
 *     b_h_tilde: (hidden,)
 *
 * Note: The LSTM with the state taken out of the forget and input gates and the candidate, and
 * the candidate's tanh, the output gate and the cell/hidden split dropped: f = sigmoid(f_pre), i
 * = sigmoid(i_pre), h_tilde = lin(x), h' = f/(f + i)*h + i/(f + i)*h_tilde. The gates are
 * normalised to sum to 1 so that the scale of h does not grow with t. f, i and h_tilde read only
 * x, so h' is a diagonal linear recurrence in h and the sequence is a parallel scan
 * (cell.scan()). The normalised gates are written as sigmoid(log f - log i) and sigmoid(log i -
 * log f), which equal f/(f + i) and i/(f + i) exactly and are the paper's own log-space form (log
 * sigmoid(u) = -softplus(-u)): the quotient as written is 0/0 where both sigmoids underflow (pre-
 * activations below about -745 in float64, -103 in float32), this form is finite for every input.
 * The paper's log-space parallel mode also passes h_tilde through g(v) = v + 1/2 for v >= 0,
 * sigmoid(v) for v < 0: that variant is a different function and is not this cell.
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   min_lstm_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   min_lstm_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; int input; } min_lstm_sizes;

static double lv_sigmoid_f64(double x) {
    /* stable: never exp of a large positive number */
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static double lv_softplus_f64(double x) {
    /* log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)) */
    return (x > 0 ? x : 0) + log1p(exp(-fabs(x)));
}

typedef struct {
    const double *W_f_pre_x;
    const double *W_i_pre_x;
    const double *W_h_tilde_x;
    const double *b_f_pre;
    const double *b_i_pre;
    const double *b_h_tilde;
} min_lstm_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void min_lstm_step_f64(const min_lstm_sizes *n, const min_lstm_params_f64 *p, const double *A_x, const double *A_h, double *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_x = A_x + (size_t)b * n->input;
        const double *R_h = A_h + (size_t)b * n->hidden;
        double V_lin_f_pre[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_f_pre[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_f_pre_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_f_pre[j] = acc;
        }
        double V_f_pre[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f_pre[j] = V_lin_f_pre[j];
        }
        double V_lin_i_pre[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_i_pre[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_i_pre_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_i_pre[j] = acc;
        }
        double V_i_pre[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_i_pre[j] = V_lin_i_pre[j];
        }
        double V_lin_h_tilde[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_h_tilde[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_h_tilde_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_h_tilde[j] = acc;
        }
        double V_h_tilde[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_tilde[j] = V_lin_h_tilde[j];
        }
        double V_f_norm[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f_norm[j] = lv_sigmoid_f64(-lv_softplus_f64(-V_f_pre[j]) + lv_softplus_f64(-V_i_pre[j]));
        }
        double V_i_norm[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_i_norm[j] = lv_sigmoid_f64(lv_softplus_f64(-V_f_pre[j]) - lv_softplus_f64(-V_i_pre[j]));
        }
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_h[j]*V_f_norm[j] + V_h_tilde[j]*V_i_norm[j];
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int min_lstm_sequence_f64(const min_lstm_sizes *n, const min_lstm_params_f64 *p, const double *A_x, double *A_h, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        min_lstm_step_f64(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
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
static float lv_softplus_f32(float x) {
    /* log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)) */
    return (x > 0 ? x : 0) + log1pf(expf(-fabsf(x)));
}

typedef struct {
    const float *W_f_pre_x;
    const float *W_i_pre_x;
    const float *W_h_tilde_x;
    const float *b_f_pre;
    const float *b_i_pre;
    const float *b_h_tilde;
} min_lstm_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void min_lstm_step_f32(const min_lstm_sizes *n, const min_lstm_params_f32 *p, const float *A_x, const float *A_h, float *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_x = A_x + (size_t)b * n->input;
        const float *R_h = A_h + (size_t)b * n->hidden;
        float V_lin_f_pre[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_f_pre[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_f_pre_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_f_pre[j] = acc;
        }
        float V_f_pre[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f_pre[j] = V_lin_f_pre[j];
        }
        float V_lin_i_pre[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_i_pre[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_i_pre_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_i_pre[j] = acc;
        }
        float V_i_pre[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_i_pre[j] = V_lin_i_pre[j];
        }
        float V_lin_h_tilde[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_h_tilde[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_h_tilde_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_h_tilde[j] = acc;
        }
        float V_h_tilde[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_tilde[j] = V_lin_h_tilde[j];
        }
        float V_f_norm[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f_norm[j] = lv_sigmoid_f32(-lv_softplus_f32(-V_f_pre[j]) + lv_softplus_f32(-V_i_pre[j]));
        }
        float V_i_norm[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_i_norm[j] = lv_sigmoid_f32(lv_softplus_f32(-V_f_pre[j]) - lv_softplus_f32(-V_i_pre[j]));
        }
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_h[j]*V_f_norm[j] + V_h_tilde[j]*V_i_norm[j];
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int min_lstm_sequence_f32(const min_lstm_sizes *n, const min_lstm_params_f32 *p, const float *A_x, float *A_h, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        min_lstm_step_f32(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    return 0;
}
