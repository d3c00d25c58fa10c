/*
 * clockwork_rnn: Clockwork RNN
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec clockwork_rnn.toml,
 * sha256 847f35468a6f8ddfd2f3d9bdc69531f654dc1473f5fdfadb22293fa07bfcf4a8.
 * Regenerate: lstm-verify export clockwork_rnn --target c -o clockwork_rnn_c.c
 *
 * Sources: Koutnik, Greff, Gomez & Schmidhuber 2014, A Clockwork RNN, eq. 1-3
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     h' = tick(t, period)*tanh(lin(x, h)) + (1 - tick(t, period))*h
 *
 * Inputs: x (input). State: h (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_h_x: (hidden, input)
 *     W_h_h: (hidden, hidden), structural zeros where the mask fails
 *     b_h: (hidden,)
 *     period: (hidden,) fixed buffer, clockwork_periods(modules=4)
 *
 * Note: Hidden units form 'modules' equal blocks with periods 1, 2, 4, ...; a module updates at
 * steps t (0-based, counted from t0) with t mod period = 0 and keeps its value otherwise.
 * Recurrent weights from faster to slower modules are zero.
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   clockwork_rnn_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   clockwork_rnn_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; int input; } clockwork_rnn_sizes;

static double lv_tanh_f64(double x) { return tanh(x); }
static double lv_tick_f64(double t, double period) { return fmod(t, period) == 0 ? 1 : 0; }

typedef struct {
    const double *W_h_x;
    const double *W_h_h;
    const double *b_h;
    const double *period;
} clockwork_rnn_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void clockwork_rnn_step_f64(const clockwork_rnn_sizes *n, const clockwork_rnn_params_f64 *p, const double *A_x, const double *A_h, double *N_h, int batch, long t)
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
                if (p->period[k] >= p->period[j]) acc += p->W_h_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_h[j] = acc;
        }
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_h[j]*(1.0 - lv_tick_f64(((double)t), p->period[j])) + lv_tanh_f64(V_lin_h[j])*lv_tick_f64(((double)t), p->period[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int clockwork_rnn_sequence_f64(const clockwork_rnn_sizes *n, const clockwork_rnn_params_f64 *p, const double *A_x, double *A_h, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        clockwork_rnn_step_f64(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    return 0;
}

static float lv_tanh_f32(float x) { return tanhf(x); }
static float lv_tick_f32(float t, float period) { return fmodf(t, period) == 0 ? 1 : 0; }

typedef struct {
    const float *W_h_x;
    const float *W_h_h;
    const float *b_h;
    const float *period;
} clockwork_rnn_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void clockwork_rnn_step_f32(const clockwork_rnn_sizes *n, const clockwork_rnn_params_f32 *p, const float *A_x, const float *A_h, float *N_h, int batch, long t)
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
                if (p->period[k] >= p->period[j]) acc += p->W_h_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_h[j] = acc;
        }
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_h[j]*(1.0 - lv_tick_f32(((float)t), p->period[j])) + lv_tanh_f32(V_lin_h[j])*lv_tick_f32(((float)t), p->period[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int clockwork_rnn_sequence_f32(const clockwork_rnn_sizes *n, const clockwork_rnn_params_f32 *p, const float *A_x, float *A_h, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        clockwork_rnn_step_f32(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    return 0;
}
