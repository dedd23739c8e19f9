// The engine's order of quantized weights and activations (qmat.h says why and what it is): `repack` turns a
// MatMulNBits matrix into it once, at load, in place; `quantize_rows` quantizes activations into it.
#include "qmat.h"

// where value (block b of the group, index k in the block) lands in a group of the i16 order (as an element index)
static inline u32 at_i16(u32 b, u32 k) { return 8 * (k / 2) + 2 * b + k % 2; }
// ... of the i8 order
static inline u32 at_i8(u32 b, u32 k) { return 16 * (k / 4) + 4 * b + k % 4; }

#ifdef RELAXED
// Whether q8 runs on the unsigned byte dot (qmat.h), chosen once per memory by choose_u8_dot before any repack. It
// lives in the engine's memory, which every thread's instance shares.
static u32 u8_dot;

// Relaxed SIMD leaves the dot product's second operand defined on 0..127 only. Where this engine computes it exactly
// on every unsigned byte (x86 with VNNI: one vpdpbusd), q8 can use it. a = 127 and b = 255 come from JS so that the
// compiler cannot fold the check; the lanes take the extremes of both operands and an accumulator.
EXPORT u32 choose_u8_dot(int a, int b) {
  v128_t x = wasm_i8x16_make((signed char)a, (signed char)-a, (signed char)(-a - 1), (signed char)a, 1, -1, 0, 7,
                             (signed char)(-a - 1), (signed char)(-a - 1), (signed char)(-a - 1), (signed char)(-a - 1),
                             (signed char)a, (signed char)a, (signed char)a, (signed char)a);
  v128_t w = wasm_u8x16_make((u8)b, (u8)b, (u8)b, (u8)(b - 127), (u8)b, 3, (u8)b, 128,
                             (u8)b, (u8)b, (u8)b, (u8)b, (u8)b, (u8)b, (u8)b, (u8)b);
  v128_t r = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x, w, wasm_i32x4_make(5, -5, 0, 1 << 30));
  int want[4] = {a * b - a * b + (-a - 1) * b + a * (b - 127) + 5, b - 3 + 7 * 128 - 5, 4 * (-a - 1) * b,
                 4 * a * b + (1 << 30)};
  u8_dot = wasm_i32x4_extract_lane(r, 0) == want[0] && wasm_i32x4_extract_lane(r, 1) == want[1]
        && wasm_i32x4_extract_lane(r, 2) == want[2] && wasm_i32x4_extract_lane(r, 3) == want[3];
  return u8_dot;
}

u32 u8_dot_on(void) { return u8_dot; }
#else
u32 u8_dot_on(void) { return 0; }
#endif

// q8: a group of 4 blocks (128 bytes) in the i16 order, each byte made signed (q - 128); later blocks: signed only.
// On the unsigned dot: the i8 order, the bytes as they are.
static void repack_q8(u8 *row, size_t K) {
  size_t nb = K / BLOCK, groups = nb / GROUP;
  u32 unsigned_dot = u8_dot_on();
  u8 tmp[GROUP * BLOCK];
  for (size_t g = 0; g < groups; g++) {
    u8 *at = row + g * GROUP * BLOCK;
    for (u32 i = 0; i < GROUP * BLOCK; i++) tmp[i] = at[i];
    for (u32 b = 0; b < GROUP; b++)
      for (u32 k = 0; k < BLOCK; k++) {
        if (unsigned_dot) at[at_i8(b, k)] = tmp[b * BLOCK + k];
        else at[at_i16(b, k)] = tmp[b * BLOCK + k] ^ 0x80;
      }
  }
  if (!unsigned_dot)
    for (size_t i = groups * GROUP * BLOCK; i < K; i++) row[i] ^= 0x80;
}

// q4: a group of 4 blocks (64 bytes). The kernels read 16 bytes at a time and split them into the low nibbles and
// the high ones; those 32 values are, in the i16 order, the four vectors 4t .. 4t + 3 of chunk t (low nibbles
// widened: 4t, 4t + 1; high: 4t + 2, 4t + 3), in the i8 order the vectors 2t (low) and 2t + 1 (high).
static void repack_q4(u8 *row, size_t K) {
  size_t nb = K / BLOCK, groups = nb / GROUP;
  u8 tmp[GROUP * BLOCK / 2], val[GROUP * BLOCK];
  for (size_t g = 0; g < groups; g++) {
    u8 *at = row + g * GROUP * BLOCK / 2;
    for (u32 i = 0; i < GROUP * BLOCK / 2; i++) tmp[i] = at[i];
    for (u32 b = 0; b < GROUP; b++)
      for (u32 k = 0; k < BLOCK; k++) {
        u8 byte = tmp[b * BLOCK / 2 + k / 2];
        u8 v = k % 2 ? byte >> 4 : byte & 15;
        val[I8_Q4 ? at_i8(b, k) : at_i16(b, k)] = v;
      }
    // element index p of the order -> (chunk, nibble, byte): i16: vector v = p / 8 of chunk v / 4, low nibble for
    // v % 4 < 2, byte 8 (v % 2) + p % 8; i8: vector v = p / 16 of chunk v / 2, low for even v, byte p % 16
    for (u32 p = 0; p < GROUP * BLOCK; p++) {
      u32 v = I8_Q4 ? p / 16 : p / 8;
      u32 chunk = I8_Q4 ? v / 2 : v / 4, high = I8_Q4 ? v % 2 : (v % 4) / 2;
      u32 byte = I8_Q4 ? p % 16 : 8 * (v % 2) + p % 8;
      u8 *dst = at + 16 * chunk + byte;
      if (!high) *dst = (*dst & 0xf0) | val[p];
      else *dst = (u8)((*dst & 0x0f) | (val[p] << 4));
    }
  }
}

// Rewrite rows [n0, n1) of a [N, K] MatMulNBits matrix (q8 or q4) into the engine's order, in place.
EXPORT void repack(u32 dtype, u8 *w, size_t K, size_t n0, size_t n1) {
  size_t stride = dtype == DT_Q8 ? K : K / 2;
  for (size_t n = n0; n < n1; n++) {
    if (dtype == DT_Q8) repack_q8(w + n * stride, K);
    else if (dtype == DT_Q4) repack_q4(w + n * stride, K);
  }
}

XQ xq_view(void *buf, size_t rows, size_t K, u32 dtype) {
  size_t nb = K / BLOCK;
  u8 *base = (u8 *)(((size_t)buf + 15) & ~(size_t)15);
  float *s = (float *)(base + ((rows * K * 2 + 15) & ~(size_t)15));
  i32 *sum = (i32 *)(s + rows * nb);
  return (XQ){base, s, sum, K, (dtype == DT_Q4 && I8_Q4) || (dtype == DT_Q8 && u8_dot_on())};
}

// one block of 32 floats -> its scale, its values as four i16x8 (elements 0-7, 8-15, 16-23, 24-31) and their sum
static inline float quant_block(const float *xb, v128_t h[4], i32 *sum) {
  v128_t v[8], m = wasm_f32x4_splat(0);
  for (u32 j = 0; j < 8; j++) m = wasm_f32x4_max(m, wasm_f32x4_abs(v[j] = wasm_v128_load(xb + 4 * j)));
  m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
  float amax = wasm_f32x4_extract_lane(wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2)), 0);
  v128_t inv = wasm_f32x4_splat(amax != 0.0f ? 127.0f / amax : 0.0f);
  for (u32 j = 0; j < 4; j++) {
    v128_t a = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(v[2 * j], inv)));
    v128_t c = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(v[2 * j + 1], inv)));
    h[j] = wasm_i16x8_narrow_i32x4(a, c);
  }
  v128_t t = wasm_i32x4_add(wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(h[0], h[1])),
                            wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(h[2], h[3])));
  *sum = wasm_i32x4_extract_lane(t, 0) + wasm_i32x4_extract_lane(t, 1) + wasm_i32x4_extract_lane(t, 2)
       + wasm_i32x4_extract_lane(t, 3);
  return amax / 127.0f;
}

// rows of a, b, c, d (i32 lanes) -> column u of the four, for u = 0..3
static inline void transpose4(v128_t a, v128_t b, v128_t c, v128_t d, v128_t *out) {
  v128_t t0 = wasm_i32x4_shuffle(a, b, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(a, b, 2, 6, 3, 7);
  v128_t t2 = wasm_i32x4_shuffle(c, d, 0, 4, 1, 5), t3 = wasm_i32x4_shuffle(c, d, 2, 6, 3, 7);
  out[0] = wasm_i32x4_shuffle(t0, t2, 0, 1, 4, 5);
  out[1] = wasm_i32x4_shuffle(t0, t2, 2, 3, 6, 7);
  out[2] = wasm_i32x4_shuffle(t1, t3, 0, 1, 4, 5);
  out[3] = wasm_i32x4_shuffle(t1, t3, 2, 3, 6, 7);
}

// Quantize rows [r0, r1) of x [rows, K] into xq for weights of `dtype` (q8 or q4).
void quantize_rows(const float *x, size_t K, u32 dtype, XQ xq, size_t r0, size_t r1) {
  size_t nb = K / BLOCK, groups = nb / GROUP;
  u32 q4 = dtype == DT_Q4;
  for (size_t r = r0; r < r1; r++) {
    const float *xr = x + r * K;
    float *s = (float *)xq.s + r * nb;
    i32 *sum = (i32 *)xq.sum + r * nb;
    v128_t *q16 = (v128_t *)((i16 *)xq.q + r * K);
    v128_t *q8 = (v128_t *)((signed char *)xq.q + r * K);
    for (size_t g = 0; g < groups; g++) {
      v128_t h[GROUP][4], out[4];
      for (u32 b = 0; b < GROUP; b++) s[g * GROUP + b] = quant_block(xr + (g * GROUP + b) * BLOCK, h[b], &sum[g * GROUP + b]);
      if (xq.i8) { // block b's quads (4 values) u of vector n[b][u / 4]; vector v of the order: quad v of each block
        for (u32 half = 0; half < 2; half++) {
          v128_t n[GROUP];
          for (u32 b = 0; b < GROUP; b++) n[b] = wasm_i8x16_narrow_i16x8(h[b][2 * half], h[b][2 * half + 1]);
          transpose4(n[0], n[1], n[2], n[3], out);
          for (u32 u = 0; u < 4; u++) q8[g * 8 + half * 4 + u] = out[u];
        }
      } else { // pairs: h[b][u] holds pairs 4u .. 4u + 3 of block b; vector v of the order: pair v of each block
        for (u32 u = 0; u < 4; u++) {
          transpose4(h[0][u], h[1][u], h[2][u], h[3][u], out);
          for (u32 j = 0; j < 4; j++) q16[g * 16 + u * 4 + j] = out[j];
        }
      }
    }
    for (size_t b = groups * GROUP; b < nb; b++) { // MatMulNBits' order; q4: the even values, then the odd ones
      v128_t h[4];
      s[b] = quant_block(xr + b * BLOCK, h, &sum[b]);
      if (q4) {
        v128_t e0 = wasm_i16x8_shuffle(h[0], h[1], 0, 2, 4, 6, 8, 10, 12, 14);
        v128_t e1 = wasm_i16x8_shuffle(h[2], h[3], 0, 2, 4, 6, 8, 10, 12, 14);
        v128_t o0 = wasm_i16x8_shuffle(h[0], h[1], 1, 3, 5, 7, 9, 11, 13, 15);
        v128_t o1 = wasm_i16x8_shuffle(h[2], h[3], 1, 3, 5, 7, 9, 11, 13, 15);
        h[0] = e0, h[1] = e1, h[2] = o0, h[3] = o1;
      }
      if (xq.i8) {
        q8[b * 2] = wasm_i8x16_narrow_i16x8(h[0], h[1]);
        q8[b * 2 + 1] = wasm_i8x16_narrow_i16x8(h[2], h[3]);
      } else {
        for (u32 j = 0; j < 4; j++) q16[b * 4 + j] = h[j];
      }
    }
  }
}
