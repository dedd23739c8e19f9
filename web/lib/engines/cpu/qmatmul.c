// Quantized matrix products in the engine's layout (qmat.h): y[m, n] = sum_k x[m, k] W[n, k] for every row m of
// the quantized activations and the columns n in [n0, n1) (a thread's share). Register tiles of R rows x C weight
// rows: each 16 bytes of weights are loaded and widened once for R rows, each activation vector once for C
// columns; per group of 4 blocks, one i32x4 per (row, column) holds the 4 blocks' integer sums, which are
// converted once and scaled by the 4 products scale_x * scale_w. Columns go in panels whose weights stay in
// the L2 cache while every row tile passes over them, so each weight byte is read from memory once per call
// whatever the number of rows.
//   q8 (signed bytes after repack): i32x4.dot_i16x8_s on i16 activations.
//   q4: the nibbles widened to i16 for i32x4.dot_i16x8_s; with relaxed SIMD, i32x4.relaxed_dot_i8x16_i7x16_add_s
//       on i8 activations and the unsigned nibbles (0..15: inside its 7-bit operand); then minus 8 * sum(x).
//   q8 on the unsigned dot (qmat.h; relaxed SIMD where choose_u8_dot found it exact): the same instruction on i8
//       activations and the unsigned bytes; then minus 128 * sum(x).
// A tile's kind: KIND_Q8 (i16 dot), KIND_Q4, KIND_U8 (q8 on the unsigned dot). For the last two, each group's
// accumulators start at minus the offset times sum(x) instead of zero (one vector a row, not a subtraction per row
// and column after the products).
#include "qmat.h"

#define TILE_R 4
#define TILE_C 2
enum { KIND_Q8 = 0, KIND_Q4 = 1, KIND_U8 = 2 };
#define PANEL_BYTES (192 * 1024) // weights of a column panel

static inline float hsum_f(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2)
       + wasm_f32x4_extract_lane(v, 3);
}

static inline i32 hsum_i(v128_t v) {
  return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2)
       + wasm_i32x4_extract_lane(v, 3);
}

// The integer sums of one group (or, for the blocks after the last group, of one block: then the lanes are to be
// added) for R rows and C weight rows. wg[c]: the group's (block's) bytes of weight row c; xg[r]: row r's
// activations at the same place (i16 or i8).
static inline __attribute__((always_inline)) void group_q8(const u8 *const *wg, const i16 *const *xg, u32 R, u32 C,
                                                           u32 chunks, v128_t acc[TILE_R][TILE_C]) {
  for (u32 t = 0; t < chunks; t++) {
    v128_t lo[TILE_C], hi[TILE_C];
    for (u32 c = 0; c < C; c++) {
      v128_t w = wasm_v128_load(wg[c] + 16 * t);
      lo[c] = wasm_i16x8_extend_low_i8x16(w);
      hi[c] = wasm_i16x8_extend_high_i8x16(w);
    }
    for (u32 r = 0; r < R; r++) {
      v128_t a = wasm_v128_load(xg[r] + 16 * t), b = wasm_v128_load(xg[r] + 16 * t + 8);
      for (u32 c = 0; c < C; c++)
        acc[r][c] = wasm_i32x4_add(acc[r][c], wasm_i32x4_add(wasm_i32x4_dot_i16x8(a, lo[c]), wasm_i32x4_dot_i16x8(b, hi[c])));
    }
  }
}

// q8 on the unsigned dot: 16 bytes of each weight row against 16 i8 activations of each row, one instruction
static inline __attribute__((always_inline)) void group_u8(const u8 *const *wg, const void *const *xg, u32 R, u32 C,
                                                           u32 chunks, v128_t acc[TILE_R][TILE_C]) {
#ifdef RELAXED
  for (u32 t = 0; t < chunks; t++) {
    v128_t w[TILE_C];
    for (u32 c = 0; c < C; c++) w[c] = wasm_v128_load(wg[c] + 16 * t);
    for (u32 r = 0; r < R; r++) {
      v128_t a = wasm_v128_load((const signed char *)xg[r] + 16 * t);
      for (u32 c = 0; c < C; c++) acc[r][c] = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(a, w[c], acc[r][c]);
    }
  }
#else
  (void)wg, (void)xg, (void)R, (void)C, (void)chunks, (void)acc;
#endif
}

static inline __attribute__((always_inline)) void group_q4(const u8 *const *wg, const void *const *xg, u32 R, u32 C,
                                                           u32 chunks, v128_t acc[TILE_R][TILE_C]) {
  const v128_t nib = wasm_i8x16_splat(15);
  for (u32 t = 0; t < chunks; t++) {
    v128_t lo[TILE_C], hi[TILE_C];
    for (u32 c = 0; c < C; c++) {
      v128_t w = wasm_v128_load(wg[c] + 16 * t);
      lo[c] = wasm_v128_and(w, nib);
      hi[c] = wasm_u8x16_shr(w, 4);
    }
#ifdef RELAXED
    for (u32 r = 0; r < R; r++) {
      const signed char *x = (const signed char *)xg[r] + 32 * t;
      v128_t a = wasm_v128_load(x), b = wasm_v128_load(x + 16);
      for (u32 c = 0; c < C; c++)
        acc[r][c] = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(b, hi[c], wasm_i32x4_relaxed_dot_i8x16_i7x16_add(a, lo[c], acc[r][c]));
    }
#else
    v128_t w16[TILE_C][4];
    for (u32 c = 0; c < C; c++) {
      w16[c][0] = wasm_u16x8_extend_low_u8x16(lo[c]);
      w16[c][1] = wasm_u16x8_extend_high_u8x16(lo[c]);
      w16[c][2] = wasm_u16x8_extend_low_u8x16(hi[c]);
      w16[c][3] = wasm_u16x8_extend_high_u8x16(hi[c]);
    }
    for (u32 r = 0; r < R; r++) {
      const i16 *x = (const i16 *)xg[r] + 32 * t;
      v128_t a = wasm_v128_load(x), b = wasm_v128_load(x + 8), d = wasm_v128_load(x + 16), e = wasm_v128_load(x + 24);
      for (u32 c = 0; c < C; c++)
        acc[r][c] = wasm_i32x4_add(acc[r][c],
                                   wasm_i32x4_add(wasm_i32x4_add(wasm_i32x4_dot_i16x8(a, w16[c][0]), wasm_i32x4_dot_i16x8(b, w16[c][1])),
                                                  wasm_i32x4_add(wasm_i32x4_dot_i16x8(d, w16[c][2]), wasm_i32x4_dot_i16x8(e, w16[c][3]))));
    }
#endif
  }
}

// out[r][c] = row r0 + r of xq . weight row c (w[c], scales sw[c]), R x C <= TILE_R x TILE_C
static inline __attribute__((always_inline)) void tile(u32 kind, XQ xq, size_t r0, u32 R, const u8 *const *w,
                                                       const float *const *sw, u32 C, float out[TILE_R][TILE_C]) {
  size_t K = xq.K, nb = K / BLOCK, groups = nb / GROUP;
  u32 q4 = kind == KIND_Q4, shift = q4 ? 3 : 7; // the unsigned weights' offset: 8 or 128
  size_t wgroup = q4 ? GROUP * BLOCK / 2 : GROUP * BLOCK, wblock = q4 ? BLOCK / 2 : BLOCK;
  size_t esize = xq.i8 ? 1 : 2; // bytes per activation
  v128_t facc[TILE_R][TILE_C];
  const u8 *x[TILE_R];
  const float *sx[TILE_R];
  const i32 *sumx[TILE_R];
  for (u32 r = 0; r < R; r++) {
    x[r] = (const u8 *)xq.q + (r0 + r) * K * esize;
    sx[r] = xq.s + (r0 + r) * nb;
    sumx[r] = xq.sum + (r0 + r) * nb;
    for (u32 c = 0; c < C; c++) facc[r][c] = wasm_f32x4_splat(0);
  }
  for (size_t g = 0; g < groups; g++) {
    v128_t acc[TILE_R][TILE_C];
    const u8 *wg[TILE_C];
    const void *xg[TILE_R];
    for (u32 c = 0; c < C; c++) wg[c] = w[c] + g * wgroup;
    for (u32 r = 0; r < R; r++) {
      xg[r] = x[r] + g * GROUP * BLOCK * esize;
      v128_t z = kind != KIND_Q8 ? wasm_i32x4_neg(wasm_i32x4_shl(wasm_v128_load(sumx[r] + g * GROUP), shift))
                                 : wasm_i32x4_splat(0);
      for (u32 c = 0; c < C; c++) acc[r][c] = z;
    }
    if (q4) group_q4(wg, xg, R, C, 4, acc);
    else if (kind == KIND_U8) group_u8(wg, xg, R, C, 8, acc);
    else group_q8(wg, (const i16 *const *)xg, R, C, 8, acc);
    v128_t s4[TILE_C];
    for (u32 c = 0; c < C; c++) s4[c] = wasm_v128_load(sw[c] + g * GROUP);
    for (u32 r = 0; r < R; r++) {
      v128_t sx4 = wasm_v128_load(sx[r] + g * GROUP);
      for (u32 c = 0; c < C; c++)
        facc[r][c] = MADD(wasm_f32x4_convert_i32x4(acc[r][c]), wasm_f32x4_mul(sx4, s4[c]), facc[r][c]);
    }
  }
  for (u32 r = 0; r < R; r++)
    for (u32 c = 0; c < C; c++) out[r][c] = hsum_f(facc[r][c]);
  for (size_t b = groups * GROUP; b < nb; b++) { // the blocks after the last group, one at a time
    v128_t acc[TILE_R][TILE_C];
    const u8 *wg[TILE_C];
    const void *xg[TILE_R];
    for (u32 c = 0; c < C; c++) wg[c] = w[c] + b * wblock;
    for (u32 r = 0; r < R; r++) {
      xg[r] = x[r] + b * BLOCK * esize;
      for (u32 c = 0; c < C; c++) acc[r][c] = wasm_i32x4_splat(0);
    }
    if (q4) group_q4(wg, xg, R, C, 1, acc);
    else if (kind == KIND_U8) group_u8(wg, xg, R, C, 2, acc);
    else group_q8(wg, (const i16 *const *)xg, R, C, 2, acc);
    for (u32 r = 0; r < R; r++)
      for (u32 c = 0; c < C; c++) {
        i32 v = hsum_i(acc[r][c]) - (kind != KIND_Q8 ? sumx[r][b] * (1 << shift) : 0);
        out[r][c] += (float)v * (sx[r][b] * sw[c][b]);
      }
  }
}

// R and C made constants, so that the tile's loops unroll and its vectors stay in registers; chosen by a switch,
// not a table of function pointers (a function table would be a 64-bit table in the Memory64 build, which Node 20's
// V8 does not validate)
#define TILE_FN(kind, R, C)                                                                                     \
  static void tile_##kind##_##R##_##C(XQ xq, size_t r0, const u8 *const *w, const float *const *sw,             \
                                      float out[TILE_R][TILE_C]) {                                              \
    tile(kind, xq, r0, R, w, sw, C, out);                                                                       \
  }
#define TILE_ROW(kind, R) TILE_FN(kind, R, 1) TILE_FN(kind, R, 2)
#define TILE_KIND(kind) TILE_ROW(kind, 1) TILE_ROW(kind, 2) TILE_ROW(kind, 3) TILE_ROW(kind, 4)
TILE_KIND(0) TILE_KIND(1)
#ifdef RELAXED
TILE_KIND(2)
#endif
#define TILE_CASE(kind, R, C)                                                                                   \
  case ((kind) * TILE_R + (R) - 1) * TILE_C + (C) - 1: tile_##kind##_##R##_##C(xq, r0, w, sw, out); break;
#define TILE_CASES(kind) TILE_CASE(kind, 1, 1) TILE_CASE(kind, 1, 2) TILE_CASE(kind, 2, 1) TILE_CASE(kind, 2, 2) \
  TILE_CASE(kind, 3, 1) TILE_CASE(kind, 3, 2) TILE_CASE(kind, 4, 1) TILE_CASE(kind, 4, 2)

static inline void tile_any(u32 kind, XQ xq, size_t r0, u32 R, const u8 *const *w, const float *const *sw, u32 C,
                            float out[TILE_R][TILE_C]) {
  switch ((kind * TILE_R + R - 1) * TILE_C + C - 1) {
    TILE_CASES(0) TILE_CASES(1)
#ifdef RELAXED
    TILE_CASES(2)
#endif
    default: break;
  }
}

// columns [n0, n1) in panels; in each panel, every tile of TILE_R rows against every TILE_C columns
void qmatmul(u32 dtype, XQ xq, size_t M, const u8 *w, const float *s, float *y, size_t N, size_t n0, size_t n1,
             u32 mode) {
  u32 q4 = dtype == DT_Q4, kind = q4 ? KIND_Q4 : xq.i8 ? KIND_U8 : KIND_Q8;
  size_t K = xq.K, stride = q4 ? K / 2 : K, nb = K / BLOCK;
  size_t panel = PANEL_BYTES / stride;
  panel = panel < TILE_C ? TILE_C : panel - panel % TILE_C;
  float out[TILE_R][TILE_C];
  for (size_t p0 = n0; p0 < n1; p0 += panel) {
    size_t p1 = p0 + panel < n1 ? p0 + panel : n1;
    for (size_t r0 = 0; r0 < M; r0 += TILE_R) {
      u32 R = M - r0 < TILE_R ? (u32)(M - r0) : TILE_R;
      for (size_t n = p0; n < p1; n += TILE_C) {
        u32 C = p1 - n < TILE_C ? (u32)(p1 - n) : TILE_C;
        const u8 *wr[TILE_C];
        const float *sr[TILE_C];
        for (u32 c = 0; c < TILE_C; c++) {
          size_t at = n + (c < C ? c : C - 1);
          wr[c] = w + at * stride;
          sr[c] = s + at * nb;
        }
        tile_any(kind, xq, r0, R, wr, sr, C, out);
        for (u32 r = 0; r < R; r++)
          for (u32 c = 0; c < C; c++) {
            float *o = y + (r0 + r) * N + n + c;
            *o = mode == MODE_ADD ? *o + out[r][c] : out[r][c];
          }
      }
    }
  }
}

// y = silu(x Wg) * (x Wu), columns [n0, n1): each tile's two weight rows are gate's and up's row n
void qgate_up(u32 dtype, XQ xq, size_t M, const u8 *wg, const float *sg, const u8 *wu, const float *su, float *y,
              size_t N, size_t n0, size_t n1) {
  u32 q4 = dtype == DT_Q4, kind = q4 ? KIND_Q4 : xq.i8 ? KIND_U8 : KIND_Q8;
  size_t K = xq.K, stride = q4 ? K / 2 : K, nb = K / BLOCK;
  size_t panel = PANEL_BYTES / (2 * stride);
  panel = panel < 1 ? 1 : panel;
  float out[TILE_R][TILE_C];
  for (size_t p0 = n0; p0 < n1; p0 += panel) {
    size_t p1 = p0 + panel < n1 ? p0 + panel : n1;
    for (size_t r0 = 0; r0 < M; r0 += TILE_R) {
      u32 R = M - r0 < TILE_R ? (u32)(M - r0) : TILE_R;
      for (size_t n = p0; n < p1; n++) {
        const u8 *wr[TILE_C] = {wg + n * stride, wu + n * stride};
        const float *sr[TILE_C] = {sg + n * nb, su + n * nb};
        tile_any(kind, xq, r0, R, wr, sr, 2, out);
        for (u32 r = 0; r < R; r++) {
          float g = out[r][0];
          y[(r0 + r) * N + n] = g / (1.0f + expf_(-g)) * out[r][1];
        }
      }
    }
  }
}
