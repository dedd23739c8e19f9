// The VQ decoder on the CPU engine (image tokens -> pixels; pack/cpu_vq.py writes its weights and program): one
// op per VQ job of decoder.c's `run`, every thread over its share, a barrier inside an op where a step needs all
// of the previous one. Activations are [H, W, C] floats. The op's table (a `slot` per field, Q_* below, written by
// vq.js) names the op, its buffers, weights and shapes:
//   EMBED     tokens -> codebook rows, each divided by max(its L2 norm, 1e-12) (F.normalize) -> [g, g, D]
//   CONV      3x3 (Winograd, conv.c) or 1x1, + bias, + an optional residual buffer
//   NORM      GroupNorm (32 groups, eps from the table: per group mean, then mean square deviation, over H W C/32
//             values, partial sums per thread in double), affine, then x * sigmoid(x) where SWISH
//   ATTN      single-head attention over all pixels: softmax(q k^T / sqrt(C)) v (attention.c's tiles)
//   UPSAMPLE  nearest, x2
//   OUT       clip to [-1, 1], written [3, H, W] (the page's image)
#include <stddef.h>
#include "vmath.h"

typedef addr slot; // one field of the table (pointer-sized, as the plan's): an address or a number

enum { Q_OP, Q_IN, Q_OUT, Q_RES, Q_K, Q_V, Q_W, Q_B, Q_H, Q_WD, Q_CIN, Q_COUT, Q_KSIZE, Q_SWISH, Q_EPS, Q_SCALE,
       Q_U, Q_SCRATCH, Q_SCRATCH_FLOATS, Q_STATS, Q_TOKENS, Q_CODEBOOK, Q_FIELDS };
enum { OP_EMBED, OP_CONV, OP_NORM, OP_ATTN, OP_UPSAMPLE, OP_OUT };

#define GROUPS 32
#define QT 4 // attention.c's queries per tile
#define QF(a) ((float *)(a))

void barrier(addr *p);
void attend_tile(const float *q, size_t qstride, const float *k, const float *v, size_t kvstride, float *out,
                 size_t ostride, u32 nq, u32 n0, u32 causal, u32 HD, float scale, float *scores);
void wino_weights(const float *w, size_t Cin, size_t Cout, size_t Cout4, float *U, size_t c0, size_t c1);
void wino_conv(const float *in, size_t H, size_t W, size_t Cin, const float *U, const float *b, const float *res,
               float *out, size_t Cout, size_t Cout4, size_t t0, size_t t1, float *scratch);
void conv1_weights(const float *w, size_t Cin, size_t Cout, size_t Cout4, float *Wt, size_t c0, size_t c1);
void conv1(const float *in, size_t Cin, const float *Wt, const float *b, const float *res, float *out, size_t Cout,
           size_t Cout4, size_t p0, size_t p1, float *scratch);

static inline void share(size_t n, u32 t, u32 T, size_t *a, size_t *b) {
  *a = n * t / T;
  *b = n * (t + 1) / T;
}

static inline float fslot(slot s) {
  union { u32 i; float f; } u = {(u32)s};
  return u.f;
}

static void conv(const slot *q, addr *p, u32 t, u32 T) {
  size_t H = q[Q_H], W = q[Q_WD], Cin = q[Q_CIN], Cout = q[Q_COUT], Cout4 = (Cout + 3) & ~(size_t)3, a, b;
  float *U = QF(q[Q_U]), *scratch = QF(q[Q_SCRATCH]) + t * q[Q_SCRATCH_FLOATS];
  share(Cout4, t, T, &a, &b);
  if (q[Q_KSIZE] == 3) wino_weights(QF(q[Q_W]), Cin, Cout, Cout4, U, a, b);
  else conv1_weights(QF(q[Q_W]), Cin, Cout, Cout4, U, a, b);
  barrier(p);
  if (q[Q_KSIZE] == 3) {
    share(H / 4 * (W / 4), t, T, &a, &b);
    wino_conv(QF(q[Q_IN]), H, W, Cin, U, QF(q[Q_B]), q[Q_RES] ? QF(q[Q_RES]) : 0, QF(q[Q_OUT]), Cout, Cout4, a, b,
              scratch);
  } else {
    share(H * W, t, T, &a, &b);
    conv1(QF(q[Q_IN]), Cin, U, QF(q[Q_B]), q[Q_RES] ? QF(q[Q_RES]) : 0, QF(q[Q_OUT]), Cout, Cout4, a, b, scratch);
  }
}

// per group g, the sum over pixels [p0, p1) of x - mu (or of (x - mu)^2 where square) for its C / 32 channels,
// into sums[g] (double); mu: C floats. Float sums per channel over up to 64 pixels at a time, then into double.
static void group_sums(const float *x, size_t C, size_t p0, size_t p1, const float *mu, u32 square, double *sums) {
  size_t cg = C / GROUPS;
  float part[C];
  for (u32 g = 0; g < GROUPS; g++) sums[g] = 0;
  for (size_t px = p0; px < p1; px += 64) {
    size_t end = px + 64 < p1 ? px + 64 : p1;
    for (size_t c = 0; c < C; c += 4) {
      v128_t acc = wasm_f32x4_splat(0), m = wasm_v128_load(mu + c);
      for (size_t i = px; i < end; i++) {
        v128_t d = wasm_f32x4_sub(wasm_v128_load(x + i * C + c), m);
        acc = square ? MADD(d, d, acc) : wasm_f32x4_add(acc, d);
      }
      wasm_v128_store(part + c, acc);
    }
    for (size_t c = 0; c < C; c++) sums[c / cg] += part[c];
  }
}

static void norm(const slot *q, addr *p, u32 t, u32 T) {
  size_t P = q[Q_H] * q[Q_WD], C = q[Q_CIN], cg = C / GROUPS, a, b;
  double *stats = (double *)q[Q_STATS];
  float mu[C], inv[C];
  const float *x = QF(q[Q_IN]), *gamma = QF(q[Q_W]), *beta = QF(q[Q_B]);
  float *y = QF(q[Q_OUT]);
  double count = (double)P * (double)cg, mean[GROUPS];
  share(P, t, T, &a, &b);
  for (size_t c = 0; c < C; c++) mu[c] = 0;
  group_sums(x, C, a, b, mu, 0, stats + t * GROUPS);
  barrier(p);
  for (u32 g = 0; g < GROUPS; g++) {
    double s = 0;
    for (u32 i = 0; i < T; i++) s += stats[i * GROUPS + g];
    mean[g] = s / count;
  }
  for (size_t c = 0; c < C; c++) mu[c] = (float)mean[c / cg];
  barrier(p); // every thread has read the sums before they are overwritten
  group_sums(x, C, a, b, mu, 1, stats + t * GROUPS);
  barrier(p);
  for (u32 g = 0; g < GROUPS; g++) {
    double s = 0;
    for (u32 i = 0; i < T; i++) s += stats[i * GROUPS + g];
    float r = (float)(1.0 / __builtin_sqrt(s / count + (double)fslot(q[Q_EPS])));
    for (size_t c = g * cg; c < (g + 1) * cg; c++) inv[c] = r;
  }
  for (size_t px = a; px < b; px++)
    for (size_t c = 0; c < C; c += 4) {
      v128_t v = wasm_f32x4_mul(wasm_f32x4_sub(wasm_v128_load(x + px * C + c), wasm_v128_load(mu + c)),
                                wasm_v128_load(inv + c));
      v = wasm_f32x4_add(wasm_f32x4_mul(v, wasm_v128_load(gamma + c)), wasm_v128_load(beta + c));
      if (q[Q_SWISH]) // x * sigmoid(x)
        v = wasm_f32x4_mul(v, wasm_f32x4_div(wasm_f32x4_splat(1), wasm_f32x4_add(wasm_f32x4_splat(1),
                                                                                  exp4(wasm_f32x4_neg(v)))));
      wasm_v128_store(y + px * C + c, v);
    }
  barrier(p);
}

static void attn(const slot *q, addr *p, u32 t, u32 T) {
  size_t P = q[Q_H] * q[Q_WD], C = q[Q_CIN], tiles = (P + QT - 1) / QT, a, b;
  float *scores = QF(q[Q_SCRATCH]) + t * q[Q_SCRATCH_FLOATS];
  share(tiles, t, T, &a, &b);
  for (size_t i = a; i < b; i++) {
    size_t q0 = i * QT, nq = P - q0 < QT ? P - q0 : QT;
    attend_tile(QF(q[Q_IN]) + q0 * C, C, QF(q[Q_K]), QF(q[Q_V]), C, QF(q[Q_OUT]) + q0 * C, C, (u32)nq, (u32)P, 0,
                (u32)C, fslot(q[Q_SCALE]), scores);
  }
  barrier(p);
}

void vq_op(const slot *q, addr *p, u32 t, u32 T) {
  size_t H = q[Q_H], W = q[Q_WD], C = q[Q_CIN], a, b;
  switch (q[Q_OP]) {
    case OP_EMBED: { // tokens (u32) -> normalized codebook rows
      share(H * W, t, T, &a, &b);
      const u32 *tokens = (const u32 *)q[Q_TOKENS];
      for (size_t i = a; i < b; i++) {
        const float *row = QF(q[Q_CODEBOOK]) + (size_t)tokens[i] * C;
        float s = 0;
        for (size_t c = 0; c < C; c++) s += row[c] * row[c];
        float n = __builtin_sqrtf(s);
        n = n > 1e-12f ? n : 1e-12f;
        for (size_t c = 0; c < C; c++) QF(q[Q_OUT])[i * C + c] = row[c] / n;
      }
      barrier(p);
      break;
    }
    case OP_CONV: conv(q, p, t, T); barrier(p); break;
    case OP_NORM: norm(q, p, t, T); break;
    case OP_ATTN: attn(q, p, t, T); break;
    case OP_UPSAMPLE: { // out [2H, 2W, C]
      share(2 * H, t, T, &a, &b);
      const float *x = QF(q[Q_IN]);
      float *y = QF(q[Q_OUT]);
      for (size_t r = a; r < b; r++)
        for (size_t c2 = 0; c2 < 2 * W; c2++)
          for (size_t c = 0; c < C; c += 4)
            wasm_v128_store(y + (r * 2 * W + c2) * C + c, wasm_v128_load(x + ((r / 2) * W + c2 / 2) * C + c));
      barrier(p);
      break;
    }
    default: { // OP_OUT: [H, W, C] -> [C, H, W] in [-1, 1]
      share(H * W, t, T, &a, &b);
      const float *x = QF(q[Q_IN]);
      float *y = QF(q[Q_OUT]);
      for (size_t i = a; i < b; i++) {
        float *yc = y + i; // channel c at yc + c H W (a pointer step: no 128-bit bound check in the 64-bit build)
        for (size_t c = 0; c < C; c++, yc += H * W) {
          float v = x[i * C + c];
          *yc = v < -1 ? -1 : v > 1 ? 1 : v;
        }
      }
      barrier(p);
      break;
    }
  }
}
