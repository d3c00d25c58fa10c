/*
 * attention_decoder: Soft-attention LSTM decoder (Show, Attend and Tell)
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec attention_decoder.toml,
 * sha256 d89b77c17369745dd130d6be5199c887e76122e4d82f474ced01b9b63f3361ad.
 * Regenerate: lstm-verify export attention_decoder --target c -o attention_decoder_c.c
 *
 * Sources: Xu et al. 2015, Show, Attend and Tell, eq. 1-13 (deterministic soft attention, section 4.2.1); kelvinxu/arctic-captions, capgen.py lstm_cond_layer
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     p = lin(a, h)
 *     e = sum(w_e*tanh(p))
 *     alpha = softmax(e)
 *     beta = sigmoid(sum(w_b*h + b_b))
 *     z = beta*setsum(alpha*a)
 *     i = sigmoid(lin(y, h, z))
 *     f = sigmoid(lin(y, h, z))
 *     o = sigmoid(lin(y, h, z))
 *     g = tanh(lin(y, h, z))
 *     c' = f*c + i*g
 *     h' = o*tanh(c')
 *
 * Inputs: y (input). State: h (hidden), c (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_p_a: (attn, item)
 *     W_p_h: (attn, hidden)
 *     W_i_y: (hidden, input)
 *     W_i_h: (hidden, hidden)
 *     W_i_z: (hidden, item)
 *     W_f_y: (hidden, input)
 *     W_f_h: (hidden, hidden)
 *     W_f_z: (hidden, item)
 *     W_o_y: (hidden, input)
 *     W_o_h: (hidden, hidden)
 *     W_o_z: (hidden, item)
 *     W_g_y: (hidden, input)
 *     W_g_h: (hidden, hidden)
 *     W_g_z: (hidden, item)
 *     b_p: (attn,)
 *     b_i: (hidden,)
 *     b_f: (hidden,)
 *     b_o: (hidden,)
 *     b_g: (hidden,)
 *     w_e: (attn,)
 *     w_b: (hidden,)
 *     b_b: (hidden,)
 *
 * Note: Annotation vectors a (the set, B x L x item, fixed over time) are scored against the
 * previous hidden state by an MLP, e = w_e^T tanh(W_a a_i + W_h h + b); alpha = softmax(e) over
 * the L members; the context z = beta * sum_i alpha_i a_i with the gating scalar beta =
 * sigmoid(w_b^T h + b_b), whose scalar bias b_b is written as the sum of a per-unit vector (only
 * its sum is identifiable); then an LSTM reads the previous word's embedding y, h and z.
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   attention_decoder_step_f64(n, p, <inputs>, <set inputs (batch, L, n)>, <states>, <new states>, batch, t)
 *   attention_decoder_sequence_f64(n, p, <input sequences (T, batch, n)>, <set inputs (batch, L, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 * Set inputs: a (item).
 * A set input is (batch, L, size) with L = n->set >= 1 members, fixed over time: the
 * sequence passes the same array to every step. Values with the set axis are computed
 * member by member.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int attn; int hidden; int input; int item; int set; } attention_decoder_sizes;

static double lv_sigmoid_f64(double x) {
    /* stable: never exp of a large positive number */
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static double lv_tanh_f64(double x) { return tanh(x); }
static double lv_exp_f64(double x) { return exp(x); }

typedef struct {
    const double *W_p_a;
    const double *W_p_h;
    const double *W_i_y;
    const double *W_i_h;
    const double *W_i_z;
    const double *W_f_y;
    const double *W_f_h;
    const double *W_f_z;
    const double *W_o_y;
    const double *W_o_h;
    const double *W_o_z;
    const double *W_g_y;
    const double *W_g_h;
    const double *W_g_z;
    const double *b_p;
    const double *b_i;
    const double *b_f;
    const double *b_o;
    const double *b_g;
    const double *w_e;
    const double *w_b;
    const double *b_b;
} attention_decoder_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each, and set
   inputs, (batch, n->set, size) each. */
void attention_decoder_step_f64(const attention_decoder_sizes *n, const attention_decoder_params_f64 *p, const double *A_y, const double *A_a, const double *A_h, const double *A_c, double *N_h, double *N_c, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_y = A_y + (size_t)b * n->input;
        const double *R_a = A_a + (size_t)b * n->set * n->item;
        const double *R_h = A_h + (size_t)b * n->hidden;
        const double *R_c = A_c + (size_t)b * n->hidden;
        double V_lin_p[n->set][n->attn];
        for (int j = 0; j < n->attn; ++j) {
            double acc = p->b_p[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_p_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int m = 0; m < n->set; ++m) {
                double acc_m = acc;
                for (int k = 0; k < n->item; ++k)
                    acc_m += p->W_p_a[(size_t)j * n->item + k] * R_a[(size_t)m * n->item + k];
                V_lin_p[m][j] = acc_m;
            }
        }
        double V_p[n->set][n->attn];
        for (int m = 0; m < n->set; ++m) {
            for (int j = 0; j < n->attn; ++j) {
                V_p[m][j] = V_lin_p[m][j];
            }
        }
        double V_sum_e_in0[n->set][n->attn];
        for (int m = 0; m < n->set; ++m) {
            for (int j = 0; j < n->attn; ++j) {
                V_sum_e_in0[m][j] = p->w_e[j]*lv_tanh_f64(V_p[m][j]);
            }
        }
        double V_sum_e[n->set];
        for (int m = 0; m < n->set; ++m) {
            V_sum_e[m] = 0;
            for (int j = 0; j < n->attn; ++j) {
                V_sum_e[m] += V_sum_e_in0[m][j];
            }
        }
        double V_e[n->set];
        for (int m = 0; m < n->set; ++m) {
            V_e[m] = V_sum_e[m];
        }
        double V_setmax_alpha = V_e[0];
        for (int m = 1; m < n->set; ++m) {
            if (V_e[m] > V_setmax_alpha || V_e[m] != V_e[m]) V_setmax_alpha = V_e[m];
        }
        double V_setsum_alpha_in0[n->set];
        for (int m = 0; m < n->set; ++m) {
            V_setsum_alpha_in0[m] = lv_exp_f64(V_e[m] - V_setmax_alpha);
        }
        double V_setsum_alpha = 0;
        for (int m = 0; m < n->set; ++m) {
            V_setsum_alpha += V_setsum_alpha_in0[m];
        }
        double V_alpha[n->set];
        for (int m = 0; m < n->set; ++m) {
            V_alpha[m] = V_setsum_alpha_in0[m]/V_setsum_alpha;
        }
        double V_sum_beta_in0[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_sum_beta_in0[j] = R_h[j]*p->w_b[j] + p->b_b[j];
        }
        double V_sum_beta = 0;
        for (int j = 0; j < n->hidden; ++j) {
            V_sum_beta += V_sum_beta_in0[j];
        }
        double V_beta = lv_sigmoid_f64(V_sum_beta);
        double V_setsum_z_in0[n->set][n->item];
        for (int m = 0; m < n->set; ++m) {
            for (int j = 0; j < n->item; ++j) {
                V_setsum_z_in0[m][j] = R_a[(size_t)m * n->item + j]*V_alpha[m];
            }
        }
        double V_setsum_z[n->item];
        for (int j = 0; j < n->item; ++j) {
            V_setsum_z[j] = 0;
            for (int m = 0; m < n->set; ++m) {
                V_setsum_z[j] += V_setsum_z_in0[m][j];
            }
        }
        double V_z[n->item];
        for (int j = 0; j < n->item; ++j) {
            V_z[j] = V_beta*V_setsum_z[j];
        }
        double V_lin_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_i[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_i_y[(size_t)j * n->input + k] * R_y[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_i_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->item; ++k)
                acc += p->W_i_z[(size_t)j * n->item + k] * V_z[k];
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
                acc += p->W_f_y[(size_t)j * n->input + k] * R_y[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->item; ++k)
                acc += p->W_f_z[(size_t)j * n->item + k] * V_z[k];
            V_lin_f[j] = acc;
        }
        double V_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f[j] = lv_sigmoid_f64(V_lin_f[j]);
        }
        double V_lin_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_o[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_o_y[(size_t)j * n->input + k] * R_y[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->item; ++k)
                acc += p->W_o_z[(size_t)j * n->item + k] * V_z[k];
            V_lin_o[j] = acc;
        }
        double V_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_o[j] = lv_sigmoid_f64(V_lin_o[j]);
        }
        double V_lin_g[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = p->b_g[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_g_y[(size_t)j * n->input + k] * R_y[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_g_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->item; ++k)
                acc += p->W_g_z[(size_t)j * n->item + k] * V_z[k];
            V_lin_g[j] = acc;
        }
        double V_g[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_g[j] = lv_tanh_f64(V_lin_g[j]);
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

/* A sequence: inputs (T, batch, size); set inputs (batch, n->set, size), the same at every
   step; states updated in place; outputs (T, batch, hidden) receives the output state after
   every step (NULL: not kept). */
int attention_decoder_sequence_f64(const attention_decoder_sizes *n, const attention_decoder_params_f64 *p, const double *A_y, const double *A_a, double *A_h, double *A_c, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    double *X_c = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_c) {
        free(X_h);
        free(X_c);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        attention_decoder_step_f64(n, p, A_y + (size_t)t * batch * n->input, A_a, A_h, A_c, X_h, X_c, batch, t0 + t);
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
static float lv_exp_f32(float x) { return expf(x); }

typedef struct {
    const float *W_p_a;
    const float *W_p_h;
    const float *W_i_y;
    const float *W_i_h;
    const float *W_i_z;
    const float *W_f_y;
    const float *W_f_h;
    const float *W_f_z;
    const float *W_o_y;
    const float *W_o_h;
    const float *W_o_z;
    const float *W_g_y;
    const float *W_g_h;
    const float *W_g_z;
    const float *b_p;
    const float *b_i;
    const float *b_f;
    const float *b_o;
    const float *b_g;
    const float *w_e;
    const float *w_b;
    const float *b_b;
} attention_decoder_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each, and set
   inputs, (batch, n->set, size) each. */
void attention_decoder_step_f32(const attention_decoder_sizes *n, const attention_decoder_params_f32 *p, const float *A_y, const float *A_a, const float *A_h, const float *A_c, float *N_h, float *N_c, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_y = A_y + (size_t)b * n->input;
        const float *R_a = A_a + (size_t)b * n->set * n->item;
        const float *R_h = A_h + (size_t)b * n->hidden;
        const float *R_c = A_c + (size_t)b * n->hidden;
        float V_lin_p[n->set][n->attn];
        for (int j = 0; j < n->attn; ++j) {
            float acc = p->b_p[j];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_p_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int m = 0; m < n->set; ++m) {
                float acc_m = acc;
                for (int k = 0; k < n->item; ++k)
                    acc_m += p->W_p_a[(size_t)j * n->item + k] * R_a[(size_t)m * n->item + k];
                V_lin_p[m][j] = acc_m;
            }
        }
        float V_p[n->set][n->attn];
        for (int m = 0; m < n->set; ++m) {
            for (int j = 0; j < n->attn; ++j) {
                V_p[m][j] = V_lin_p[m][j];
            }
        }
        float V_sum_e_in0[n->set][n->attn];
        for (int m = 0; m < n->set; ++m) {
            for (int j = 0; j < n->attn; ++j) {
                V_sum_e_in0[m][j] = p->w_e[j]*lv_tanh_f32(V_p[m][j]);
            }
        }
        float V_sum_e[n->set];
        for (int m = 0; m < n->set; ++m) {
            V_sum_e[m] = 0;
            for (int j = 0; j < n->attn; ++j) {
                V_sum_e[m] += V_sum_e_in0[m][j];
            }
        }
        float V_e[n->set];
        for (int m = 0; m < n->set; ++m) {
            V_e[m] = V_sum_e[m];
        }
        float V_setmax_alpha = V_e[0];
        for (int m = 1; m < n->set; ++m) {
            if (V_e[m] > V_setmax_alpha || V_e[m] != V_e[m]) V_setmax_alpha = V_e[m];
        }
        float V_setsum_alpha_in0[n->set];
        for (int m = 0; m < n->set; ++m) {
            V_setsum_alpha_in0[m] = lv_exp_f32(V_e[m] - V_setmax_alpha);
        }
        float V_setsum_alpha = 0;
        for (int m = 0; m < n->set; ++m) {
            V_setsum_alpha += V_setsum_alpha_in0[m];
        }
        float V_alpha[n->set];
        for (int m = 0; m < n->set; ++m) {
            V_alpha[m] = V_setsum_alpha_in0[m]/V_setsum_alpha;
        }
        float V_sum_beta_in0[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_sum_beta_in0[j] = R_h[j]*p->w_b[j] + p->b_b[j];
        }
        float V_sum_beta = 0;
        for (int j = 0; j < n->hidden; ++j) {
            V_sum_beta += V_sum_beta_in0[j];
        }
        float V_beta = lv_sigmoid_f32(V_sum_beta);
        float V_setsum_z_in0[n->set][n->item];
        for (int m = 0; m < n->set; ++m) {
            for (int j = 0; j < n->item; ++j) {
                V_setsum_z_in0[m][j] = R_a[(size_t)m * n->item + j]*V_alpha[m];
            }
        }
        float V_setsum_z[n->item];
        for (int j = 0; j < n->item; ++j) {
            V_setsum_z[j] = 0;
            for (int m = 0; m < n->set; ++m) {
                V_setsum_z[j] += V_setsum_z_in0[m][j];
            }
        }
        float V_z[n->item];
        for (int j = 0; j < n->item; ++j) {
            V_z[j] = V_beta*V_setsum_z[j];
        }
        float V_lin_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_i[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_i_y[(size_t)j * n->input + k] * R_y[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_i_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->item; ++k)
                acc += p->W_i_z[(size_t)j * n->item + k] * V_z[k];
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
                acc += p->W_f_y[(size_t)j * n->input + k] * R_y[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_f_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->item; ++k)
                acc += p->W_f_z[(size_t)j * n->item + k] * V_z[k];
            V_lin_f[j] = acc;
        }
        float V_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f[j] = lv_sigmoid_f32(V_lin_f[j]);
        }
        float V_lin_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_o[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_o_y[(size_t)j * n->input + k] * R_y[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_o_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->item; ++k)
                acc += p->W_o_z[(size_t)j * n->item + k] * V_z[k];
            V_lin_o[j] = acc;
        }
        float V_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_o[j] = lv_sigmoid_f32(V_lin_o[j]);
        }
        float V_lin_g[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = p->b_g[j];
            for (int k = 0; k < n->input; ++k)
                acc += p->W_g_y[(size_t)j * n->input + k] * R_y[k];
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_g_h[(size_t)j * n->hidden + k] * R_h[k];
            for (int k = 0; k < n->item; ++k)
                acc += p->W_g_z[(size_t)j * n->item + k] * V_z[k];
            V_lin_g[j] = acc;
        }
        float V_g[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_g[j] = lv_tanh_f32(V_lin_g[j]);
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

/* A sequence: inputs (T, batch, size); set inputs (batch, n->set, size), the same at every
   step; states updated in place; outputs (T, batch, hidden) receives the output state after
   every step (NULL: not kept). */
int attention_decoder_sequence_f32(const attention_decoder_sizes *n, const attention_decoder_params_f32 *p, const float *A_y, const float *A_a, float *A_h, float *A_c, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    float *X_c = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_c) {
        free(X_h);
        free(X_c);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        attention_decoder_step_f32(n, p, A_y + (size_t)t * batch * n->input, A_a, A_h, A_c, X_h, X_c, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_c, X_c, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    free(X_c);
    return 0;
}
