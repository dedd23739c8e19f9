// Matrix kernels of the CPU engine, WebAssembly SIMD128 (see build.py). y[m, n] = sum_k x[m, k] W[n, k] for the
// output columns n in [n0, n1) (a thread's share). W is one of:
//   fp32  [N, K] floats (float products), rows of x in passes of up to 4 so that one read of a weight row serves
//         4 tokens;
//   q8 / q4  MatMulNBits bits 8 / 4, blocks of 32 with a scale each, in the engine's order (qmat.h: `repack` at
//         load); the activations are quantized per block to int8 (onnxruntime's MatMulNBits at accuracy_level 4)
//         and the products run in qmatmul.c.
// These entry points take float rows and quantize them on the calling thread's own stack, QROWS rows at a time
// (every thread quantizes the same rows: M K values against the (n1 - n0) K weight bytes it reads, and no
// barrier): the per-token calls. A prompt's many rows are quantized once into a shared buffer instead
// (decoder.c's prefill), then go to qmatmul directly.
#include "qmat.h"

#define QROWS 16 // rows of x quantized at a time (16 K i16 on the stack: 180 KB for K = 5632)

static inline float hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2)
       + wasm_f32x4_extract_lane(v, 3);
}

// out[r] = x[r] . w, fp32 weights, R (1..4) rows of x
static inline __attribute__((always_inline)) void dot_f32(const float *x, size_t K, u32 R, const float *w, float *out) {
  v128_t acc[4] = {wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0)};
  for (size_t k = 0; k < K; k += 4) {
    v128_t wv = wasm_v128_load(w + k);
    for (u32 r = 0; r < R; r++) acc[r] = MADD(wv, wasm_v128_load(x + r * K + k), acc[r]);
  }
  for (u32 r = 0; r < R; r++) out[r] = hsum(acc[r]);
}

// rows [0, R) of x against fp32 weight row w (R <= 4; taken to a constant so that dot_f32 unrolls)
static void dot_rows(const float *x, size_t K, u32 R, const float *w, float *out) {
  switch (R) {
    case 1: dot_f32(x, K, 1, w, out); break;
    case 2: dot_f32(x, K, 2, w, out); break;
    case 3: dot_f32(x, K, 3, w, out); break;
    default: dot_f32(x, K, 4, w, out); break;
  }
}

EXPORT void matmul(u32 dtype, const float *x, u32 M, u32 K, const u8 *w, const float *s, float *y, u32 N, u32 n0,
                   u32 n1, u32 mode) {
  if (dtype != DT_F32) {
    for (size_t c0 = 0; c0 < M; c0 += QROWS) {
      size_t rows = M - c0 < QROWS ? M - c0 : QROWS;
      v128_t buf[xq_bytes(rows, K) / 16];
      XQ xq = xq_view(buf, rows, K, dtype);
      quantize_rows(x + c0 * K, K, dtype, xq, 0, rows);
      qmatmul(dtype, xq, rows, w, s, y + c0 * N, N, n0, n1, mode);
    }
    return;
  }
  float out[4];
  for (size_t n = n0; n < n1; n++)
    for (size_t m0 = 0; m0 < M; m0 += 4) {
      u32 R = M - m0 < 4 ? (u32)(M - m0) : 4;
      dot_rows(x + m0 * K, K, R, (const float *)w + n * K, out);
      for (u32 r = 0; r < R; r++) {
        float *o = y + (m0 + r) * N + n;
        *o = mode == MODE_ADD ? *o + out[r] : out[r];
      }
    }
}

// y = silu(x Wg) * (x Wu), columns [n0, n1)
EXPORT void gate_up(u32 dtype, const float *x, u32 M, u32 K, const u8 *wg, const float *sg, const u8 *wu,
                    const float *su, float *y, u32 N, u32 n0, u32 n1) {
  if (dtype != DT_F32) {
    for (size_t c0 = 0; c0 < M; c0 += QROWS) {
      size_t rows = M - c0 < QROWS ? M - c0 : QROWS;
      v128_t buf[xq_bytes(rows, K) / 16];
      XQ xq = xq_view(buf, rows, K, dtype);
      quantize_rows(x + c0 * K, K, dtype, xq, 0, rows);
      qgate_up(dtype, xq, rows, wg, sg, wu, su, y + c0 * N, N, n0, n1);
    }
    return;
  }
  float g[4], u[4];
  for (size_t n = n0; n < n1; n++)
    for (size_t m0 = 0; m0 < M; m0 += 4) {
      u32 R = M - m0 < 4 ? (u32)(M - m0) : 4;
      dot_rows(x + m0 * K, K, R, (const float *)wg + n * K, g);
      dot_rows(x + m0 * K, K, R, (const float *)wu + n * K, u);
      for (u32 r = 0; r < R; r++) y[(m0 + r) * N + n] = g[r] / (1.0f + expf_(-g[r])) * u[r];
    }
}
