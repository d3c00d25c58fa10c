/*
 * min_gru: Minimal GRU (minGRU), sequential mode
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec min_gru.toml,
 * sha256 cb38dc08b5ead33d5c13245b74b660551c8ba35ea3250e6b779601dedd5eb3a3.
 * Regenerate: lstm-verify export min_gru --target c -o min_gru_c.c
 *
 * Sources: Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, Were RNNs All We Needed?, Section 3 (minGRU)
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     z = sigmoid(lin(x))
 *     h_tilde = lin(x)
 *     h' = (1 - z)*h + z*h_tilde
 *
 * Inputs: x (input). State: h (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_z_x: (hidden, input)
 *     W_h_tilde_x: (hidden, input)
 *     b_z: (hidden,)
 *     b_h_tilde: (hidden,)
 *
 * Note: The GRU with the state taken out of the update gate and the candidate, and the
 * candidate's tanh dropped: z and h_tilde read only x, so h' = (1 - z)*h + z*h_tilde is a
 * diagonal linear recurrence in h and the sequence is a parallel scan (cell.scan()). Sequential
 * mode as the paper's Section 3 writes it. The paper's log-space parallel mode also passes
 * h_tilde through g(v) = v + 1/2 for v >= 0, sigmoid(v) for v < 0, to keep it positive: that
 * variant is a different function and is not this cell. Parameters: W_z_x, b_z, W_h_tilde_x,
 * b_h_tilde.
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   min_gru_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   min_gru_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; int input; } min_gru_sizes;

static double lv_sigmoid_f64(double x) {
    /* stable: never exp of a large positive number */
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

typedef struct {
    const double *W_z_x;
    const double *W_h_tilde_x;
    const double *b_z;
    const double *b_h_tilde;
} min_gru_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void min_gru_step_f64(const min_gru_sizes *n, const min_gru_params_f64 *p, const double *A_x, const double *A_h, double *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_x = A_x + (size_t)b * n->input;
        const double *R_h = A_h + (size_t)b * n->hidden;
        double V_lin_z[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_z[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_z_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_z[j] = acc;
        }
        double V_z[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_z[j] = lv_sigmoid_f64(V_lin_z[j]);
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
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_h[j]*(1.0 - V_z[j]) + V_h_tilde[j]*V_z[j];
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int min_gru_sequence_f64(const min_gru_sizes *n, const min_gru_params_f64 *p, const double *A_x, double *A_h, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        min_gru_step_f64(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
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

typedef struct {
    const float *W_z_x;
    const float *W_h_tilde_x;
    const float *b_z;
    const float *b_h_tilde;
} min_gru_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void min_gru_step_f32(const min_gru_sizes *n, const min_gru_params_f32 *p, const float *A_x, const float *A_h, float *N_h, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_x = A_x + (size_t)b * n->input;
        const float *R_h = A_h + (size_t)b * n->hidden;
        float V_lin_z[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_z[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_z_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_z[j] = acc;
        }
        float V_z[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_z[j] = lv_sigmoid_f32(V_lin_z[j]);
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
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = R_h[j]*(1.0 - V_z[j]) + V_h_tilde[j]*V_z[j];
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int min_gru_sequence_f32(const min_gru_sizes *n, const min_gru_params_f32 *p, const float *A_x, float *A_h, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h) {
        free(X_h);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        min_gru_step_f32(n, p, A_x + (size_t)t * batch * n->input, A_h, X_h, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    return 0;
}
