/* Two parts of a Transformer's training step on a CPU in float32, in C (built and loaded by
 * core/native.py with native_kernels.c):
 *   attention_forward, attention_backward  the causal attention, rotary included: what
 *       models/training_attention.py's TrainingAttention computes with ~12 torch calls a layer each
 *       way, in one call each way (its NativeAttention);
 *   gelu_slope  the MLP's exact GELU and, in the same pass, its derivative, which the backward then
 *       only multiplies by (models/gelu_slope.py).
 *
 * Attention
 * ---------
 * Why. At the sizes a laptop trains (context 64, head size 32) a head's queries, keys, values and
 * scores are a few KB: they fit in L1, and batched matmuls over them are mostly call overhead and
 * passes over memory (the scores, the softmax, its backward, the rotation and the head layout, each
 * a kernel of its own). Here each (sequence, head) is done start to end while it is in L1, the
 * scores above the diagonal are never computed, and the only memory written for the backward is
 * the softmax weights: the rotated queries and keys are recomputed from the fused projection, which
 * the backward reads anyway. At the shakespeare-char-transformer shape (AVX2, 2 threads) a float32
 * training step took ~0.91x the time (alternated blocks of steps in one process).
 *
 * Layouts, as TrainingAttention's: qkv (B, T, 3, H, D), the fused projection's output; cos, sin,
 * sin_swapped (2, T, D): Rotary.qk_tables, row 0 for queries (times the score scale D^-1/2), row 1
 * for keys; probs (B, H, T, T), the softmax weights (0 above the diagonal); y and grad_y (B, T, H, D);
 * grad_qkv like qkv. Rotation is the NeoX half split: out = x cos + halves_swapped(x) sin, and its
 * transpose the same with sin_swapped (training_attention.py says why).
 *
 * Work is split over the B x H (sequence, head) pairs with OpenMP, in the runtime torch itself runs
 * its threads in (core/native.py checks that there is only one), `threads` of them. Each pair is
 * computed by one thread in a fixed order, so results do not depend on the thread count. D must be
 * a multiple of 8 and D, T at most 128 (training_attention.native_fits).
 *
 * Inner loops use 8-float vectors (GCC/Clang vector extensions: AVX registers on x86, two NEON ones
 * on arm64) with eight independent multiply-add chains, two rows at a time, so that each load
 * serves two rows and the chains hide the multiply-add latency. Results equal the torch path's to
 * float rounding (sums run in another order); tests/test_native_training.py holds them within 1e-5.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "native_math.h"

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }
static inline v8 select8(v8i mask, v8 a, v8 b) { return (v8)((mask & (v8i)a) | (~mask & (v8i)b)); }

static inline v8 exp8(v8 x) {
    float in[8], out[8];
    memcpy(in, &x, sizeof in);
#pragma omp simd
    for (int l = 0; l < 8; l++)
        out[l] = exp_vectorized(in[l]);
    memcpy(&x, out, sizeof x);
    return x;
}

/* out (D) = x cos + halves_swapped(x) sin */
static inline void rotate_row(const float *restrict x, const float *restrict c, const float *restrict s,
                              float *restrict out, int D) {
    const int half = D / 2;
#pragma omp simd
    for (int d = 0; d < half; d++) {
        out[d] = x[d] * c[d] + x[d + half] * s[d];
        out[half + d] = x[half + d] * c[half + d] + x[d] * s[half + d];
    }
}

/* Two rows at once: out0 = a0 @ mt, out1 = a1 @ mt over mt's first n8 columns (mt (D, Tp), n8 a
 * multiple of 8). */
static void row_times2(const float *restrict a0, const float *restrict a1, const float *restrict mt, int D,
                       int Tp, int n8, float *restrict out0, float *restrict out1) {
    int jb = 0;
    for (; jb + 32 <= n8; jb += 32) {
        v8 x0 = {0}, x1 = {0}, x2 = {0}, x3 = {0}, y0 = {0}, y1 = {0}, y2 = {0}, y3 = {0};
        for (int d = 0; d < D; d++) {
            const float *r = mt + (size_t)d * Tp + jb;
            const v8 r0 = load8(r), r1 = load8(r + 8), r2 = load8(r + 16), r3 = load8(r + 24);
            const float u = a0[d], w = a1[d];
            x0 += u * r0; x1 += u * r1; x2 += u * r2; x3 += u * r3;
            y0 += w * r0; y1 += w * r1; y2 += w * r2; y3 += w * r3;
        }
        store8(out0 + jb, x0); store8(out0 + jb + 8, x1); store8(out0 + jb + 16, x2); store8(out0 + jb + 24, x3);
        store8(out1 + jb, y0); store8(out1 + jb + 8, y1); store8(out1 + jb + 16, y2); store8(out1 + jb + 24, y3);
    }
    for (; jb < n8; jb += 8) { /* the last columns, 8 at a time: the chains run along D instead */
        v8 x0 = {0}, x1 = {0}, x2 = {0}, x3 = {0}, y0 = {0}, y1 = {0}, y2 = {0}, y3 = {0};
        for (int d = 0; d < D; d += 4) { /* D is a multiple of 8 */
            const float *r = mt + (size_t)d * Tp + jb;
            const v8 r0 = load8(r), r1 = load8(r + Tp), r2 = load8(r + 2 * Tp), r3 = load8(r + 3 * Tp);
            x0 += a0[d] * r0; x1 += a0[d + 1] * r1; x2 += a0[d + 2] * r2; x3 += a0[d + 3] * r3;
            y0 += a1[d] * r0; y1 += a1[d + 1] * r1; y2 += a1[d + 2] * r2; y3 += a1[d + 3] * r3;
        }
        store8(out0 + jb, (x0 + x1) + (x2 + x3));
        store8(out1 + jb, (y0 + y1) + (y2 + y3));
    }
}

/* Two weightings at once: out0 = sum_j w0[j ws] rows[j rs ..], out1 = sum_j w1[j ws] rows[j rs ..],
 * j < n, each row D long. */
static void weighted_rows2(const float *restrict w0, const float *restrict w1, size_t ws, const float *restrict rows,
                           size_t rs, int n, int D, float *restrict out0, float *restrict out1) {
    int db = 0;
    for (; db + 32 <= D; db += 32) {
        v8 x0 = {0}, x1 = {0}, x2 = {0}, x3 = {0}, y0 = {0}, y1 = {0}, y2 = {0}, y3 = {0};
        for (int j = 0; j < n; j++) {
            const float *r = rows + j * rs + db;
            const v8 r0 = load8(r), r1 = load8(r + 8), r2 = load8(r + 16), r3 = load8(r + 24);
            const float u = w0[j * ws], w = w1[j * ws];
            x0 += u * r0; x1 += u * r1; x2 += u * r2; x3 += u * r3;
            y0 += w * r0; y1 += w * r1; y2 += w * r2; y3 += w * r3;
        }
        store8(out0 + db, x0); store8(out0 + db + 8, x1); store8(out0 + db + 16, x2); store8(out0 + db + 24, x3);
        store8(out1 + db, y0); store8(out1 + db + 8, y1); store8(out1 + db + 16, y2); store8(out1 + db + 24, y3);
    }
    for (; db < D; db += 8) { /* the last columns, 8 at a time: two chains per output along j */
        v8 x0 = {0}, x1 = {0}, y0 = {0}, y1 = {0};
        int j = 0;
        for (; j + 1 < n; j += 2) {
            const v8 r0 = load8(rows + j * rs + db), r1 = load8(rows + (j + 1) * rs + db);
            x0 += w0[j * ws] * r0; x1 += w0[(j + 1) * ws] * r1;
            y0 += w1[j * ws] * r0; y1 += w1[(j + 1) * ws] * r1;
        }
        if (j < n) {
            const v8 r0 = load8(rows + j * rs + db);
            x0 += w0[j * ws] * r0; y0 += w1[j * ws] * r0;
        }
        store8(out0 + db, x0 + x1);
        store8(out1 + db, y0 + y1);
    }
}

/* One row's scores (n8 of them; those after `last`, in the future, masked) -> softmax weights in place. */
static void softmax_row(float *restrict s, int last, int n8) {
    for (int j = last + 1; j < n8; j++)
        s[j] = -INFINITY;
    v8 m8 = load8(s);
    for (int j = 8; j < n8; j += 8) {
        const v8 x = load8(s + j);
        m8 = select8(x > m8, x, m8);
    }
    float top = m8[0];
    for (int l = 1; l < 8; l++)
        top = m8[l] > top ? m8[l] : top;
    v8 t8 = {0};
    for (int j = 0; j < n8; j += 8) {
        const v8 e = exp8(load8(s + j) - top);
        store8(s + j, e);
        t8 += e;
    }
    const float inv = 1.f / ((t8[0] + t8[1]) + (t8[2] + t8[3]) + ((t8[4] + t8[5]) + (t8[6] + t8[7])));
    for (int j = 0; j < n8; j += 8)
        store8(s + j, load8(s + j) * inv);
}

/* The rotated queries q (T, D) and keys k (T, D) of head h of one sequence's qkv rows (`row` floats
 * apart); with kt, the keys also transposed, (D, Tp), zero past T. */
static void rotated_heads(const float *base, size_t row, const float *cos, const float *sin, int T, int H, int D,
                          int h, float *restrict q, float *restrict k, float *restrict kt) {
    const int Tp = (T + 7) & ~7;
    for (int t = 0; t < T; t++) {
        const float *src = base + t * row + (size_t)h * D;
        rotate_row(src, cos + (size_t)t * D, sin + (size_t)t * D, q + (size_t)t * D, D);
        rotate_row(src + (size_t)H * D, cos + (size_t)(T + t) * D, sin + (size_t)(T + t) * D, k + (size_t)t * D, D);
    }
    if (!kt)
        return;
    for (int d = 0; d < D; d++) {
        for (int t = 0; t < T; t++)
            kt[d * Tp + t] = k[(size_t)t * D + d];
        for (int t = T; t < Tp; t++)
            kt[d * Tp + t] = 0.f;
    }
}

/* y = softmax(q k^T + future mask) v per (sequence, head), the weights kept in probs. */
void attention_forward(const float *qkv, const float *cos, const float *sin, float *probs, float *y, int B, int T,
                       int H, int D, int threads) {
    const size_t row = (size_t)3 * H * D, ys = (size_t)H * D;
    const int Tp = (T + 7) & ~7;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int bh = 0; bh < B * H; bh++) {
        const int b = bh / H, h = bh % H;
        float q[T * D], k[T * D], kt[D * Tp], s[2][Tp], spare[D];
        const float *base = qkv + (size_t)b * T * row, *values = base + (size_t)2 * H * D + (size_t)h * D;
        float *p_head = probs + (size_t)bh * T * T, *y_head = y + (size_t)b * T * ys + (size_t)h * D;
        rotated_heads(base, row, cos, sin, T, H, D, h, q, k, kt);
        for (int i = 0; i < T; i += 2) { /* rows i and i + 1 (row i again, written to `spare`, when T is odd) */
            const int i1 = i + 1 < T ? i + 1 : i, n8 = (i1 + 8) & ~7, m = n8 < T ? n8 : T;
            row_times2(q + (size_t)i * D, q + (size_t)i1 * D, kt, D, Tp, n8, s[0], s[1]);
            softmax_row(s[0], i, n8);
            softmax_row(s[1], i1, n8);
            float *p0 = p_head + (size_t)i * T, *p1 = p_head + (size_t)i1 * T;
            memcpy(p0, s[0], sizeof(float) * m);
            memset(p0 + m, 0, sizeof(float) * (T - m));
            if (i1 != i) {
                memcpy(p1, s[1], sizeof(float) * m);
                memset(p1 + m, 0, sizeof(float) * (T - m));
            }
            /* row i's weight for position i + 1 is 0: both rows sum over i1 + 1 values */
            weighted_rows2(p0, p1, 1, values, row, i1 + 1, D, y_head + i * ys, i1 != i ? y_head + i1 * ys : spare);
        }
    }
}

/* grad_qkv from grad_y, per (sequence, head): with dp = grad_y v^T, the scores' gradient is
 * ds = p (dp - rowsum(p dp)); then dq = ds k, dk = ds^T q, dv = p^T grad_y, and the rotation undone.
 * grad_qkv may be qkv itself: a pair reads all of its queries, keys and values (into q, k, vt) before
 * it writes their gradients, and pairs write disjoint columns. */
void attention_backward(const float *grad_y, const float *qkv, const float *probs, const float *cos, const float *sin,
                        const float *sin_swapped, float *grad_qkv, int B, int T, int H, int D, int threads) {
    const size_t row = (size_t)3 * H * D, ys = (size_t)H * D;
    const int Tp = (T + 7) & ~7;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int bh = 0; bh < B * H; bh++) {
        const int b = bh / H, h = bh % H;
        float q[T * D], k[T * D], vt[D * Tp], ds[T * Tp], spare[Tp], out[4][D];
        const float *base = qkv + (size_t)b * T * row, *p_head = probs + (size_t)bh * T * T;
        const float *dy = grad_y + (size_t)b * T * ys + (size_t)h * D; /* row t at dy + t ys */
        float *grad = grad_qkv + (size_t)b * T * row + (size_t)h * D;  /* row t's query at grad + t row */
        rotated_heads(base, row, cos, sin, T, H, D, h, q, k, NULL);
        for (int d = 0; d < D; d++) {
            const float *v = base + (size_t)2 * H * D + (size_t)h * D + d;
            for (int t = 0; t < T; t++)
                vt[d * Tp + t] = v[t * row];
            for (int t = T; t < Tp; t++)
                vt[d * Tp + t] = 0.f;
        }
        for (int i = 0; i < T; i += 2) { /* ds and dq, rows i and i + 1 */
            const int i1 = i + 1 < T ? i + 1 : i, n8 = (i1 + 8) & ~7, m = n8 < T ? n8 : T;
            float *d0 = ds + (size_t)i * Tp, *d1 = i1 != i ? ds + (size_t)i1 * Tp : spare;
            row_times2(dy + i * ys, dy + i1 * ys, vt, D, Tp, n8, d0, d1);
            for (int r = i; r <= i1; r++) {
                const float *restrict p = p_head + (size_t)r * T;
                float *restrict dsr = ds + (size_t)r * Tp;
                float dot = 0.f;
#pragma omp simd reduction(+ : dot)
                for (int j = 0; j < m; j++)
                    dot += p[j] * dsr[j];
#pragma omp simd
                for (int j = 0; j < m; j++)
                    dsr[j] = p[j] * (dsr[j] - dot);
                for (int j = m; j < Tp; j++)
                    dsr[j] = 0.f;
            }
            weighted_rows2(d0, d1, 1, k, D, i1 + 1, D, out[0], out[1]);
            rotate_row(out[0], cos + (size_t)i * D, sin_swapped + (size_t)i * D, grad + i * row, D);
            if (i1 != i)
                rotate_row(out[1], cos + (size_t)i1 * D, sin_swapped + (size_t)i1 * D, grad + i1 * row, D);
        }
        for (int j = 0; j < T; j += 2) { /* dk and dv, positions j and j + 1, down the columns of ds and p */
            const int j1 = j + 1 < T ? j + 1 : j;
            /* column j1's entries in row j are 0 (the future): both sum over rows j.. */
            weighted_rows2(ds + (size_t)j * Tp + j, ds + (size_t)j * Tp + j1, Tp, q + (size_t)j * D, D, T - j, D,
                           out[0], out[1]);
            weighted_rows2(p_head + (size_t)j * T + j, p_head + (size_t)j * T + j1, T, dy + j * ys, ys, T - j, D,
                           out[2], out[3]);
            for (int r = 0; r <= j1 - j; r++) {
                float *g = grad + (j + r) * row + (size_t)H * D;
                rotate_row(out[r], cos + (size_t)(T + j + r) * D, sin_swapped + (size_t)(T + j + r) * D, g, D);
                memcpy(g + (size_t)H * D, out[2 + r], sizeof(float) * D);
            }
        }
    }
}

/* GELU
 * ----
 * out = x Phi(x) (exact GELU) and slope = Phi(x) + x phi(x), its derivative, in one pass while x is
 * in cache; phi(x) = e^(-x^2/2) / sqrt(2 pi) is the very exponential erf_vectorized computes, so the
 * slope costs a few multiplies. The backward is then grad * slope: one multiply in place of torch's
 * gelu_backward, which recomputes erf and exp from x read back from memory. */
void gelu_slope(const float *x, float *out, float *slope, long n, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long start = 0; start < n; start += 4096) {
        const long end = start + 4096 < n ? start + 4096 : n;
#pragma omp simd
        for (long i = start; i < end; i++) {
            const float v = x[i], a = (v < 0.f ? -v : v) * 0.7071067811865476f; /* |x| / sqrt 2 */
            const float t = 1.f / (1.f + 0.3275911f * a);
            const float g = exp_vectorized(-a * a);
            const float e = 1.f - erf_poly(t) * g; /* erf(|x| / sqrt 2) */
            const float cdf = 0.5f * (1.f + (v < 0.f ? -e : e));
            out[i] = v * cdf;
            slope[i] = cdf + v * g * 0.3989422804014327f;
        }
    }
}

/* Whether this build runs the loops above in threads (compiled with OpenMP). */
int kernels_threaded(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
