// Matrix kernels of the CPU engine, WebAssembly SIMD128 (see build.py). y[m, n] = sum_k x[m, k] W[n, k] for the
// output columns n in [n0, n1) (a thread's share), rows of x in passes of up to 4 so that one read of a weight
// row serves 4 tokens. W is one of:
//   fp32  [N, K] floats (float products);
//   q8    MatMulNBits bits 8: [N, K/32, 32] uint8 (value = (q - 128) * scale) and scales [N, K/32];
//   q4    MatMulNBits bits 4: [N, K/32, 16] uint8, element 2i in the low nibble of byte i, 2i+1 in the high one
//         (value = (q - 8) * scale), scales [N, K/32].
// Quantized weights meet activations quantized the way onnxruntime's MatMulNBits does at accuracy_level 4: per
// row and block of 32, scale = amax / 127, q = round-half-even(x * (127 / amax)) in int8; the block's products
// are summed exactly in int32, then times scale_x * scale_w into a float accumulator. Each call quantizes its
// rows of x once, on its own stack (every thread quantizes the same rows: M K values against the (n1 - n0) K
// weight bytes it reads, and no barrier), then runs every column over them.
//   plain SIMD128: activations widened to i16 once, the weights' unsigned values widened to i16 (zero-extended:
//         no sign fix-up), i32x4.dot_i16x8_s, minus zero point * sum(x) per block;
//   relaxed SIMD (-DRELAXED), q4: i32x4.relaxed_dot_i8x16_i7x16_add_s on int8 activations and the unsigned
//         nibbles (0..15, inside its 7-bit operand's range), minus 8 * sum(x) per block; q8 weights (8 bits, not 7)
//         take the plain path (7-bit activations instead would double the matmul's rounding error and part
//         from onnxruntime's arithmetic, the page's reference).
// -DFLOAT_DEQUANT builds the earlier kernels for the benchmark's before/after numbers: quantized weights turned
// into floats in registers against float activations.
#include "cpu.h"

#define BLOCK 32
#define QROWS 16 // rows of x quantized at a time (16 K i16 on the stack: 180 KB for K = 5632)

typedef short i16; typedef int i32;

static inline float hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2)
       + wasm_f32x4_extract_lane(v, 3);
}

static inline const u8 *row_of(u32 dtype, const u8 *w, u32 K, u32 n) {
  return w + (u64)n * (dtype == DT_F32 ? K * 4 : dtype == DT_Q8 ? K : K / 2);
}

// out[r] = x[r] . w, fp32 weights, R (1..4) rows of x
static inline __attribute__((always_inline)) void dot_f32(const float *x, u32 K, u32 R, const float *w, float *out) {
  v128_t acc[4] = {wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0)};
  for (u32 k = 0; k < K; k += 4) {
    v128_t wv = wasm_v128_load(w + k);
    for (u32 r = 0; r < R; r++) acc[r] = MADD(wv, wasm_v128_load(x + r * K + k), acc[r]);
  }
  for (u32 r = 0; r < R; r++) out[r] = hsum(acc[r]);
}

#ifdef FLOAT_DEQUANT
#define DEQUANT 1
// acc[r] += 16 signed weights q (i8x16) times x[r][0..16), in floats
static inline __attribute__((always_inline)) void fma16(v128_t q, const float *x, u32 K, u32 R, v128_t *acc) {
  v128_t lo = wasm_i16x8_extend_low_i8x16(q), hi = wasm_i16x8_extend_high_i8x16(q);
  v128_t f[4] = {wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(lo)),
                 wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(lo)),
                 wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(hi)),
                 wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(hi))};
  for (u32 r = 0; r < R; r++) {
    const float *xr = x + r * K;
    v128_t t = wasm_f32x4_mul(f[0], wasm_v128_load(xr));
    for (u32 j = 1; j < 4; j++) t = MADD(f[j], wasm_v128_load(xr + 4 * j), t);
    acc[r] = wasm_f32x4_add(acc[r], t);
  }
}

// out[r] = x[r] . w for R rows of float x, q8 / q4 weights turned into floats in registers (the earlier kernels)
static inline __attribute__((always_inline)) void dot_deq(u32 dtype, const float *x, u32 K, u32 R, const u8 *w,
                                                          const float *s, float *out) {
  v128_t acc[4] = {wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0)};
  const v128_t bias = wasm_i8x16_splat(dtype == DT_Q8 ? -128 : 8), nib = wasm_i8x16_splat(15);
  for (u32 b = 0; b < K / BLOCK; b++) {
    v128_t part[4] = {wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0)};
    const float *xb = x + b * BLOCK;
    if (dtype == DT_Q8) {
      fma16(wasm_v128_xor(wasm_v128_load(w + b * BLOCK), bias), xb, K, R, part);
      fma16(wasm_v128_xor(wasm_v128_load(w + b * BLOCK + 16), bias), xb + 16, K, R, part);
    } else {
      v128_t bytes = wasm_v128_load(w + b * (BLOCK / 2));
      v128_t lo = wasm_v128_and(bytes, nib), hi = wasm_u8x16_shr(bytes, 4);
      fma16(wasm_i8x16_sub(wasm_i8x16_shuffle(lo, hi, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), bias),
            xb, K, R, part);
      fma16(wasm_i8x16_sub(wasm_i8x16_shuffle(lo, hi, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31),
                           bias), xb + 16, K, R, part);
    }
    v128_t sc = wasm_f32x4_splat(s[b]);
    for (u32 r = 0; r < R; r++) acc[r] = MADD(part[r], sc, acc[r]);
  }
  for (u32 r = 0; r < R; r++) out[r] = hsum(acc[r]);
}
#else
#define DEQUANT 0
#endif

// Rows of x quantized for one matrix: per block b of row r, scale xs[r nb + b]; values in xq (i16, or i8 where
// the relaxed q4 path reads them), q4's in the order its bytes hold them (each block's 16 even elements, then
// its 16 odd ones); a correction -z sum_block(q) per block: the kernels take the weights' stored unsigned
// values (q8: 0..255, q4: 0..15) and subtract their zero point z (128, 8) through it.
typedef struct {
  const void *q;
  const float *s;
  const i32 *corr;
  u32 K;
} XQ;

#ifdef RELAXED
#define I8_Q4 1 // q4 reads int8 activations
#else
#define I8_Q4 0
#endif

// bytes of stack that `rows` rows of x take quantized
static inline u32 xq_bytes(u32 rows, u32 K) { return rows * (K * 2 + (K / BLOCK) * 8) + 16; }

// quantize rows [0, R) of x (K floats each) into buf (xq_bytes), for weights of `dtype`
static XQ quantize(const float *x, u32 R, u32 K, u32 dtype, v128_t *buf) {
  u32 nb = K / BLOCK, i8 = dtype == DT_Q4 && I8_Q4, odd = dtype == DT_Q4;
  int zero = dtype == DT_Q8 ? 128 : 8;
  i32 *corr = (i32 *)buf;
  float *s = (float *)(corr + R * nb);
  void *q = s + R * nb + (-(2 * R * nb) & 3);
  for (u32 r = 0; r < R; r++) {
    for (u32 b = 0; b < nb; b++) {
      const float *xb = x + (u64)r * K + b * BLOCK;
      v128_t v[8], m = wasm_f32x4_splat(0);
      for (u32 j = 0; j < 8; j++) m = wasm_f32x4_max(m, wasm_f32x4_abs(v[j] = wasm_v128_load(xb + 4 * j)));
      m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
      float amax = wasm_f32x4_extract_lane(wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2)), 0);
      s[r * nb + b] = amax / 127.0f;
      v128_t inv = wasm_f32x4_splat(amax != 0.0f ? 127.0f / amax : 0.0f);
      v128_t h[4]; // i16x8: elements 0-7, 8-15, 16-23, 24-31
      for (u32 j = 0; j < 4; j++) {
        v128_t a = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(v[2 * j], inv)));
        v128_t c = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(v[2 * j + 1], inv)));
        h[j] = wasm_i16x8_narrow_i32x4(a, c);
      }
      if (odd) { // even elements then odd ones, as the q4 bytes' low and high nibbles hold them
        v128_t e0 = wasm_i16x8_shuffle(h[0], h[1], 0, 2, 4, 6, 8, 10, 12, 14);
        v128_t e1 = wasm_i16x8_shuffle(h[2], h[3], 0, 2, 4, 6, 8, 10, 12, 14);
        v128_t o0 = wasm_i16x8_shuffle(h[0], h[1], 1, 3, 5, 7, 9, 11, 13, 15);
        v128_t o1 = wasm_i16x8_shuffle(h[2], h[3], 1, 3, 5, 7, 9, 11, 13, 15);
        h[0] = e0, h[1] = e1, h[2] = o0, h[3] = o1;
      }
      v128_t t = wasm_i32x4_add(wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(h[0], h[1])),
                                wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(h[2], h[3])));
      i32 sum = wasm_i32x4_extract_lane(t, 0) + wasm_i32x4_extract_lane(t, 1) + wasm_i32x4_extract_lane(t, 2)
              + wasm_i32x4_extract_lane(t, 3);
      corr[r * nb + b] = -zero * sum;
      if (i8) {
        v128_t *qb = (v128_t *)((signed char *)q + (u64)r * K + b * BLOCK);
        qb[0] = wasm_i8x16_narrow_i16x8(h[0], h[1]);
        qb[1] = wasm_i8x16_narrow_i16x8(h[2], h[3]);
      } else {
        v128_t *qb = (v128_t *)((i16 *)q + (u64)r * K + b * BLOCK);
        for (u32 j = 0; j < 4; j++) qb[j] = h[j];
      }
    }
  }
  return (XQ){q, s, corr, K};
}

// t[r] = the integer products of block b of w with block b of rows r0 + r (lanes to be summed; no zero point)
static inline __attribute__((always_inline)) void block_sums(u32 dtype, XQ xq, u32 r0, u32 R, const u8 *w, u32 b,
                                                             v128_t *t) {
  const v128_t nib = wasm_i8x16_splat(15);
  u32 K = xq.K;
  if (dtype == DT_Q4 && I8_Q4) {
#ifdef RELAXED
    v128_t bytes = wasm_v128_load(w + b * (BLOCK / 2));
    v128_t lo = wasm_v128_and(bytes, nib), hi = wasm_u8x16_shr(bytes, 4);
    for (u32 r = 0; r < R; r++) {
      const v128_t *xb = (const v128_t *)((const signed char *)xq.q + (u64)(r0 + r) * K + b * BLOCK);
      t[r] = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(xb[1], hi,
                                                    wasm_i32x4_relaxed_dot_i8x16_i7x16_add(xb[0], lo, wasm_i32x4_splat(0)));
    }
#endif
    return;
  }
  v128_t w0, w1;
  if (dtype == DT_Q8) {
    w0 = wasm_v128_load(w + b * BLOCK);
    w1 = wasm_v128_load(w + b * BLOCK + 16);
  } else { // low nibbles: the even elements; high: the odd ones (x is stored in that order)
    v128_t bytes = wasm_v128_load(w + b * (BLOCK / 2));
    w0 = wasm_v128_and(bytes, nib);
    w1 = wasm_u8x16_shr(bytes, 4);
  }
  v128_t a = wasm_u16x8_extend_low_u8x16(w0), c = wasm_u16x8_extend_high_u8x16(w0);
  v128_t d = wasm_u16x8_extend_low_u8x16(w1), e = wasm_u16x8_extend_high_u8x16(w1);
  for (u32 r = 0; r < R; r++) {
    const v128_t *xb = (const v128_t *)((const i16 *)xq.q + (u64)(r0 + r) * K + b * BLOCK);
    t[r] = wasm_i32x4_add(wasm_i32x4_add(wasm_i32x4_dot_i16x8(a, xb[0]), wasm_i32x4_dot_i16x8(c, xb[1])),
                          wasm_i32x4_add(wasm_i32x4_dot_i16x8(d, xb[2]), wasm_i32x4_dot_i16x8(e, xb[3])));
  }
}

// (sum(a), sum(b), sum(c), sum(d)) of four i32x4
static inline v128_t hadd4(v128_t a, v128_t b, v128_t c, v128_t d) {
  v128_t s1 = wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 4, 1, 5), wasm_i32x4_shuffle(a, b, 2, 6, 3, 7));
  v128_t s2 = wasm_i32x4_add(wasm_i32x4_shuffle(c, d, 0, 4, 1, 5), wasm_i32x4_shuffle(c, d, 2, 6, 3, 7));
  return wasm_i32x4_add(wasm_i32x4_shuffle(s1, s2, 0, 1, 4, 5), wasm_i32x4_shuffle(s1, s2, 2, 3, 6, 7));
}

// out[r] = x[r0 + r] . w for R (1..4) quantized rows of x; w one row of q8 / q4 blocks with scales sw. Four
// blocks at a time: their integer sums gathered into one vector, less their zero points, converted once and
// scaled by four scale products (the blocks' own scale_w * scale_x).
static inline __attribute__((always_inline, unused)) void dot_q(u32 dtype, XQ xq, u32 r0, u32 R, const u8 *w,
                                                                const float *sw, float *out) {
  v128_t acc[4] = {wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0)};
  u32 nb = xq.K / BLOCK, b = 0;
  for (; b + 4 <= nb; b += 4) {
    v128_t t[4][4];
    for (u32 j = 0; j < 4; j++) block_sums(dtype, xq, r0, R, w, b + j, t[j]);
    v128_t s4 = wasm_v128_load(sw + b);
    for (u32 r = 0; r < R; r++) {
      u32 at = (r0 + r) * nb + b;
      v128_t v = wasm_i32x4_add(hadd4(t[0][r], t[1][r], t[2][r], t[3][r]), wasm_v128_load(xq.corr + at));
      acc[r] = MADD(wasm_f32x4_convert_i32x4(v), wasm_f32x4_mul(s4, wasm_v128_load(xq.s + at)), acc[r]);
    }
  }
  for (; b < nb; b++) { // the last K/32 mod 4 blocks
    v128_t t[4];
    block_sums(dtype, xq, r0, R, w, b, t);
    for (u32 r = 0; r < R; r++) {
      u32 at = (r0 + r) * nb + b;
      v128_t v = wasm_i32x4_add(t[r], wasm_i32x4_make(xq.corr[at], 0, 0, 0));
      acc[r] = MADD(wasm_f32x4_convert_i32x4(v), wasm_f32x4_splat(sw[b] * xq.s[at]), acc[r]);
    }
  }
  for (u32 r = 0; r < R; r++) out[r] = hsum(acc[r]);
}

// rows [r0, r0 + R) of x (quantized in xq, or floats xf for fp32 weights) against weight row n of W
static inline void dot_any(u32 dtype, const float *xf, XQ xq, u32 r0, u32 R, const u8 *w, const float *s, u32 n,
                           float *out) {
  const u8 *wr = row_of(dtype, w, xq.K, n);
  if (dtype == DT_F32) {
    const float *x = xf + (u64)r0 * xq.K, *wf = (const float *)wr;
    switch (R) {
      case 1: dot_f32(x, xq.K, 1, wf, out); break;
      case 2: dot_f32(x, xq.K, 2, wf, out); break;
      case 3: dot_f32(x, xq.K, 3, wf, out); break;
      default: dot_f32(x, xq.K, 4, wf, out); break;
    }
    return;
  }
  const float *sr = s + (u64)n * (xq.K / BLOCK);
#ifdef FLOAT_DEQUANT
  const float *x = xf + (u64)r0 * xq.K;
  switch (R) {
    case 1: dot_deq(dtype, x, xq.K, 1, wr, sr, out); break;
    case 2: dot_deq(dtype, x, xq.K, 2, wr, sr, out); break;
    case 3: dot_deq(dtype, x, xq.K, 3, wr, sr, out); break;
    default: dot_deq(dtype, x, xq.K, 4, wr, sr, out); break;
  }
#else
  switch (R) { // R taken to a constant so dot_q unrolls
    case 1: dot_q(dtype, xq, r0, 1, wr, sr, out); break;
    case 2: dot_q(dtype, xq, r0, 2, wr, sr, out); break;
    case 3: dot_q(dtype, xq, r0, 3, wr, sr, out); break;
    default: dot_q(dtype, xq, r0, 4, wr, sr, out); break;
  }
#endif
}

// rows of x in chunks of QROWS, each quantized once (quantized weights) on this thread's stack, then `body`
// over the chunk: rows [m0, m0 + R) of it, R <= 4, against every column of [n0, n1)
#define OVER_ROWS(dtype, x, M, K, body)                                                                         \
  for (u32 c0 = 0; c0 < M; c0 += QROWS) {                                                                       \
    u32 rows = M - c0 < QROWS ? M - c0 : QROWS;                                                                  \
    u32 floats = dtype == DT_F32 || DEQUANT;                                                                     \
    v128_t buf[floats ? 1 : xq_bytes(rows, K) / 16];                                                             \
    XQ xq = floats ? (XQ){0, 0, 0, K} : quantize(x + (u64)c0 * K, rows, K, dtype, buf);                          \
    const float *xf = x + (u64)c0 * K;                                                                           \
    for (u32 n = n0; n < n1; n++)                                                                                \
      for (u32 m0 = 0; m0 < rows; m0 += 4) {                                                                     \
        u32 R = rows - m0 < 4 ? rows - m0 : 4;                                                                   \
        body                                                                                                     \
      }                                                                                                          \
  }

EXPORT void matmul(u32 dtype, const float *x, u32 M, u32 K, const u8 *w, const float *s, float *y, u32 N, u32 n0,
                   u32 n1, u32 mode) {
  float out[4];
  OVER_ROWS(dtype, x, M, K, {
    dot_any(dtype, xf, xq, m0, R, w, s, n, out);
    for (u32 r = 0; r < R; r++) {
      float *o = y + (u64)(c0 + m0 + r) * N + n;
      *o = mode == MODE_ADD ? *o + out[r] : out[r];
    }
  })
}

// y = silu(x Wg) * (x Wu), columns [n0, n1)
EXPORT void gate_up(u32 dtype, const float *x, u32 M, u32 K, const u8 *wg, const float *sg, const u8 *wu,
                    const float *su, float *y, u32 N, u32 n0, u32 n1) {
  float g[4], u[4];
  OVER_ROWS(dtype, x, M, K, {
    dot_any(dtype, xf, xq, m0, R, wg, sg, n, g);
    dot_any(dtype, xf, xq, m0, R, wu, su, n, u);
    for (u32 r = 0; r < R; r++) y[(u64)(c0 + m0 + r) * N + n] = g[r] / (1.0f + expf_(-g[r])) * u[r];
  })
}
