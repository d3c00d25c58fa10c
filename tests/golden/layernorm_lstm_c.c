/*
 * layernorm_lstm: Layer-normalised LSTM (LN-LSTM)
 *
 * Exported by lstm-verify 0.1.0 (target c) from spec layernorm_lstm.toml,
 * sha256 cce434ede007f30f1c64adcce7c6f1721be6c3f98b7bcd3da720c65ed26dc876.
 * Regenerate: lstm-verify export layernorm_lstm --target c -o layernorm_lstm_c.c
 *
 * Sources: Ba, Kiros & Hinton 2016, Layer Normalization, eq. 20-22; ryankiros/layer-norm, layers.py lstm_layer (eps 1e-5 inside the square root)
 * Equations (lin = affine map: one weight per argument, plus a bias; h' = new value):
 *     ix = lin(x, bias=false)
 *     fx = lin(x, bias=false)
 *     gx = lin(x, bias=false)
 *     ox = lin(x, bias=false)
 *     ih = lin(h, bias=false)
 *     fh = lin(h, bias=false)
 *     gh = lin(h, bias=false)
 *     oh = lin(h, bias=false)
 *     mx = mean(ix, fx, gx, ox)
 *     sx = sqrt(var(ix, fx, gx, ox) + 1e-5)
 *     mh = mean(ih, fh, gh, oh)
 *     sh = sqrt(var(ih, fh, gh, oh) + 1e-5)
 *     i = sigmoid(a_ix*(ix - mx)/sx + a_ih*(ih - mh)/sh + b_i)
 *     f = sigmoid(a_fx*(fx - mx)/sx + a_fh*(fh - mh)/sh + b_f)
 *     g = tanh(a_gx*(gx - mx)/sx + a_gh*(gh - mh)/sh + b_g)
 *     o = sigmoid(a_ox*(ox - mx)/sx + a_oh*(oh - mh)/sh + b_o)
 *     c' = f*c + i*g
 *     h' = o*tanh(layernorm(c', a_c, b_c, 1e-5))
 *
 * Inputs: x (input). State: h (hidden), c (hidden). Output: h.
 * Parameters (weights stored (out, in), as torch stores them):
 *     W_ix_x: (hidden, input)
 *     W_fx_x: (hidden, input)
 *     W_gx_x: (hidden, input)
 *     W_ox_x: (hidden, input)
 *     W_ih_h: (hidden, hidden)
 *     W_fh_h: (hidden, hidden)
 *     W_gh_h: (hidden, hidden)
 *     W_oh_h: (hidden, hidden)
 *     a_ix: (hidden,)
 *     a_fx: (hidden,)
 *     a_gx: (hidden,)
 *     a_ox: (hidden,)
 *     a_ih: (hidden,)
 *     a_fh: (hidden,)
 *     a_gh: (hidden,)
 *     a_oh: (hidden,)
 *     b_i: (hidden,)
 *     b_f: (hidden,)
 *     b_g: (hidden,)
 *     b_o: (hidden,)
 *     a_c: (hidden,)
 *     b_c: (hidden,)
 *
 * Note: The input-to-hidden and the hidden-to-hidden pre-activations of all four gates are each
 * normalised as one vector of 4*hidden units (mean and population variance over the four gates
 * together), each unit with its own gain; the new cell is normalised over its hidden units before
 * the tanh. eps = 1e-5 inside the square root, as in the paper's code and torch.nn.LayerNorm. The
 * paper's two normalisation biases and the gate bias add up to one bias per gate (b_i, b_f, b_g,
 * b_o): only their sum is identifiable.
 *
 * API (row-major; batch rows of length <size>; p->W[j*in + k] is weight row j, column k):
 *   layernorm_lstm_step_f64(n, p, <inputs>, <states>, <new states>, batch, t)
 *   layernorm_lstm_sequence_f64(n, p, <input sequences (T, batch, n)>, <states, updated in place>,
 *                      outputs (T, batch, n) or NULL, T, batch, t0)  -> 0, or -1 if out of memory
 * and the same with _f32 and float. Forward inference only.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int hidden; int input; } layernorm_lstm_sizes;

static double lv_sigmoid_f64(double x) {
    /* stable: never exp of a large positive number */
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static double lv_tanh_f64(double x) { return tanh(x); }
static double lv_sqrt_f64(double x) { return sqrt(x); }

typedef struct {
    const double *W_ix_x;
    const double *W_fx_x;
    const double *W_gx_x;
    const double *W_ox_x;
    const double *W_ih_h;
    const double *W_fh_h;
    const double *W_gh_h;
    const double *W_oh_h;
    const double *a_ix;
    const double *a_fx;
    const double *a_gx;
    const double *a_ox;
    const double *a_ih;
    const double *a_fh;
    const double *a_gh;
    const double *a_oh;
    const double *b_i;
    const double *b_f;
    const double *b_g;
    const double *b_o;
    const double *a_c;
    const double *b_c;
} layernorm_lstm_params_f64;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void layernorm_lstm_step_f64(const layernorm_lstm_sizes *n, const layernorm_lstm_params_f64 *p, const double *A_x, const double *A_h, const double *A_c, double *N_h, double *N_c, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const double *R_x = A_x + (size_t)b * n->input;
        const double *R_h = A_h + (size_t)b * n->hidden;
        const double *R_c = A_c + (size_t)b * n->hidden;
        double V_lin_ix[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = 0;
            for (int k = 0; k < n->input; ++k)
                acc += p->W_ix_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_ix[j] = acc;
        }
        double V_ix[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_ix[j] = V_lin_ix[j];
        }
        double V_lin_fx[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = 0;
            for (int k = 0; k < n->input; ++k)
                acc += p->W_fx_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_fx[j] = acc;
        }
        double V_fx[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_fx[j] = V_lin_fx[j];
        }
        double V_lin_gx[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = 0;
            for (int k = 0; k < n->input; ++k)
                acc += p->W_gx_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_gx[j] = acc;
        }
        double V_gx[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_gx[j] = V_lin_gx[j];
        }
        double V_lin_ox[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = 0;
            for (int k = 0; k < n->input; ++k)
                acc += p->W_ox_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_ox[j] = acc;
        }
        double V_ox[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_ox[j] = V_lin_ox[j];
        }
        double V_lin_ih[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = 0;
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_ih_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_ih[j] = acc;
        }
        double V_ih[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_ih[j] = V_lin_ih[j];
        }
        double V_lin_fh[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = 0;
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_fh_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_fh[j] = acc;
        }
        double V_fh[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_fh[j] = V_lin_fh[j];
        }
        double V_lin_gh[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = 0;
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_gh_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_gh[j] = acc;
        }
        double V_gh[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_gh[j] = V_lin_gh[j];
        }
        double V_lin_oh[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            double acc = 0;
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_oh_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_oh[j] = acc;
        }
        double V_oh[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_oh[j] = V_lin_oh[j];
        }
        double V_mean_mx = 0;
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mx += V_ix[j];
        }
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mx += V_fx[j];
        }
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mx += V_gx[j];
        }
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mx += V_ox[j];
        }
        V_mean_mx /= (double)(n->hidden + n->hidden + n->hidden + n->hidden);
        double V_mx = V_mean_mx;
        double V_var_sx = 0;
        for (int j = 0; j < n->hidden; ++j) {
            double dev = V_ix[j] - V_mean_mx;
            V_var_sx += dev * dev;
        }
        for (int j = 0; j < n->hidden; ++j) {
            double dev = V_fx[j] - V_mean_mx;
            V_var_sx += dev * dev;
        }
        for (int j = 0; j < n->hidden; ++j) {
            double dev = V_gx[j] - V_mean_mx;
            V_var_sx += dev * dev;
        }
        for (int j = 0; j < n->hidden; ++j) {
            double dev = V_ox[j] - V_mean_mx;
            V_var_sx += dev * dev;
        }
        V_var_sx /= (double)(n->hidden + n->hidden + n->hidden + n->hidden);
        double V_sx = lv_sqrt_f64(V_var_sx + (1.0/100000.0));
        double V_mean_mh = 0;
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mh += V_ih[j];
        }
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mh += V_fh[j];
        }
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mh += V_gh[j];
        }
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mh += V_oh[j];
        }
        V_mean_mh /= (double)(n->hidden + n->hidden + n->hidden + n->hidden);
        double V_mh = V_mean_mh;
        double V_var_sh = 0;
        for (int j = 0; j < n->hidden; ++j) {
            double dev = V_ih[j] - V_mean_mh;
            V_var_sh += dev * dev;
        }
        for (int j = 0; j < n->hidden; ++j) {
            double dev = V_fh[j] - V_mean_mh;
            V_var_sh += dev * dev;
        }
        for (int j = 0; j < n->hidden; ++j) {
            double dev = V_gh[j] - V_mean_mh;
            V_var_sh += dev * dev;
        }
        for (int j = 0; j < n->hidden; ++j) {
            double dev = V_oh[j] - V_mean_mh;
            V_var_sh += dev * dev;
        }
        V_var_sh /= (double)(n->hidden + n->hidden + n->hidden + n->hidden);
        double V_sh = lv_sqrt_f64(V_var_sh + (1.0/100000.0));
        double V_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_i[j] = lv_sigmoid_f64(p->b_i[j] + p->a_ix[j]*(V_ix[j] - V_mx)/V_sx + p->a_ih[j]*(V_ih[j] - V_mh)/V_sh);
        }
        double V_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f[j] = lv_sigmoid_f64(p->b_f[j] + p->a_fx[j]*(V_fx[j] - V_mx)/V_sx + p->a_fh[j]*(V_fh[j] - V_mh)/V_sh);
        }
        double V_g[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_g[j] = lv_tanh_f64(p->b_g[j] + p->a_gx[j]*(V_gx[j] - V_mx)/V_sx + p->a_gh[j]*(V_gh[j] - V_mh)/V_sh);
        }
        double V_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_o[j] = lv_sigmoid_f64(p->b_o[j] + p->a_ox[j]*(-V_mx + V_ox[j])/V_sx + p->a_oh[j]*(-V_mh + V_oh[j])/V_sh);
        }
        double V_c_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c_[j] = R_c[j]*V_f[j] + V_g[j]*V_i[j];
        }
        double V_mean_h = 0;
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_h += V_c_[j];
        }
        V_mean_h /= (double)(n->hidden);
        double V_var_h = 0;
        for (int j = 0; j < n->hidden; ++j) {
            double dev = V_c_[j] - V_mean_h;
            V_var_h += dev * dev;
        }
        V_var_h /= (double)(n->hidden);
        double V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = V_o[j]*lv_tanh_f64(p->a_c[j]*(V_c_[j] - V_mean_h)/lv_sqrt_f64(V_var_h + (1.0/100000.0)) + p->b_c[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(double) * (size_t)n->hidden);
        memcpy(N_c + (size_t)b * n->hidden, V_c_, sizeof(double) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int layernorm_lstm_sequence_f64(const layernorm_lstm_sizes *n, const layernorm_lstm_params_f64 *p, const double *A_x, double *A_h, double *A_c, double *outputs, int T, int batch, long t0)
{
    double *X_h = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    double *X_c = malloc(sizeof(double) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_c) {
        free(X_h);
        free(X_c);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        layernorm_lstm_step_f64(n, p, A_x + (size_t)t * batch * n->input, A_h, A_c, X_h, X_c, batch, t0 + t);
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
static float lv_sqrt_f32(float x) { return sqrtf(x); }

typedef struct {
    const float *W_ix_x;
    const float *W_fx_x;
    const float *W_gx_x;
    const float *W_ox_x;
    const float *W_ih_h;
    const float *W_fh_h;
    const float *W_gh_h;
    const float *W_oh_h;
    const float *a_ix;
    const float *a_fx;
    const float *a_gx;
    const float *a_ox;
    const float *a_ih;
    const float *a_fh;
    const float *a_gh;
    const float *a_oh;
    const float *b_i;
    const float *b_f;
    const float *b_g;
    const float *b_o;
    const float *a_c;
    const float *b_c;
} layernorm_lstm_params_f32;

/* One step for a batch: new states from inputs and states, (batch, size) each. */
void layernorm_lstm_step_f32(const layernorm_lstm_sizes *n, const layernorm_lstm_params_f32 *p, const float *A_x, const float *A_h, const float *A_c, float *N_h, float *N_c, int batch, long t)
{
    for (int b = 0; b < batch; ++b) {
        const float *R_x = A_x + (size_t)b * n->input;
        const float *R_h = A_h + (size_t)b * n->hidden;
        const float *R_c = A_c + (size_t)b * n->hidden;
        float V_lin_ix[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = 0;
            for (int k = 0; k < n->input; ++k)
                acc += p->W_ix_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_ix[j] = acc;
        }
        float V_ix[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_ix[j] = V_lin_ix[j];
        }
        float V_lin_fx[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = 0;
            for (int k = 0; k < n->input; ++k)
                acc += p->W_fx_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_fx[j] = acc;
        }
        float V_fx[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_fx[j] = V_lin_fx[j];
        }
        float V_lin_gx[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = 0;
            for (int k = 0; k < n->input; ++k)
                acc += p->W_gx_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_gx[j] = acc;
        }
        float V_gx[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_gx[j] = V_lin_gx[j];
        }
        float V_lin_ox[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = 0;
            for (int k = 0; k < n->input; ++k)
                acc += p->W_ox_x[(size_t)j * n->input + k] * R_x[k];
            V_lin_ox[j] = acc;
        }
        float V_ox[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_ox[j] = V_lin_ox[j];
        }
        float V_lin_ih[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = 0;
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_ih_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_ih[j] = acc;
        }
        float V_ih[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_ih[j] = V_lin_ih[j];
        }
        float V_lin_fh[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = 0;
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_fh_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_fh[j] = acc;
        }
        float V_fh[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_fh[j] = V_lin_fh[j];
        }
        float V_lin_gh[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = 0;
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_gh_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_gh[j] = acc;
        }
        float V_gh[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_gh[j] = V_lin_gh[j];
        }
        float V_lin_oh[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            float acc = 0;
            for (int k = 0; k < n->hidden; ++k)
                acc += p->W_oh_h[(size_t)j * n->hidden + k] * R_h[k];
            V_lin_oh[j] = acc;
        }
        float V_oh[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_oh[j] = V_lin_oh[j];
        }
        float V_mean_mx = 0;
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mx += V_ix[j];
        }
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mx += V_fx[j];
        }
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mx += V_gx[j];
        }
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mx += V_ox[j];
        }
        V_mean_mx /= (float)(n->hidden + n->hidden + n->hidden + n->hidden);
        float V_mx = V_mean_mx;
        float V_var_sx = 0;
        for (int j = 0; j < n->hidden; ++j) {
            float dev = V_ix[j] - V_mean_mx;
            V_var_sx += dev * dev;
        }
        for (int j = 0; j < n->hidden; ++j) {
            float dev = V_fx[j] - V_mean_mx;
            V_var_sx += dev * dev;
        }
        for (int j = 0; j < n->hidden; ++j) {
            float dev = V_gx[j] - V_mean_mx;
            V_var_sx += dev * dev;
        }
        for (int j = 0; j < n->hidden; ++j) {
            float dev = V_ox[j] - V_mean_mx;
            V_var_sx += dev * dev;
        }
        V_var_sx /= (float)(n->hidden + n->hidden + n->hidden + n->hidden);
        float V_sx = lv_sqrt_f32(V_var_sx + (1.0/100000.0));
        float V_mean_mh = 0;
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mh += V_ih[j];
        }
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mh += V_fh[j];
        }
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mh += V_gh[j];
        }
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_mh += V_oh[j];
        }
        V_mean_mh /= (float)(n->hidden + n->hidden + n->hidden + n->hidden);
        float V_mh = V_mean_mh;
        float V_var_sh = 0;
        for (int j = 0; j < n->hidden; ++j) {
            float dev = V_ih[j] - V_mean_mh;
            V_var_sh += dev * dev;
        }
        for (int j = 0; j < n->hidden; ++j) {
            float dev = V_fh[j] - V_mean_mh;
            V_var_sh += dev * dev;
        }
        for (int j = 0; j < n->hidden; ++j) {
            float dev = V_gh[j] - V_mean_mh;
            V_var_sh += dev * dev;
        }
        for (int j = 0; j < n->hidden; ++j) {
            float dev = V_oh[j] - V_mean_mh;
            V_var_sh += dev * dev;
        }
        V_var_sh /= (float)(n->hidden + n->hidden + n->hidden + n->hidden);
        float V_sh = lv_sqrt_f32(V_var_sh + (1.0/100000.0));
        float V_i[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_i[j] = lv_sigmoid_f32(p->b_i[j] + p->a_ix[j]*(V_ix[j] - V_mx)/V_sx + p->a_ih[j]*(V_ih[j] - V_mh)/V_sh);
        }
        float V_f[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_f[j] = lv_sigmoid_f32(p->b_f[j] + p->a_fx[j]*(V_fx[j] - V_mx)/V_sx + p->a_fh[j]*(V_fh[j] - V_mh)/V_sh);
        }
        float V_g[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_g[j] = lv_tanh_f32(p->b_g[j] + p->a_gx[j]*(V_gx[j] - V_mx)/V_sx + p->a_gh[j]*(V_gh[j] - V_mh)/V_sh);
        }
        float V_o[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_o[j] = lv_sigmoid_f32(p->b_o[j] + p->a_ox[j]*(-V_mx + V_ox[j])/V_sx + p->a_oh[j]*(-V_mh + V_oh[j])/V_sh);
        }
        float V_c_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_c_[j] = R_c[j]*V_f[j] + V_g[j]*V_i[j];
        }
        float V_mean_h = 0;
        for (int j = 0; j < n->hidden; ++j) {
            V_mean_h += V_c_[j];
        }
        V_mean_h /= (float)(n->hidden);
        float V_var_h = 0;
        for (int j = 0; j < n->hidden; ++j) {
            float dev = V_c_[j] - V_mean_h;
            V_var_h += dev * dev;
        }
        V_var_h /= (float)(n->hidden);
        float V_h_[n->hidden];
        for (int j = 0; j < n->hidden; ++j) {
            V_h_[j] = V_o[j]*lv_tanh_f32(p->a_c[j]*(V_c_[j] - V_mean_h)/lv_sqrt_f32(V_var_h + (1.0/100000.0)) + p->b_c[j]);
        }
        memcpy(N_h + (size_t)b * n->hidden, V_h_, sizeof(float) * (size_t)n->hidden);
        memcpy(N_c + (size_t)b * n->hidden, V_c_, sizeof(float) * (size_t)n->hidden);
    }
}

/* A sequence: inputs (T, batch, size); states updated in place; outputs (T, batch, hidden)
   receives the output state after every step (NULL: not kept). */
int layernorm_lstm_sequence_f32(const layernorm_lstm_sizes *n, const layernorm_lstm_params_f32 *p, const float *A_x, float *A_h, float *A_c, float *outputs, int T, int batch, long t0)
{
    float *X_h = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    float *X_c = malloc(sizeof(float) * (size_t)batch * (size_t)n->hidden);
    if (!X_h || !X_c) {
        free(X_h);
        free(X_c);
        return -1;
    }
    for (int t = 0; t < T; ++t) {
        layernorm_lstm_step_f32(n, p, A_x + (size_t)t * batch * n->input, A_h, A_c, X_h, X_c, batch, t0 + t);
        memcpy(A_h, X_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        memcpy(A_c, X_c, sizeof(float) * (size_t)batch * (size_t)n->hidden);
        if (outputs)
            memcpy(outputs + (size_t)t * batch * n->hidden, A_h, sizeof(float) * (size_t)batch * (size_t)n->hidden);
    }
    free(X_h);
    free(X_c);
    return 0;
}
