// Matrix kernels of the CPU engine, WebAssembly SIMD128 (see build.py). y[m, n] = sum_k x[m, k] W[n, k] for the
// output columns n in [n0, n1) (a thread's share), rows of x in passes of up to 4 so that one read of a weight
// row serves 4 tokens. W is one of:
//   fp32  [N, K] floats;
//   q8    MatMulNBits bits 8: [N, K/32, 32] uint8 (value = (q - 128) * scale) and scales [N, K/32];
//   q4    MatMulNBits bits 4: [N, K/32, 16] uint8, element 2i in the low nibble of byte i, 2i+1 in the high one
//         (value = (q - 8) * scale), scales [N, K/32].
// Quantized weights are turned into floats in registers, 16 at a time, never written back to memory.
#include "cpu.h"

#define BLOCK 32

static inline float hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2)
       + wasm_f32x4_extract_lane(v, 3);
}

// acc[r] += 16 signed weights q (i8x16) times x[r][0..16)
static inline __attribute__((always_inline)) void fma16(v128_t q, const float *x, u32 K, u32 R, v128_t *acc) {
  v128_t lo = wasm_i16x8_extend_low_i8x16(q), hi = wasm_i16x8_extend_high_i8x16(q);
  v128_t f0 = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(lo));
  v128_t f1 = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(lo));
  v128_t f2 = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(hi));
  v128_t f3 = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(hi));
  for (u32 r = 0; r < R; r++) {
    const float *xr = x + r * K;
    v128_t t = wasm_f32x4_mul(f0, wasm_v128_load(xr));
    t = MADD(f1, wasm_v128_load(xr + 4), t);
    t = MADD(f2, wasm_v128_load(xr + 8), t);
    t = MADD(f3, wasm_v128_load(xr + 12), t);
    acc[r] = wasm_f32x4_add(acc[r], t);
  }
}

// out[r] = x[r] . row, for R (1..4, a constant at each call site) rows of x
static inline __attribute__((always_inline)) void dot_rows(u32 dtype, const float *x, u32 K, u32 R, const u8 *w,
                                                           const float *s, float *out) {
  v128_t acc[4] = {wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0)};
  if (dtype == DT_F32) {
    const float *wf = (const float *)w;
    for (u32 k = 0; k < K; k += 4) {
      v128_t wv = wasm_v128_load(wf + k);
      for (u32 r = 0; r < R; r++) acc[r] = MADD(wv, wasm_v128_load(x + r * K + k), acc[r]);
    }
  } else {
    const v128_t bias = wasm_i8x16_splat(dtype == DT_Q8 ? -128 : 8), nib = wasm_i8x16_splat(15);
    for (u32 b = 0; b < K / BLOCK; b++) {
      v128_t part[4] = {wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0)};
      const float *xb = x + b * BLOCK;
      if (dtype == DT_Q8) {
        const u8 *wb = w + b * BLOCK;
        fma16(wasm_v128_xor(wasm_v128_load(wb), bias), xb, K, R, part);
        fma16(wasm_v128_xor(wasm_v128_load(wb + 16), bias), xb + 16, K, R, part);
      } else {
        v128_t bytes = wasm_v128_load(w + b * (BLOCK / 2));
        v128_t lo = wasm_v128_and(bytes, nib), hi = wasm_u8x16_shr(bytes, 4);
        v128_t e0 = wasm_i8x16_shuffle(lo, hi, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        v128_t e1 = wasm_i8x16_shuffle(lo, hi, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        fma16(wasm_i8x16_sub(e0, bias), xb, K, R, part);
        fma16(wasm_i8x16_sub(e1, bias), xb + 16, K, R, part);
      }
      v128_t sc = wasm_f32x4_splat(s[b]);
      for (u32 r = 0; r < R; r++) acc[r] = MADD(part[r], sc, acc[r]);
    }
  }
  for (u32 r = 0; r < R; r++) out[r] = hsum(acc[r]);
}

static inline const u8 *row_of(u32 dtype, const u8 *w, u32 K, u32 n) {
  return w + (u64)n * (dtype == DT_F32 ? K * 4 : dtype == DT_Q8 ? K : K / 2);
}

// one weight row against rows [m0, m0 + R) of x; R taken to a constant so dot_rows unrolls
static inline void dot_any(u32 dtype, const float *x, u32 K, u32 R, const u8 *w, const float *s, float *out) {
  switch (R) {
    case 1: dot_rows(dtype, x, K, 1, w, s, out); break;
    case 2: dot_rows(dtype, x, K, 2, w, s, out); break;
    case 3: dot_rows(dtype, x, K, 3, w, s, out); break;
    default: dot_rows(dtype, x, K, 4, w, s, out); break;
  }
}

EXPORT void matmul(u32 dtype, const float *x, u32 M, u32 K, const u8 *w, const float *s, float *y, u32 N, u32 n0,
                   u32 n1, u32 mode) {
  float out[4];
  for (u32 n = n0; n < n1; n++) {
    const u8 *wr = row_of(dtype, w, K, n);
    const float *sr = s ? s + (u64)n * (K / BLOCK) : 0;
    for (u32 m0 = 0; m0 < M; m0 += 4) {
      u32 R = M - m0 < 4 ? M - m0 : 4;
      dot_any(dtype, x + m0 * K, K, R, wr, sr, out);
      for (u32 r = 0; r < R; r++) {
        float *o = y + (m0 + r) * N + n;
        *o = mode == MODE_ADD ? *o + out[r] : out[r];
      }
    }
  }
}

// y = silu(x Wg) * (x Wu), columns [n0, n1)
EXPORT void gate_up(u32 dtype, const float *x, u32 M, u32 K, const u8 *wg, const float *sg, const u8 *wu,
                    const float *su, float *y, u32 N, u32 n0, u32 n1) {
  float g[4], u[4];
  for (u32 n = n0; n < n1; n++) {
    const u8 *gr = row_of(dtype, wg, K, n), *ur = row_of(dtype, wu, K, n);
    const float *gs = sg ? sg + (u64)n * (K / BLOCK) : 0, *us = su ? su + (u64)n * (K / BLOCK) : 0;
    for (u32 m0 = 0; m0 < M; m0 += 4) {
      u32 R = M - m0 < 4 ? M - m0 : 4;
      dot_any(dtype, x + m0 * K, K, R, gr, gs, g);
      dot_any(dtype, x + m0 * K, K, R, ur, us, u);
      for (u32 r = 0; r < R; r++) y[(m0 + r) * N + n] = g[r] / (1.0f + expf_(-g[r])) * u[r];
    }
  }
}
