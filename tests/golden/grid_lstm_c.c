/*
 * grid_lstm: 2-D Grid LSTM block along time, depth as input and output
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec grid_lstm.toml,
 * sha256 989b879d13402ea5fb5152038c7e18f5f999e59283e22d115661b9b82d1f0067.
 * Regenerate: lstm-verify export grid_lstm --target c -o grid_lstm_c.c
 *
 * Sources: Kalchbrenner, Danihelka & Graves 2015, Grid Long Short-Term Memory, arXiv:1507.01526, eq. 1-2 (LSTM transform) and sec. 3.1 (N-dimensional block), N = 2 (check: paper text not available here; eq. 1 as secondary sources quote it)
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     u1 = sigmoid(lin(h, hd))
 *     f1 = sigmoid(lin(h, hd))
 *     o1 = sigmoid(lin(h, hd))
 *     c1 = tanh(lin(h, hd))
 *     m' = f1*m + u1*c1
 *     h' = tanh(o1*m')
 *     u2 = sigmoid(lin(h, hd))
 *     f2 = sigmoid(lin(h, hd))
 *     o2 = sigmoid(lin(h, hd))
 *     c2 = tanh(lin(h, hd))
 *     mu' = f2*md + u2*c2
 *     hu' = tanh(o2*mu')
 *
 * Inputs: hd (hidden), md (hidden). State: h (hidden), m (hidden), hu (hidden), mu (hidden). Output: hu.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_u1_h: (hidden, hidden)
 *     W_u1_hd: (hidden, hidden)
 *     W_f1_h: (hidden, hidden)
 *     W_f1_hd: (hidden, hidden)
 *     W_o1_h: (hidden, hidden)
 *     W_o1_hd: (hidden, hidden)
 *     W_c1_h: (hidden, hidden)
 *     W_c1_hd: (hidden, hidden)
 *     W_u2_h: (hidden, hidden)
 *     W_u2_hd: (hidden, hidden)
 *     W_f2_h: (hidden, hidden)
 *     W_f2_hd: (hidden, hidden)
 *     W_o2_h: (hidden, hidden)
 *     W_o2_hd: (hidden, hidden)
 *     W_c2_h: (hidden, hidden)
 *     W_c2_hd: (hidden, hidden)
 *     b_u1: (hidden,)
 *     b_f1: (hidden,)
 *     b_o1: (hidden,)
 *     b_c1: (hidden,)
 *     b_u2: (hidden,)
 *     b_f2: (hidden,)
 *     b_o2: (hidden,)
 *     b_c2: (hidden,)
 *
 * Note: Dimension 1 is time, dimension 2 depth. The block reads H = [h; hd] (the time hidden
 * vector and the hidden vector arriving from the block below) and applies one LSTM transform per
 * dimension, each with its own weights: (h', m') = LSTM(H, m, W_1) along time, (hu', mu') =
 * LSTM(H, md, W_2) along depth. h and m carry the time direction from step to step; hu and mu go
 * up to the next block (they do not read their old values); the output is hu, what a stack passes
 * up. As the paper writes it, h' = tanh(g^o (.) m'): the output gate is inside the tanh
 * (TensorFlow's grid_rnn and GridLSTMCell use o (.) tanh(m')). The paper writes no biases; each
 * gate here has one. Left out: grids of N > 2 dimensions, priority dimensions (a dimension whose
 * transform reads the others' new hidden vectors), non-LSTM dimensions (identity or ReLU
 * transforms), weight tying across depth (the paper's tied Grid LSTM uses one block's weights at
 * every depth), and the input projection and output layer around the grid.
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   grid_lstm_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   grid_lstm_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; } grid_lstm_sizes;

static double lv_sigmoid_f64(double x) {
    /* stable: never exp of a large positive number */
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static double lv_tanh_f64(double x) { return tanh(x); }

typedef struct {
    const double *W_u1_h;
    const double *W_u1_hd;
    const double *W_f1_h;
    const double *W_f1_hd;
    const double *W_o1_h;
    const double *W_o1_hd;
    const double *W_c1_h;
    const double *W_c1_hd;
    const double *W_u2_h;
    const double *W_u2_hd;
    const double *W_f2_h;
    const double *W_f2_hd;
    const double *W_o2_h;
    const double *W_o2_hd;
    const double *W_c2_h;
    const double *W_c2_hd;
    const double *b_u1;
    const double *b_f1;
    const double *b_o1;
    const double *b_c1;
    const double *b_u2;
    const double *b_f2;
    const double *b_o2;
    const double *b_c2;
} grid_lstm_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void grid_lstm_step_f64(const grid_lstm_sizes *n, const grid_lstm_params_f64 *p, const double *A_hd, const double *A_md, const double *A_h, const double *A_m, const double *A_hu, const double *A_mu, double *N_h, double *N_m, double *N_hu, double *N_mu, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_hd = A_hd + (size_t)b * n->hidden;
        const double *R_md = A_md + (size_t)b * n->hidden;
        const double *R_h = A_h + (size_t)b * n->hidden;
        const double *R_m = A_m + (size_t)b * n->hidden;
        double V_lin_u1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_u1[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_u1_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_u1_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_u1[j] = acc;
        }
        double V_u1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_u1[j] = lv_sigmoid_f64(V_lin_u1[j]);
        }
        double V_lin_f1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_f1[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f1_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f1_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_f1[j] = acc;
        }
        double V_f1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f1[j] = lv_sigmoid_f64(V_lin_f1[j]);
        }
        double V_lin_o1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_o1[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o1_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o1_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_o1[j] = acc;
        }
        double V_o1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_o1[j] = lv_sigmoid_f64(V_lin_o1[j]);
        }
        double V_lin_c1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_c1[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_c1_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_c1_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_c1[j] = acc;
        }
        double V_c1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c1[j] = lv_tanh_f64(V_lin_c1[j]);
        }
        double V_m_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_m_[j] = R_m[j]*V_f1[j] + V_c1[j]*V_u1[j];
        }
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = lv_tanh_f64(V_m_[j]*V_o1[j]);
        }
        double V_lin_u2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_u2[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_u2_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_u2_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_u2[j] = acc;
        }
        double V_u2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_u2[j] = lv_sigmoid_f64(V_lin_u2[j]);
        }
        double V_lin_f2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_f2[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f2_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f2_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_f2[j] = acc;
        }
        double V_f2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f2[j] = lv_sigmoid_f64(V_lin_f2[j]);
        }
        double V_lin_o2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_o2[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o2_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o2_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_o2[j] = acc;
        }
        double V_o2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_o2[j] = lv_sigmoid_f64(V_lin_o2[j]);
        }
        double V_lin_c2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_c2[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_c2_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_c2_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_c2[j] = acc;
        }
        double V_c2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c2[j] = lv_tanh_f64(V_lin_c2[j]);
        }
        double V_mu_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_mu_[j] = R_md[j]*V_f2[j] + V_c2[j]*V_u2[j];
        }
        double V_hu_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_hu_[j] = lv_tanh_f64(V_mu_[j]*V_o2[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
        memcpy(N_m + (size_t)b * n->hidden, V_m_, sizeof(double) * (size_t)n->hidden);
        memcpy(N_hu + (size_t)b * n->hidden, V_hu_, sizeof(double) * (size_t)n->hidden);
        memcpy(N_mu + (size_t)b * n->hidden, V_mu_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int grid_lstm_sequence_f64(const grid_lstm_sizes *n, const grid_lstm_params_f64 *p, const double *A_hd, const double *A_md, double *A_h, double *A_m, double *A_hu, double *A_mu, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    double *X_m = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    double *X_hu = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    double *X_mu = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_m || !X_hu || !X_mu) {
        free(X_h);
        free(X_m);
        free(X_hu);
        free(X_mu);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        grid_lstm_step_f64(n, p, A_hd + (size_t)t * batch * n->hidden, A_md + (size_t)t * batch * n->hidden, A_h, A_m, A_hu, A_mu, X_h, X_m, X_hu, X_mu, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_m, X_m, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_hu, X_hu, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_mu, X_mu, sizeof(double) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_hu, sizeof(double) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    free(X_m);
    free(X_hu);
    free(X_mu);
    return 0;
}

static float lv_sigmoid_f32(float x) {
    /* stable: never exp of a large positive number */
    float e = expf(-fabsf(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static float lv_tanh_f32(float x) { return tanhf(x); }

typedef struct {
    const float *W_u1_h;
    const float *W_u1_hd;
    const float *W_f1_h;
    const float *W_f1_hd;
    const float *W_o1_h;
    const float *W_o1_hd;
    const float *W_c1_h;
    const float *W_c1_hd;
    const float *W_u2_h;
    const float *W_u2_hd;
    const float *W_f2_h;
    const float *W_f2_hd;
    const float *W_o2_h;
    const float *W_o2_hd;
    const float *W_c2_h;
    const float *W_c2_hd;
    const float *b_u1;
    const float *b_f1;
    const float *b_o1;
    const float *b_c1;
    const float *b_u2;
    const float *b_f2;
    const float *b_o2;
    const float *b_c2;
} grid_lstm_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void grid_lstm_step_f32(const grid_lstm_sizes *n, const grid_lstm_params_f32 *p, const float *A_hd, const float *A_md, const float *A_h, const float *A_m, const float *A_hu, const float *A_mu, float *N_h, float *N_m, float *N_hu, float *N_mu, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_hd = A_hd + (size_t)b * n->hidden;
        const float *R_md = A_md + (size_t)b * n->hidden;
        const float *R_h = A_h + (size_t)b * n->hidden;
        const float *R_m = A_m + (size_t)b * n->hidden;
        float V_lin_u1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_u1[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_u1_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_u1_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_u1[j] = acc;
        }
        float V_u1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_u1[j] = lv_sigmoid_f32(V_lin_u1[j]);
        }
        float V_lin_f1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_f1[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f1_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f1_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_f1[j] = acc;
        }
        float V_f1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f1[j] = lv_sigmoid_f32(V_lin_f1[j]);
        }
        float V_lin_o1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_o1[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o1_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o1_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_o1[j] = acc;
        }
        float V_o1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_o1[j] = lv_sigmoid_f32(V_lin_o1[j]);
        }
        float V_lin_c1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_c1[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_c1_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_c1_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_c1[j] = acc;
        }
        float V_c1[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c1[j] = lv_tanh_f32(V_lin_c1[j]);
        }
        float V_m_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_m_[j] = R_m[j]*V_f1[j] + V_c1[j]*V_u1[j];
        }
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = lv_tanh_f32(V_m_[j]*V_o1[j]);
        }
        float V_lin_u2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_u2[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_u2_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_u2_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_u2[j] = acc;
        }
        float V_u2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_u2[j] = lv_sigmoid_f32(V_lin_u2[j]);
        }
        float V_lin_f2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_f2[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f2_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f2_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_f2[j] = acc;
        }
        float V_f2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f2[j] = lv_sigmoid_f32(V_lin_f2[j]);
        }
        float V_lin_o2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_o2[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o2_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o2_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_o2[j] = acc;
        }
        float V_o2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_o2[j] = lv_sigmoid_f32(V_lin_o2[j]);
        }
        float V_lin_c2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_c2[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_c2_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_c2_hd[(size_t)j * n->hidden + k] * R_hd[k];
            V_lin_c2[j] = acc;
        }
        float V_c2[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c2[j] = lv_tanh_f32(V_lin_c2[j]);
        }
        float V_mu_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_mu_[j] = R_md[j]*V_f2[j] + V_c2[j]*V_u2[j];
        }
        float V_hu_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_hu_[j] = lv_tanh_f32(V_mu_[j]*V_o2[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
        memcpy(N_m + (size_t)b * n->hidden, V_m_, sizeof(float) * (size_t)n->hidden);
        memcpy(N_hu + (size_t)b * n->hidden, V_hu_, sizeof(float) * (size_t)n->hidden);
        memcpy(N_mu + (size_t)b * n->hidden, V_mu_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int grid_lstm_sequence_f32(const grid_lstm_sizes *n, const grid_lstm_params_f32 *p, const float *A_hd, const float *A_md, float *A_h, float *A_m, float *A_hu, float *A_mu, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    float *X_m = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    float *X_hu = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    float *X_mu = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_m || !X_hu || !X_mu) {
        free(X_h);
        free(X_m);
        free(X_hu);
        free(X_mu);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        grid_lstm_step_f32(n, p, A_hd + (size_t)t * batch * n->hidden, A_md + (size_t)t * batch * n->hidden, A_h, A_m, A_hu, A_mu, X_h, X_m, X_hu, X_mu, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_m, X_m, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_hu, X_hu, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_mu, X_mu, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_hu, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    free(X_m);
    free(X_hu);
    free(X_mu);
    return 0;
}
