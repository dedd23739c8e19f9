// The CPU engine's per-token work (see matmul.c for the matrix kernels): RMS norm, rotary + KV cache write,
// causal attention over the preallocated cache, and the jobs that chain them: a forward pass of every decoder
// layer, and one matrix product for the heads. Every thread runs the same job over its share (output columns,
// or (token, head) pairs) with a barrier between steps; the plan (a u32 table in memory, layout in plan.js) holds
// the shapes and every buffer's address. Threads: thread 0 is the caller of `run`; the others sit in
// `thread_loop` (memory.atomic.wait) until the job counter moves.
#include "cpu.h"

enum { P_M, P_P, P_PAST, P_CAP, P_H, P_I, P_NH, P_KVH, P_HD, P_LAYERS, P_DTYPE, P_EPS, P_SCALE, P_X, P_HB, P_QKV,
       P_ATT, P_F, P_SCORES, P_COS, P_SIN, P_FINAL, P_OUT, P_NT, P_BAR_COUNT, P_BAR_GEN, P_JOB, P_KIND,
       P_HEAD_DTYPE, P_HEAD_X, P_HEAD_M, P_HEAD_K, P_HEAD_W, P_HEAD_S, P_HEAD_Y, P_HEAD_N, P_LAYER0 = 40 };
enum { L_LN1, L_QKV, L_QKV_S, L_O, L_O_S, L_LN2, L_GATE, L_GATE_S, L_UP, L_UP_S, L_DOWN, L_DOWN_S, L_K, L_V,
       L_FIELDS };
enum { KIND_EXIT = 0, KIND_DECODER = 1, KIND_HEAD = 2 };
#define SPIN 200000

#define F(a) ((float *)(unsigned long)(a))
#define B(a) ((const u8 *)(unsigned long)(a))

#ifdef THREADS
static inline u32 load_acquire(u32 *a) { return __atomic_load_n(a, __ATOMIC_ACQUIRE); }

static void barrier(u32 *p) {
  u32 n = p[P_NT];
  if (n == 1) return;
  u32 gen = load_acquire(&p[P_BAR_GEN]);
  if (__atomic_fetch_add(&p[P_BAR_COUNT], 1, __ATOMIC_ACQ_REL) == n - 1) {
    __atomic_store_n(&p[P_BAR_COUNT], 0, __ATOMIC_RELAXED);
    __atomic_fetch_add(&p[P_BAR_GEN], 1, __ATOMIC_RELEASE);
    __builtin_wasm_memory_atomic_notify((int *)&p[P_BAR_GEN], n);
    return;
  }
  for (u32 i = 0; i < SPIN; i++)
    if (load_acquire(&p[P_BAR_GEN]) != gen) return;
  while (load_acquire(&p[P_BAR_GEN]) == gen) __builtin_wasm_memory_atomic_wait32((int *)&p[P_BAR_GEN], gen, -1);
}
#else
static void barrier(u32 *p) { (void)p; }
#endif

/** [a, b): thread t's part of n items among T threads */
static inline void share(u32 n, u32 t, u32 T, u32 *a, u32 *b) {
  *a = (u32)((u64)n * t / T);
  *b = (u32)((u64)n * (t + 1) / T);
}

// y[m, c] = x[m, c] / sqrt(mean(x[m]^2) + eps) * w[c] for the columns [c0, c1) (every thread sums the row)
EXPORT void rmsnorm(const float *x, const float *w, float *y, u32 M, u32 H, float eps, u32 c0, u32 c1) {
  for (u32 m = 0; m < M; m++) {
    const float *xm = x + m * H;
    v128_t acc = wasm_f32x4_splat(0);
    for (u32 i = 0; i < H; i += 4) {
      v128_t v = wasm_v128_load(xm + i);
      acc = MADD(v, v, acc);
    }
    float s = wasm_f32x4_extract_lane(acc, 0) + wasm_f32x4_extract_lane(acc, 1) + wasm_f32x4_extract_lane(acc, 2)
            + wasm_f32x4_extract_lane(acc, 3);
    float inv = 1.0f / __builtin_sqrtf(s / (float)H + eps);
    for (u32 c = c0; c < c1; c++) y[m * H + c] = xm[c] * inv * w[c];
  }
}

// rotate-half rotary of one head vector src -> dst at position pos (cos/sin tables [positions, HD/2])
static inline void rotate(const float *src, float *dst, const float *cs, const float *sn, u32 HD) {
  u32 half = HD / 2;
  for (u32 d = 0; d < half; d++) {
    float a = src[d], b = src[d + half];
    dst[d] = a * cs[d] - b * sn[d];
    dst[d + half] = b * cs[d] + a * sn[d];
  }
}

// items [i0, i1) of M * (NH + KVH): query heads rotated in place in qkv [M, (NH + 2 KVH) HD]; key heads rotated
// into the key cache and their value heads copied into the value cache, [rows, KVH, capacity, HD]
EXPORT void rope_kv(u32 *p, const u32 *layer, u32 i0, u32 i1) {
  u32 NH = p[P_NH], KVH = p[P_KVH], HD = p[P_HD], cap = p[P_CAP], heads = NH + KVH;
  u32 stride = (NH + 2 * KVH) * HD;
  float *qkv = F(p[P_QKV]);
  for (u32 i = i0; i < i1; i++) {
    u32 m = i / heads, head = i % heads, r = m / p[P_P], pos = p[P_PAST] + m % p[P_P];
    const float *cs = F(p[P_COS]) + pos * (HD / 2), *sn = F(p[P_SIN]) + pos * (HD / 2);
    float *src = qkv + m * stride + head * HD;
    if (head < NH) {
      float tmp[256];
      for (u32 d = 0; d < HD; d++) tmp[d] = src[d];
      rotate(tmp, src, cs, sn, HD);
      continue;
    }
    u32 kvh = head - NH;
    u64 at = ((u64)(r * KVH + kvh) * cap + pos) * HD;
    rotate(src, F(layer[L_K]) + at, cs, sn, HD);
    const float *v = src + KVH * HD;
    float *vc = F(layer[L_V]) + at;
    for (u32 d = 0; d < HD; d++) vc[d] = v[d];
  }
}

// items [i0, i1) of M * NH (token, query head): softmax(scale q.k_j, j <= pos) . v over the cache -> att [M, NH HD]
EXPORT void attention(u32 *p, const u32 *layer, u32 i0, u32 i1) {
  u32 NH = p[P_NH], KVH = p[P_KVH], HD = p[P_HD], cap = p[P_CAP];
  u32 stride = (NH + 2 * KVH) * HD;
  float scale = F(p)[P_SCALE];
  for (u32 i = i0; i < i1; i++) {
    u32 m = i / NH, h = i % NH, r = m / p[P_P], pos = p[P_PAST] + m % p[P_P];
    const float *q = F(p[P_QKV]) + m * stride + h * HD;
    u64 base = (u64)(r * KVH + h / (NH / KVH)) * cap * HD;
    const float *kc = F(layer[L_K]) + base, *vc = F(layer[L_V]) + base;
    float *sc = F(p[P_SCORES]) + (u64)i * cap;
    float top = -3.0e38f;
    for (u32 j = 0; j <= pos; j++) {
      v128_t acc = wasm_f32x4_splat(0);
      for (u32 d = 0; d < HD; d += 4) acc = MADD(wasm_v128_load(q + d), wasm_v128_load(kc + j * HD + d), acc);
      float s = (wasm_f32x4_extract_lane(acc, 0) + wasm_f32x4_extract_lane(acc, 1) + wasm_f32x4_extract_lane(acc, 2)
                 + wasm_f32x4_extract_lane(acc, 3)) * scale;
      sc[j] = s;
      top = s > top ? s : top;
    }
    float total = 0;
    for (u32 j = 0; j <= pos; j++) total += (sc[j] = expf_(sc[j] - top));
    float *out = F(p[P_ATT]) + m * NH * HD + h * HD;
    for (u32 d = 0; d < HD; d += 4) wasm_v128_store(out + d, wasm_f32x4_splat(0));
    for (u32 j = 0; j <= pos; j++) {
      v128_t e = wasm_f32x4_splat(sc[j]);
      for (u32 d = 0; d < HD; d += 4)
        wasm_v128_store(out + d, MADD(e, wasm_v128_load(vc + j * HD + d), wasm_v128_load(out + d)));
    }
    v128_t inv = wasm_f32x4_splat(1.0f / total);
    for (u32 d = 0; d < HD; d += 4) wasm_v128_store(out + d, wasm_f32x4_mul(wasm_v128_load(out + d), inv));
  }
}

static void forward(u32 *p, u32 t) {
  u32 T = p[P_NT], M = p[P_M], H = p[P_H], I = p[P_I], NH = p[P_NH], KVH = p[P_KVH], HD = p[P_HD], dt = p[P_DTYPE];
  u32 QKV = (NH + 2 * KVH) * HD, a, b, c0, c1;
  float eps = F(p)[P_EPS], *x = F(p[P_X]), *h = F(p[P_HB]);
  share(H, t, T, &c0, &c1);
  for (u32 l = 0; l < p[P_LAYERS]; l++) {
    const u32 *L = p + P_LAYER0 + l * L_FIELDS;
    rmsnorm(x, F(L[L_LN1]), h, M, H, eps, c0, c1);
    barrier(p);
    share(QKV, t, T, &a, &b);
    matmul(dt, h, M, H, B(L[L_QKV]), F(L[L_QKV_S]), F(p[P_QKV]), QKV, a, b, MODE_STORE);
    barrier(p);
    share(M * (NH + KVH), t, T, &a, &b);
    rope_kv(p, L, a, b);
    barrier(p);
    share(M * NH, t, T, &a, &b);
    attention(p, L, a, b);
    barrier(p);
    matmul(dt, F(p[P_ATT]), M, NH * HD, B(L[L_O]), F(L[L_O_S]), x, H, c0, c1, MODE_ADD);
    barrier(p);
    rmsnorm(x, F(L[L_LN2]), h, M, H, eps, c0, c1);
    barrier(p);
    share(I, t, T, &a, &b);
    gate_up(dt, h, M, H, B(L[L_GATE]), F(L[L_GATE_S]), B(L[L_UP]), F(L[L_UP_S]), F(p[P_F]), I, a, b);
    barrier(p);
    matmul(dt, F(p[P_F]), M, I, B(L[L_DOWN]), F(L[L_DOWN_S]), x, H, c0, c1, MODE_ADD);
    barrier(p);
  }
  rmsnorm(x, F(p[P_FINAL]), F(p[P_OUT]), M, H, eps, c0, c1);
  barrier(p);
}

static void run_share(u32 *p, u32 t) {
  if (p[P_KIND] == KIND_DECODER) {
    forward(p, t);
  } else {
    u32 a, b;
    share(p[P_HEAD_N], t, p[P_NT], &a, &b);
    matmul(p[P_HEAD_DTYPE], F(p[P_HEAD_X]), p[P_HEAD_M], p[P_HEAD_K], B(p[P_HEAD_W]), F(p[P_HEAD_S]),
           F(p[P_HEAD_Y]), p[P_HEAD_N], a, b, MODE_STORE);
    barrier(p);
  }
}

// thread 0: start the job the plan describes on every thread and do its own share; returns when all are done
EXPORT void run(u32 *p) {
#ifdef THREADS
  __atomic_fetch_add(&p[P_JOB], 1, __ATOMIC_SEQ_CST);
  __builtin_wasm_memory_atomic_notify((int *)&p[P_JOB], p[P_NT]);
#endif
  run_share(p, 0);
}

#ifdef THREADS
// threads 1..T-1: wait for each job after job number `seen`, run its share; return on KIND_EXIT
EXPORT void thread_loop(u32 *p, u32 t, u32 seen) {
  for (;;) {
    for (u32 i = 0; i < SPIN && load_acquire(&p[P_JOB]) == seen; i++) {}
    while (load_acquire(&p[P_JOB]) == seen) __builtin_wasm_memory_atomic_wait32((int *)&p[P_JOB], seen, -1);
    seen = load_acquire(&p[P_JOB]);
    if (p[P_KIND] == KIND_EXIT) return;
    run_share(p, t);
  }
}
#endif
