// The vision tower on the CPU engine (SigLIP + the aligner, pack/cpu_vision.py's weights): the VISION job of
// decoder.c's `run`, every thread over its share with barriers between steps, as the decoder's forward pass. Its
// table (a `slot` per field: V_* below, layout in vision.js) holds the shapes and every buffer's and weight's
// address. The T patches of one image are the rows of every matrix product: the inputs are quantized once per
// product (rows shared out), the products run over each thread's columns (qmatmul.c; fp32 weights through
// matmul.c), then their bias and GELU on the same columns.
//   patches: the pixels [3, S, S] cut into rows [T, 3 P P] (the Conv's (channel, y, x) order), times the patch
//            matrix (fp32, as the graph's Conv), + bias, + the position table;
//   layer:   x += o(attention(qkv(LN1(x)))), x += fc2(GELU(fc1(LN2(x)))) (LayerNorm with bias, attention over
//            every patch, attention.c);
//   then the post LayerNorm and the aligner (its layers, GELU between) into the output [T, H].
#include "qmat.h"
#include "vmath.h"

typedef addr slot; // one field of the table (pointer-sized, as the plan's): an address or a number

enum { V_T, V_D, V_HEADS, V_HD, V_I, V_LAYERS, V_DTYPE, V_EPS, V_SCALE, V_PATCH, V_SIZE, V_PIXELS, V_COLS, V_X, V_H,
       V_QKV, V_ATT, V_F, V_G, V_XQ, V_SCORES, V_PATCH_W, V_PATCH_B, V_POS, V_POST, V_POST_B, V_OUT, V_ALIGNERS,
       V_KV, V_ALIGNER0 = 32, V_LAYER0 = 64 };
enum { A_DTYPE, A_W, A_S, A_B, A_N, A_K, A_GELU, A_FIELDS = 7 };
enum { VL_LN1, VL_LN1_B, VL_QKV, VL_QKV_S, VL_QKV_B, VL_O, VL_O_S, VL_O_B, VL_LN2, VL_LN2_B, VL_FC1, VL_FC1_S, VL_FC1_B,
       VL_FC2, VL_FC2_S, VL_FC2_B, VL_FIELDS };

#define QT 4 // attention.c's queries per tile
#define VF(a) ((float *)(a))
#define VB(a) ((const u8 *)(a))

void barrier(addr *p);
void attend_tile(const float *q, size_t qstride, const float *k, const float *v, size_t kvstride, float *out,
                 size_t ostride, u32 nq, u32 n0, u32 causal, u32 HD, float scale, float *scores);

static inline void share(size_t n, u32 t, u32 T, size_t *a, size_t *b) {
  *a = n * t / T;
  *b = n * (t + 1) / T;
}

static inline float fslot(slot s) {
  union { u32 i; float f; } u = {(u32)s};
  return u.f;
}

// y[m] = (x[m] - mean) / sqrt(var + eps) * w + b for the rows [r0, r1) of x [rows, D] (ONNX LayerNormalization)
static void layernorm(const float *x, const float *w, const float *b, float *y, size_t D, float eps, size_t r0,
                      size_t r1) {
  for (size_t m = r0; m < r1; m++) {
    const float *xm = x + m * D;
    v128_t s = wasm_f32x4_splat(0);
    for (size_t i = 0; i < D; i += 4) s = wasm_f32x4_add(s, wasm_v128_load(xm + i));
    float mean = (wasm_f32x4_extract_lane(s, 0) + wasm_f32x4_extract_lane(s, 1) + wasm_f32x4_extract_lane(s, 2)
                  + wasm_f32x4_extract_lane(s, 3)) / (float)D;
    v128_t mu = wasm_f32x4_splat(mean), q = wasm_f32x4_splat(0);
    for (size_t i = 0; i < D; i += 4) {
      v128_t d = wasm_f32x4_sub(wasm_v128_load(xm + i), mu);
      q = MADD(d, d, q);
    }
    float var = (wasm_f32x4_extract_lane(q, 0) + wasm_f32x4_extract_lane(q, 1) + wasm_f32x4_extract_lane(q, 2)
                 + wasm_f32x4_extract_lane(q, 3)) / (float)D;
    v128_t inv = wasm_f32x4_splat(1.0f / __builtin_sqrtf(var + eps));
    float *ym = y + m * D;
    for (size_t i = 0; i < D; i += 4) {
      v128_t n = wasm_f32x4_mul(wasm_f32x4_sub(wasm_v128_load(xm + i), mu), inv);
      wasm_v128_store(ym + i, wasm_f32x4_add(wasm_f32x4_mul(n, wasm_v128_load(w + i)), wasm_v128_load(b + i)));
    }
  }
}

// y[m, n] += b[n] (then GELU where gelu) for every row of y [M, N] and the columns [n0, n1)
static void bias_cols(float *y, const float *b, size_t M, size_t N, size_t n0, size_t n1, u32 gelu) {
  size_t n4 = n0 + (n1 - n0) / 4 * 4;
  for (size_t m = 0; m < M; m++) {
    float *row = y + m * N;
    for (size_t n = n0; n < n4; n += 4) {
      v128_t v = wasm_f32x4_add(wasm_v128_load(row + n), wasm_v128_load(b + n));
      wasm_v128_store(row + n, gelu ? gelu4(v) : v);
    }
    for (size_t n = n4; n < n1; n++) {
      v128_t v = gelu4(wasm_f32x4_splat(row[n] + b[n]));
      row[n] = gelu ? wasm_f32x4_extract_lane(v, 0) : row[n] + b[n];
    }
  }
}

// x [M, K] (quantized in xq, or floats for fp32 weights) times W^T into y [M, N] (stored, or added where `add`),
// the columns [n0, n1), then + b and GELU on them
static void linear(u32 dt, const float *x, XQ xq, size_t M, size_t K, const u8 *w, const float *s, const float *b,
                   float *y, size_t N, size_t n0, size_t n1, u32 add, u32 gelu) {
  if (dt == DT_F32) matmul(dt, x, (u32)M, (u32)K, w, s, y, (u32)N, (u32)n0, (u32)n1, add ? MODE_ADD : MODE_STORE);
  else qmatmul(dt, xq, M, w, s, y, N, n0, n1, add ? MODE_ADD : MODE_STORE);
  bias_cols(y, b, M, N, n0, n1, gelu);
}

// rows [r0, r1) of the image's patches: pixels [3, S, S] -> cols [T, 3 P P]
static void patch_rows(const float *pixels, float *cols, size_t S, size_t P, size_t r0, size_t r1) {
  size_t grid = S / P;
  for (size_t m = r0; m < r1; m++) {
    size_t py = m / grid * P, px = m % grid * P;
    float *out = cols + m * 3 * P * P;
    for (size_t c = 0; c < 3; c++)
      for (size_t y = 0; y < P; y++)
        for (size_t x = 0; x < P; x++) *out++ = pixels[(c * S + py + y) * S + px + x];
  }
}

// items [i0, i1) of heads x rows: row m's key and value vectors of a head, from qkv [M, 3 D] (keys of every head
// 12 KB apart at SigLIP-L's width: the same few cache sets, so attention's pass over them missed the caches) into
// kv [2, heads, M, HD], each head's keys, then its values, one after the other
static void heads_apart(const float *qkv, float *kv, size_t M, size_t D, size_t NH, size_t HD, size_t i0,
                        size_t i1) {
  for (size_t i = i0; i < i1; i++) {
    size_t head = i / M, m = i % M;
    const float *k = qkv + m * 3 * D + D + head * HD, *val = k + D;
    float *kd = kv + (head * M + m) * HD, *vd = kv + ((NH + head) * M + m) * HD;
    for (size_t d = 0; d < HD; d += 4) {
      wasm_v128_store(kd + d, wasm_v128_load(k + d));
      wasm_v128_store(vd + d, wasm_v128_load(val + d));
    }
  }
}

void vision_forward(const slot *v, addr *p, u32 t, u32 T) {
  size_t M = v[V_T], D = v[V_D], I = v[V_I], HD = v[V_HD], NH = v[V_HEADS], P = v[V_PATCH], S = v[V_SIZE];
  u32 dt = (u32)v[V_DTYPE];
  float eps = fslot(v[V_EPS]), *x = VF(v[V_X]), *h = VF(v[V_H]), *qkv = VF(v[V_QKV]), *att = VF(v[V_ATT]);
  float *f = VF(v[V_F]), *kv = VF(v[V_KV]), *scores = VF(v[V_SCORES]) + (size_t)t * QT * ((M + 4) & ~(size_t)3);
  size_t r0, r1, c0, c1, a, b;
  share(M, t, T, &r0, &r1);
  // patches, their matrix (fp32), + bias + position table
  patch_rows(VF(v[V_PIXELS]), VF(v[V_COLS]), S, P, r0, r1);
  barrier(p);
  share(D, t, T, &c0, &c1);
  XQ none = {0, 0, 0, 0, 0};
  linear(DT_F32, VF(v[V_COLS]), none, M, 3 * P * P, VB(v[V_PATCH_W]), 0, VF(v[V_PATCH_B]), x, D, c0, c1, 0, 0);
  for (size_t m = 0; m < M; m++)
    for (size_t n = c0; n < c1; n++) x[m * D + n] += VF(v[V_POS])[m * D + n];
  barrier(p);
  XQ xd = xq_view(VF(v[V_XQ]), M, D, dt), xi = xq_view(VF(v[V_XQ]), M, I, dt);
  for (size_t l = 0; l < v[V_LAYERS]; l++) {
    const slot *L = v + V_LAYER0 + l * VL_FIELDS;
    layernorm(x, VF(L[VL_LN1]), VF(L[VL_LN1_B]), h, D, eps, r0, r1);
    if (dt != DT_F32) quantize_rows(h, D, dt, xd, r0, r1);
    barrier(p);
    share(3 * D, t, T, &a, &b);
    linear(dt, h, xd, M, D, VB(L[VL_QKV]), VF(L[VL_QKV_S]), VF(L[VL_QKV_B]), qkv, 3 * D, a, b, 0, 0);
    barrier(p);
    size_t tiles = (M + QT - 1) / QT;
    share(NH * M, t, T, &a, &b);
    heads_apart(qkv, kv, M, D, NH, HD, a, b);
    barrier(p);
    share(NH * tiles, t, T, &a, &b);
    for (size_t i = a; i < b; i++) {
      size_t head = i / tiles, q0 = i % tiles * QT, nq = M - q0 < QT ? M - q0 : QT;
      const float *keys = kv + head * M * HD, *values = kv + (NH + head) * M * HD;
      attend_tile(qkv + q0 * 3 * D + head * HD, 3 * D, keys, values, HD, att + q0 * D + head * HD, D, (u32)nq,
                  (u32)M, 0, (u32)HD, fslot(v[V_SCALE]), scores);
    }
    barrier(p);
    if (dt != DT_F32) {
      quantize_rows(att, D, dt, xd, r0, r1);
      barrier(p);
    }
    linear(dt, att, xd, M, D, VB(L[VL_O]), VF(L[VL_O_S]), VF(L[VL_O_B]), x, D, c0, c1, 1, 0);
    barrier(p);
    layernorm(x, VF(L[VL_LN2]), VF(L[VL_LN2_B]), h, D, eps, r0, r1);
    if (dt != DT_F32) quantize_rows(h, D, dt, xd, r0, r1);
    barrier(p);
    share(I, t, T, &a, &b);
    linear(dt, h, xd, M, D, VB(L[VL_FC1]), VF(L[VL_FC1_S]), VF(L[VL_FC1_B]), f, I, a, b, 0, 1);
    barrier(p);
    if (dt != DT_F32) {
      quantize_rows(f, I, dt, xi, r0, r1);
      barrier(p);
    }
    linear(dt, f, xi, M, I, VB(L[VL_FC2]), VF(L[VL_FC2_S]), VF(L[VL_FC2_B]), x, D, c0, c1, 1, 0);
    barrier(p);
  }
  layernorm(x, VF(v[V_POST]), VF(v[V_POST_B]), h, D, eps, r0, r1);
  // the aligner: h -> g, g -> f, ... alternating, the last into the output
  float *in = h, *bufs[2] = {VF(v[V_G]), f};
  size_t K = D;
  for (size_t j = 0; j < v[V_ALIGNERS]; j++) {
    const slot *A = v + V_ALIGNER0 + j * A_FIELDS;
    u32 adt = (u32)A[A_DTYPE];
    size_t N = A[A_N];
    XQ xq = xq_view(VF(v[V_XQ]), M, K, adt);
    if (adt != DT_F32) quantize_rows(in, K, adt, xq, r0, r1);
    barrier(p);
    float *out = j + 1 == v[V_ALIGNERS] ? VF(v[V_OUT]) : bufs[j % 2];
    share(N, t, T, &a, &b);
    linear(adt, in, xq, M, K, VB(A[A_W]), VF(A[A_S]), VF(A[A_B]), out, N, a, b, 0, (u32)A[A_GELU]);
    barrier(p);
    in = out;
    K = N;
  }
}
