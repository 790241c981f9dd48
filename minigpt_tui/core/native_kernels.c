/* The sampler's hot path in plain C, compiled on first use for the machine at hand (core/native.py)
 * and called with ctypes:
 *   decode_step  one decoded token of one sequence, the whole Transformer in one call
 *                (models/native_decode.py's NativeStep, in place of steady_decode.SteadyStep);
 *   pick         the sampler's draw, the drawn token's probability and the top alternatives
 *                (generation/sampling.py's Sampler.pick, when no filter is on).
 * At one token per step a small model's time goes to ~50 torch calls a token and to what the
 * weights, streamed through the L2 cache every token, evict from under them, not to the flops.
 *
 * decode_step's arithmetic is SteadyStep's (the DecodePlan's weights, the rotated keys and values
 * in the cache's ring) as loops over float32. Its logits equal SteadyStep's to float rounding (the
 * sums run in another order), not bit for bit; tests/test_native.py holds them to the general path.
 *
 * Shapes as in transformer.py: C width, H query heads, Hkv key/value heads, D head size,
 * W window (the ring's slots), V vocabulary, F the up projection's outputs (4C, or 2 x hidden
 * for SwiGLU). Every matrix is (in, out), row-major.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "native_math.h"

enum { LAYER_NORM = 0, RMS_NORM = 1 };
enum { GELU = 0, GELU_TANH = 1, SWIGLU = 2 };

typedef struct {
    const float *norm1_w, *norm1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    const float *norm2_w, *norm2_b, *up_w, *up_b, *down_w, *down_b;
    float *keys, *values; /* (Hkv, W, D) each */
} Layer;

typedef struct {
    int n_layer, C, H, Hkv, D, W, F, V, norm, activation;
    float eps;
    const Layer *layers;
    const float *final_w, *final_b, *head; /* head (C, V) */
    float *scratch; /* x C, h max(C, F), qkv (H + 2 Hkv) D, y H D, scores W */
} Model;

/* y = x @ w (+ bias) (+ y if accumulate): w (K, N). The loop runs along w's rows, so the weights
 * stream through once, in order, and the N outputs stay in registers and L1. */
static void project(const float *restrict x, const float *restrict w, const float *restrict bias,
                    float *restrict y, int K, int N, int accumulate) {
    if (!accumulate)
        memset(y, 0, (size_t)N * sizeof(float));
    for (int k = 0; k < K; k++) {
        const float xk = x[k];
        const float *restrict row = w + (size_t)k * N;
#pragma omp simd
        for (int n = 0; n < N; n++)
            y[n] += xk * row[n];
    }
    if (bias)
        for (int n = 0; n < N; n++)
            y[n] += bias[n];
}

static void normalize(const Model *m, const float *restrict x, const float *restrict w,
                      const float *restrict b, float *restrict out) {
    const int C = m->C;
    float mean = 0.f, var = 0.f;
    if (m->norm == LAYER_NORM) {
#pragma omp simd reduction(+ : mean)
        for (int i = 0; i < C; i++)
            mean += x[i];
        mean /= C;
    }
#pragma omp simd reduction(+ : var)
    for (int i = 0; i < C; i++)
        var += (x[i] - mean) * (x[i] - mean);
    const float inv = 1.f / sqrtf(var / C + m->eps);
    for (int i = 0; i < C; i++)
        out[i] = (x[i] - mean) * inv * w[i] + (b ? b[i] : 0.f);
}

static void activate(const Model *m, float *restrict h) {
    const int F = m->F;
    if (m->activation == SWIGLU) { /* h = silu(gate) * up, gate and up the halves of h */
        const int half = F / 2;
#pragma omp simd
        for (int i = 0; i < half; i++)
            h[i] = h[i] / (1.f + exp_vectorized(-h[i])) * h[half + i];
    } else if (m->activation == GELU_TANH) { /* tanh(u) = 1 - 2 / (e^2u + 1) */
#pragma omp simd
        for (int i = 0; i < F; i++) {
            const float v = h[i], u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
            h[i] = 0.5f * v * (2.f - 2.f / (exp_vectorized(2.f * u) + 1.f));
        }
    } else {
#pragma omp simd
        for (int i = 0; i < F; i++)
            h[i] = 0.5f * h[i] * (1.f + erf_vectorized(h[i] * 0.7071067811865476f));
    }
}

/* Queries and keys (H + Hkv heads of D/2 interleaved pairs) times the position's rotation, D/2
 * complex numbers (cos, sin), in place. */
static void rotate(float *restrict qk, const float *restrict rotation, int heads, int D) {
    for (int h = 0; h < heads; h++) {
        float *restrict v = qk + (size_t)h * D;
        for (int i = 0; i < D / 2; i++) {
            const float a = v[2 * i], b = v[2 * i + 1], c = rotation[2 * i], s = rotation[2 * i + 1];
            v[2 * i] = a * c - b * s;
            v[2 * i + 1] = a * s + b * c;
        }
    }
}

/* y (H D) = each query head's softmax-weighted sum of its key/value head's values over the first
 * `slots` slots of the ring. The queries came scaled (DecodePlan). */
static void attend(const Model *m, const Layer *layer, const float *restrict q, float *restrict y,
                   float *restrict scores, int slots) {
    const int D = m->D, W = m->W, G = m->H / m->Hkv;
    for (int h = 0; h < m->H; h++) {
        const float *restrict qh = q + (size_t)h * D;
        const float *restrict keys = layer->keys + (size_t)(h / G) * W * D;
        const float *restrict values = layer->values + (size_t)(h / G) * W * D;
        float top = -INFINITY;
        for (int s = 0; s < slots; s++) {
            const float *restrict k = keys + (size_t)s * D;
            float dot = 0.f;
#pragma omp simd reduction(+ : dot)
            for (int d = 0; d < D; d++)
                dot += qh[d] * k[d];
            scores[s] = dot;
            top = dot > top ? dot : top;
        }
        float total = 0.f;
#pragma omp simd reduction(+ : total)
        for (int s = 0; s < slots; s++) {
            scores[s] = exp_vectorized(scores[s] - top);
            total += scores[s];
        }
        float *restrict yh = y + (size_t)h * D;
        memset(yh, 0, (size_t)D * sizeof(float));
        for (int s = 0; s < slots; s++) {
            const float p = scores[s] / total;
            const float *restrict v = values + (size_t)s * D;
#pragma omp simd
            for (int d = 0; d < D; d++)
                yh[d] += p * v[d];
        }
    }
}

/* Token embedding `embedding` (C) at the position whose rotation is `rotation` -> logits (V);
 * its key and value go into ring slot `slot`, and attention reads slots 0..slots-1. */
void decode_step(const Model *m, const float *embedding, const float *rotation, int slot, int slots,
                 float *logits) {
    const int C = m->C, H = m->H, Hkv = m->Hkv, D = m->D, W = m->W, F = m->F;
    const int QKV = (H + 2 * Hkv) * D;
    float *x = m->scratch, *h = x + C, *qkv = h + (F > C ? F : C), *y = qkv + QKV, *scores = y + H * D;
    memcpy(x, embedding, (size_t)C * sizeof(float));
    for (int l = 0; l < m->n_layer; l++) {
        const Layer *layer = m->layers + l;
        /* attention: x + proj(attend(rotate(q), ring of rotated k, v)) */
        normalize(m, x, layer->norm1_w, layer->norm1_b, h);
        project(h, layer->qkv_w, layer->qkv_b, qkv, C, QKV, 0);
        rotate(qkv, rotation, H + Hkv, D);
        for (int g = 0; g < Hkv; g++) {
            memcpy(layer->keys + ((size_t)g * W + slot) * D, qkv + (size_t)(H + g) * D, (size_t)D * sizeof(float));
            memcpy(layer->values + ((size_t)g * W + slot) * D, qkv + (size_t)(H + Hkv + g) * D,
                   (size_t)D * sizeof(float));
        }
        attend(m, layer, qkv, y, scores, slots);
        project(y, layer->proj_w, layer->proj_b, x, H * D, C, 1);
        /* MLP: x + down(act(up(norm(x)))) */
        normalize(m, x, layer->norm2_w, layer->norm2_b, y);
        project(y, layer->up_w, layer->up_b, h, C, F, 0);
        activate(m, h);
        project(h, layer->down_w, layer->down_b, x, m->activation == SWIGLU ? F / 2 : F, C, 1);
    }
    normalize(m, x, m->final_w, m->final_b, h);
    project(h, m->head, NULL, logits, C, m->V, 0);
}

/* The sampler's pick from logits (V): the draw argmax(logits + temperature * noise) (the Gumbel-max
 * trick; argmax(logits) where noise is NULL), the drawn token's probability, and the k most likely
 * tokens with theirs (softmax at temperature 1), most likely first. ids[0], probs[0]: the drawn
 * token; ids[1..k], probs[1..k]: the top k. */
void pick(const float *logits, int V, const float *noise, float temperature, int k, int *ids, float *probs) {
    int drawn = 0;
    float best = -INFINITY, top = -INFINITY;
    for (int i = 0; i < V; i++) {
        const float v = noise ? logits[i] + temperature * noise[i] : logits[i];
        if (v > best) { best = v; drawn = i; }
        top = logits[i] > top ? logits[i] : top;
    }
    float total = 0.f;
#pragma omp simd reduction(+ : total)
    for (int i = 0; i < V; i++)
        total += exp_vectorized(logits[i] - top);
    for (int j = 1; j <= k; j++) { ids[j] = -1; probs[j] = -1.f; }
    for (int i = 0; i < V; i++) { /* insertion into the top k, kept sorted */
        const float v = logits[i];
        if (k == 0 || (ids[k] >= 0 && v <= logits[ids[k]])) continue;
        int j = k;
        while (j > 1 && (ids[j - 1] < 0 || v > logits[ids[j - 1]])) { ids[j] = ids[j - 1]; j--; }
        ids[j] = i;
    }
    for (int j = 1; j <= k; j++)
        probs[j] = ids[j] >= 0 ? exp_vectorized(logits[ids[j]] - top) / total : 0.f;
    ids[0] = drawn;
    probs[0] = exp_vectorized(logits[drawn] - top) / total;
}
