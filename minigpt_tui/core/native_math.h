/* exp and erf for float32 written so that the compiler vectorizes the loops that call them (libm's
 * expf is a call per value, and floorf does not vectorize). core/native.py compiles with
 * -fno-trapping-math so that the clamps and signs below (x < c ? a : b) become vector selects.
 * Shared by native_kernels.c (sampling) and training_kernels.c (training). */
#ifndef MINIGPT_TUI_NATIVE_MATH_H
#define MINIGPT_TUI_NATIVE_MATH_H

#include <stdint.h>
#include <string.h>

/* exp(x) = 2^n e^r, x = n ln2 + r with |r| <= ln2 / 2 (n rounded by the 1.5 x 2^23 trick), e^r by
 * Cephes' expf polynomial, 2^n put straight into the exponent bits. Relative error below 1e-7 (8e-8
 * on a sweep of -87..80); 0 below -87.3 (so for -inf); inputs above 88 give e^88. */
static inline float exp_vectorized(float x) {
    const float c = x < -87.3f ? -87.3f : (x > 88.f ? 88.f : x);
    const float n = (c * 1.44269504088896341f + 12582912.f) - 12582912.f;
    const float r = c - n * 0.693359375f + n * 2.12194440e-4f;
    const float p = ((((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r
                        + 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f) * r * r + r + 1.f);
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.3f ? 0.f : p * scale;
}

/* erf(x) as torch's vectorized CPU kernels compute it (Abramowitz and Stegun 7.1.26, absolute
 * error below 1.5e-7): 1 - erf_poly(t) e^(-x^2), t = 1 / (1 + p |x|), odd in x. */
static inline float erf_poly(float t) {
    return t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
}

static inline float erf_vectorized(float x) {
    const float a = x < 0.f ? -x : x;
    const float e = 1.f - erf_poly(1.f / (1.f + 0.3275911f * a)) * exp_vectorized(-a * a);
    return x < 0.f ? -e : e;
}

#endif
