// Four floats at a time: e^x (softmax) and the exact-erf GELU (the vision tower, the aligners), for the kernels
// that apply them to whole activation matrices (cpu.h's expf_ and heads.c's double erf serve single values).
#pragma once
#include "cpu.h"

// e^x: x = n ln2 + r (Cody-Waite, |r| <= ln2 / 2), e^r by cpu.h's expf_ polynomial, 2^n put into the exponent;
// 0 below -87.3 (the smallest normal float), +inf above 88.4. Relative error about 1e-7.
static inline v128_t exp4(v128_t x) {
  v128_t small = wasm_f32x4_lt(x, wasm_f32x4_splat(-87.3365447505531f));
  x = wasm_f32x4_min(wasm_f32x4_max(x, wasm_f32x4_splat(-87.3365447505531f)), wasm_f32x4_splat(88.3762626647949f));
  v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_add(wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f))),
                            wasm_f32x4_mul(n, wasm_f32x4_splat(2.12194440e-4f)));
  v128_t p = wasm_f32x4_splat(1.9875691500e-4f);
  p = MADD(p, r, wasm_f32x4_splat(1.3981999507e-3f));
  p = MADD(p, r, wasm_f32x4_splat(8.3334519073e-3f));
  p = MADD(p, r, wasm_f32x4_splat(4.1665795894e-2f));
  p = MADD(p, r, wasm_f32x4_splat(1.6666665459e-1f));
  p = MADD(p, r, wasm_f32x4_splat(5.0000001201e-1f));
  p = wasm_f32x4_add(MADD(p, wasm_f32x4_mul(r, r), r), wasm_f32x4_splat(1.0f));
  // 2^n in two halves (n reaches 128 at the top of the range, one past the largest exponent)
  v128_t half = wasm_i32x4_shr(wasm_i32x4_trunc_sat_f32x4(n), 1);
  v128_t rest = wasm_i32x4_sub(wasm_i32x4_trunc_sat_f32x4(n), half);
  v128_t two_a = wasm_i32x4_shl(wasm_i32x4_add(half, wasm_i32x4_splat(127)), 23);
  v128_t two_b = wasm_i32x4_shl(wasm_i32x4_add(rest, wasm_i32x4_splat(127)), 23);
  return wasm_v128_andnot(wasm_f32x4_mul(wasm_f32x4_mul(p, two_a), two_b), small);
}

// erf(x) on [0, 4) as four polynomials of degree 10 in x - (k + 1/2) on [k, k + 1), least-squares fits on
// Chebyshev nodes (numpy, against Python's math.erf) rounded to float: at most 8e-8 from erf in float32 Horner
// steps; 1 from 4 on (erf(4) = 1 - 1.5e-8); odd. ERF_C[j] holds coefficient j of the four pieces.
static const float ERF_C[11][4] = {
  {0.5204999f, 0.96610516f, 0.999593f, 0.9999993f},
  {0.8787826f, 0.11893029f, 0.0021782843f, 5.399429e-06f},
  {-0.4393913f, -0.17839544f, -0.005445711f, -1.8897976e-05f},
  {-0.14646414f, 0.1387522f, 0.008350083f, 4.2295316e-05f},
  {0.1830794f, -0.044598967f, -0.008622353f, -6.771863e-05f},
  {0.0073315348f, -0.014870843f, 0.0061175f, 8.212085e-05f},
  {-0.050036788f, 0.019328035f, -0.0027988702f, -7.7730394e-05f},
  {0.005327911f, -0.0047011636f, 0.00054107717f, 5.8147136e-05f},
  {0.010008721f, -0.002377273f, 0.00026360617f, -3.43646e-05f},
  {-0.0018501873f, 0.0015404115f, -0.00024539494f, 1.5544094e-05f},
  {-0.0014290586f, -3.9451505e-05f, 6.83292e-05f, -4.2765346e-06f},
};

static inline v128_t erf4(v128_t x) {
  v128_t a = wasm_f32x4_abs(x);
  v128_t piece = wasm_i32x4_min(wasm_i32x4_trunc_sat_f32x4(a), wasm_i32x4_splat(3));
  v128_t u = wasm_f32x4_sub(a, wasm_f32x4_add(wasm_f32x4_convert_i32x4(piece), wasm_f32x4_splat(0.5f)));
  // byte indices of each lane's piece into a row of ERF_C (4 floats): 4 piece + 0..3
  v128_t at = wasm_i32x4_add(wasm_i32x4_mul(piece, wasm_i32x4_splat(0x04040404)), wasm_i32x4_splat(0x03020100));
  v128_t p = wasm_i8x16_swizzle(wasm_v128_load(ERF_C[10]), at);
  for (int j = 9; j >= 0; j--) p = MADD(p, u, wasm_i8x16_swizzle(wasm_v128_load(ERF_C[j]), at));
  p = wasm_v128_bitselect(wasm_f32x4_splat(1.0f), p, wasm_f32x4_ge(a, wasm_f32x4_splat(4.0f)));
  return wasm_v128_or(p, wasm_v128_and(x, wasm_i32x4_splat((int)0x80000000))); // erf's sign is x's
}

// x * (0.5 * (erf(x / 1.4142135) + 1)): the exported graph's GELU, in its order of operations
static inline v128_t gelu4(v128_t x) {
  v128_t e = erf4(wasm_f32x4_div(x, wasm_f32x4_splat(1.41421353816986083984375f)));
  return wasm_f32x4_mul(x, wasm_f32x4_mul(wasm_f32x4_splat(0.5f), wasm_f32x4_add(e, wasm_f32x4_splat(1.0f))));
}
