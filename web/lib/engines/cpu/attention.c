// Attention for a tile of queries at once (decoder.c: a prompt's positions, causal over the KV cache; one position
// a step when decoding; the vision tower: every patch against every patch). Each key and value vector is read once
// for the tile's QT queries: scores by register tiles of QT queries x 2 keys over the head dimension, the
// softmax per query in float (exp by cpu.h's expf_), then the values by register tiles of QT queries x 8
// dimensions over the keys.
#include <stddef.h>
#include "vmath.h"

#define QT 4 // queries per tile

// out[i] = softmax_j(scale q_i . k_j, j < n_i) . v_j for the nq (<= QT) queries q_i = q + i qstride; key and value
// j at k + j kvstride, v + j kvstride; n_i = n0 + i where causal, else n0 for every query; scores: QT * (n0 + QT
// + 3) floats of scratch. HD a multiple of 8.
static inline __attribute__((always_inline)) void attend(const float *q, size_t qstride, const float *k,
                                                          const float *v, size_t kvstride, float *out, size_t ostride,
                                                          u32 nq, u32 n0, u32 causal, u32 HD, float scale,
                                                          float *scores) {
  u32 n = causal ? n0 + nq - 1 : n0; // keys any query of the tile sees
  size_t stride = (n + 3) & ~(size_t)3; // each query's scores, whole vectors
  for (u32 j = 0; j < n; j += 2) {
    u32 two = j + 1 < n;
    const float *k0 = k + j * kvstride, *k1 = k + (j + two) * kvstride;
    v128_t acc[QT][2];
    for (u32 i = 0; i < nq; i++) acc[i][0] = acc[i][1] = wasm_f32x4_splat(0);
    for (u32 d = 0; d < HD; d += 4) {
      v128_t a = wasm_v128_load(k0 + d), b = wasm_v128_load(k1 + d);
      for (u32 i = 0; i < nq; i++) {
        v128_t qi = wasm_v128_load(q + i * qstride + d);
        acc[i][0] = MADD(qi, a, acc[i][0]);
        acc[i][1] = MADD(qi, b, acc[i][1]);
      }
    }
    for (u32 i = 0; i < nq; i++) {
      v128_t t = wasm_f32x4_add(wasm_i32x4_shuffle(acc[i][0], acc[i][1], 0, 4, 1, 5),
                                wasm_i32x4_shuffle(acc[i][0], acc[i][1], 2, 6, 3, 7));
      t = wasm_f32x4_add(t, wasm_i32x4_shuffle(t, t, 2, 3, 0, 1)); // lanes 0, 1: key j, key j + 1
      scores[i * stride + j] = wasm_f32x4_extract_lane(t, 0) * scale;
      if (two) scores[i * stride + j + 1] = wasm_f32x4_extract_lane(t, 1) * scale;
    }
  }
  float inv[QT];
  for (u32 i = 0; i < nq; i++) { // softmax over the keys j < n_i (0 for the others), 4 at a time
    float *s = scores + i * stride;
    u32 ni = causal ? n0 + i : n0, j;
    v128_t top = wasm_f32x4_splat(-3.0e38f), sum = wasm_f32x4_splat(0), count = wasm_u32x4_splat(ni);
    for (j = ni; j < stride; j++) s[j] = -3.0e38f;
    for (j = 0; j < ni; j += 4) top = wasm_f32x4_max(top, wasm_v128_load(s + j));
    top = wasm_f32x4_max(top, wasm_i32x4_shuffle(top, top, 2, 3, 0, 1));
    top = wasm_f32x4_max(top, wasm_i32x4_shuffle(top, top, 1, 0, 3, 2));
    for (j = 0; j < ni; j += 4) {
      v128_t lanes = wasm_i32x4_add(wasm_u32x4_splat(j), wasm_u32x4_make(0, 1, 2, 3));
      v128_t e = wasm_v128_and(exp4(wasm_f32x4_sub(wasm_v128_load(s + j), top)), wasm_u32x4_lt(lanes, count));
      wasm_v128_store(s + j, e);
      sum = wasm_f32x4_add(sum, e);
    }
    for (; j < n; j++) s[j] = 0; // keys after this query's position
    inv[i] = 1.0f / (wasm_f32x4_extract_lane(sum, 0) + wasm_f32x4_extract_lane(sum, 1)
                     + wasm_f32x4_extract_lane(sum, 2) + wasm_f32x4_extract_lane(sum, 3));
  }
  for (u32 d = 0; d < HD; d += 8) {
    v128_t acc[QT][2];
    for (u32 i = 0; i < nq; i++) acc[i][0] = acc[i][1] = wasm_f32x4_splat(0);
    for (u32 j = 0; j < n; j++) {
      const float *vj = v + j * kvstride + d;
      v128_t a = wasm_v128_load(vj), b = wasm_v128_load(vj + 4);
      for (u32 i = 0; i < nq; i++) {
        v128_t e = wasm_v128_load32_splat(scores + i * stride + j);
        acc[i][0] = MADD(e, a, acc[i][0]);
        acc[i][1] = MADD(e, b, acc[i][1]);
      }
    }
    for (u32 i = 0; i < nq; i++) {
      v128_t sc = wasm_f32x4_splat(inv[i]);
      wasm_v128_store(out + i * ostride + d, wasm_f32x4_mul(acc[i][0], sc));
      wasm_v128_store(out + i * ostride + d + 4, wasm_f32x4_mul(acc[i][1], sc));
    }
  }
}

// attend with nq taken to a constant (its register tiles unroll)
void attend_tile(const float *q, size_t qstride, const float *k, const float *v, size_t kvstride, float *out,
                 size_t ostride, u32 nq, u32 n0, u32 causal, u32 HD, float scale, float *scores) {
  switch (nq) {
    case 1: attend(q, qstride, k, v, kvstride, out, ostride, 1, n0, causal, HD, scale, scores); break;
    case 2: attend(q, qstride, k, v, kvstride, out, ostride, 2, n0, causal, HD, scale, scores); break;
    case 3: attend(q, qstride, k, v, kvstride, out, ostride, 3, n0, causal, HD, scale, scores); break;
    default: attend(q, qstride, k, v, kvstride, out, ostride, 4, n0, causal, HD, scale, scores); break;
  }
}
