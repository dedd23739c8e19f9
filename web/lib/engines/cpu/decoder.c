// The CPU engine's per-token work (see matmul.c and qmatmul.c for the matrix kernels, attention.c for attention):
// RMS norm, rotary + KV cache write, and the jobs that chain them: a forward pass of every decoder layer, and one
// matrix product for the heads. Every thread runs the same job over its share (output columns, rows, or tiles of
// (row, head, positions)) with a barrier between steps; the plan (a table in memory, layout in runtime.js) holds
// the shapes and every buffer's address, one pointer-sized slot (`addr`) a field: 4 bytes in the 32-bit build, 8
// in the Memory64 one; a float field is its slot's first 4 bytes (PF), the counters threads wait on too (W32).
// A prompt's call of more than PREFILL_ROWS tokens quantizes each matrix input once, its rows shared out, into the
// plan's XQ buffer, and every thread's matrix columns then run over all the rows (each weight read once per call).
// Threads: thread 0 is the caller of `run`; the others sit in `thread_loop` (memory.atomic.wait) until the job
// counter moves.
#include "qmat.h"

enum { P_M, P_P, P_PAST, P_CAP, P_H, P_I, P_NH, P_KVH, P_HD, P_LAYERS, P_DTYPE, P_EPS, P_SCALE, P_X, P_HB, P_QKV,
       P_ATT, P_F, P_SCORES, P_COS, P_SIN, P_FINAL, P_OUT, P_NT, P_BAR_COUNT, P_BAR_GEN, P_JOB, P_KIND,
       P_HEAD_DTYPE, P_HEAD_X, P_HEAD_M, P_HEAD_K, P_HEAD_W, P_HEAD_S, P_HEAD_Y, P_HEAD_N, P_XQ, P_ARG, P_LAYER0 = 40 };
enum { L_LN1, L_QKV, L_QKV_S, L_O, L_O_S, L_LN2, L_GATE, L_GATE_S, L_UP, L_UP_S, L_DOWN, L_DOWN_S, L_K, L_V,
       L_FIELDS };
enum { KIND_EXIT = 0, KIND_DECODER = 1, KIND_HEAD = 2, KIND_VISION = 3, KIND_VQ = 4 };
#define SPIN 200000
#define PREFILL_ROWS 16 // calls of more tokens quantize each matrix input once, into P_XQ (matmul.c: QROWS)
#define QT 4            // queries per attention tile (attention.c)

void vision_forward(const addr *v, addr *p, u32 t, u32 T);
void vq_op(const addr *q, addr *p, u32 t, u32 T);
void attend_tile(const float *q, size_t qstride, const float *k, const float *v, size_t kvstride, float *out,
                 size_t ostride, u32 nq, u32 n0, u32 causal, u32 HD, float scale, float *scores);

#define F(a) ((float *)(addr)(a))
#define B(a) ((const u8 *)(addr)(a))
#define PF(p, i) (*(const float *)&(p)[i])
#define W32(p, i) ((u32 *)&(p)[i])

#ifdef THREADS
static inline u32 load_acquire(u32 *a) { return __atomic_load_n(a, __ATOMIC_ACQUIRE); }

void barrier(addr *p) {
  u32 n = p[P_NT];
  if (n == 1) return;
  u32 gen = load_acquire(W32(p, P_BAR_GEN));
  if (__atomic_fetch_add(W32(p, P_BAR_COUNT), 1, __ATOMIC_ACQ_REL) == n - 1) {
    __atomic_store_n(W32(p, P_BAR_COUNT), 0, __ATOMIC_RELAXED);
    __atomic_fetch_add(W32(p, P_BAR_GEN), 1, __ATOMIC_RELEASE);
    __builtin_wasm_memory_atomic_notify((int *)W32(p, P_BAR_GEN), n);
    return;
  }
  // spin, never memory.atomic.wait32: waits here lost their wake-up in V8 (Node 20: the vision tower's first job
  // at 2 threads hung in about 1 run in 7, and in 29 of 30 with TurboFan-only code; 0 of 20 spinning). The threads
  // of a job arrive within one step of each other; idle threads still sleep between jobs (thread_loop).
  while (load_acquire(W32(p, P_BAR_GEN)) == gen) {}
}
#else
void barrier(addr *p) { (void)p; }
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
EXPORT void rope_kv(addr *p, const addr *layer, u32 i0, u32 i1) {
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

// tiles [i0, i1) of rows x NH x ceil(P / QT) (row, query head, QT positions): causal attention over the cache
// -> att [M, NH HD]; scores: this thread's scratch (QT (CAP + 4) floats)
static void attention(addr *p, const addr *layer, u32 i0, u32 i1, float *scores) {
  u32 NH = p[P_NH], KVH = p[P_KVH], HD = p[P_HD], cap = p[P_CAP], P = p[P_P];
  u32 stride = (NH + 2 * KVH) * HD, tiles = (P + QT - 1) / QT;
  for (u32 i = i0; i < i1; i++) {
    u32 r = i / (NH * tiles), h = i / tiles % NH, q0 = i % tiles * QT;
    u32 nq = P - q0 < QT ? P - q0 : QT;
    size_t m = (size_t)r * P + q0;
    size_t base = ((size_t)r * KVH + h / (NH / KVH)) * cap * HD;
    attend_tile(F(p[P_QKV]) + m * stride + h * HD, stride, F(layer[L_K]) + base, F(layer[L_V]) + base, HD,
                F(p[P_ATT]) + m * NH * HD + h * HD, NH * HD, nq, p[P_PAST] + q0 + 1, 1, HD, PF(p, P_SCALE), scores);
  }
}

// rows [r0, r1) of x normalized (all columns) into h, then quantized into xq
static void norm_rows(const float *x, const float *w, float *h, u32 H, float eps, u32 dt, XQ xq, u32 r0, u32 r1) {
  rmsnorm(x + (size_t)r0 * H, w, h + (size_t)r0 * H, r1 - r0, H, eps, 0, H);
  quantize_rows(h, H, dt, xq, r0, r1);
}

static void forward(addr *p, u32 t) {
  u32 T = p[P_NT], M = p[P_M], H = p[P_H], I = p[P_I], NH = p[P_NH], KVH = p[P_KVH], HD = p[P_HD], dt = p[P_DTYPE];
  u32 QKV = (NH + 2 * KVH) * HD, a, b, c0, c1, r0, r1, big = M > PREFILL_ROWS && dt != DT_F32;
  float eps = PF(p, P_EPS), *x = F(p[P_X]), *h = F(p[P_HB]), *att = F(p[P_ATT]), *f = F(p[P_F]);
  float *scores = F(p[P_SCORES]) + (size_t)t * QT * (p[P_CAP] + 4);
  XQ xh = xq_view(F(p[P_XQ]), M, H, dt), xa = xq_view(F(p[P_XQ]), M, NH * HD, dt), xf = xq_view(F(p[P_XQ]), M, I, dt);
  share(H, t, T, &c0, &c1);
  share(M, t, T, &r0, &r1);
  for (u32 l = 0; l < p[P_LAYERS]; l++) {
    const addr *L = p + P_LAYER0 + l * L_FIELDS;
    if (big) norm_rows(x, F(L[L_LN1]), h, H, eps, dt, xh, r0, r1);
    else rmsnorm(x, F(L[L_LN1]), h, M, H, eps, c0, c1);
    barrier(p);
    share(QKV, t, T, &a, &b);
    if (big) qmatmul(dt, xh, M, B(L[L_QKV]), F(L[L_QKV_S]), F(p[P_QKV]), QKV, a, b, MODE_STORE);
    else matmul(dt, h, M, H, B(L[L_QKV]), F(L[L_QKV_S]), F(p[P_QKV]), QKV, a, b, MODE_STORE);
    barrier(p);
    share(M * (NH + KVH), t, T, &a, &b);
    rope_kv(p, L, a, b);
    barrier(p);
    share(M / p[P_P] * NH * ((p[P_P] + QT - 1) / QT), t, T, &a, &b);
    attention(p, L, a, b, scores);
    barrier(p);
    if (big) {
      quantize_rows(att, NH * HD, dt, xa, r0, r1);
      barrier(p);
      qmatmul(dt, xa, M, B(L[L_O]), F(L[L_O_S]), x, H, c0, c1, MODE_ADD);
    } else {
      matmul(dt, att, M, NH * HD, B(L[L_O]), F(L[L_O_S]), x, H, c0, c1, MODE_ADD);
    }
    barrier(p);
    if (big) norm_rows(x, F(L[L_LN2]), h, H, eps, dt, xh, r0, r1);
    else rmsnorm(x, F(L[L_LN2]), h, M, H, eps, c0, c1);
    barrier(p);
    share(I, t, T, &a, &b);
    if (big) qgate_up(dt, xh, M, B(L[L_GATE]), F(L[L_GATE_S]), B(L[L_UP]), F(L[L_UP_S]), f, I, a, b);
    else gate_up(dt, h, M, H, B(L[L_GATE]), F(L[L_GATE_S]), B(L[L_UP]), F(L[L_UP_S]), f, I, a, b);
    barrier(p);
    if (big) {
      quantize_rows(f, I, dt, xf, r0, r1);
      barrier(p);
      qmatmul(dt, xf, M, B(L[L_DOWN]), F(L[L_DOWN_S]), x, H, c0, c1, MODE_ADD);
    } else {
      matmul(dt, f, M, I, B(L[L_DOWN]), F(L[L_DOWN_S]), x, H, c0, c1, MODE_ADD);
    }
    barrier(p);
  }
  rmsnorm(x, F(p[P_FINAL]), F(p[P_OUT]), M, H, eps, c0, c1);
  barrier(p);
}

static void run_share(addr *p, u32 t) {
  if (p[P_KIND] == KIND_DECODER) {
    forward(p, t);
  } else if (p[P_KIND] == KIND_VISION) { // the vision tower (vision.c), its table at P_ARG
    vision_forward((const addr *)p[P_ARG], p, t, p[P_NT]);
  } else if (p[P_KIND] == KIND_VQ) { // one op of the VQ decoder (vq.c), its table at P_ARG
    vq_op((const addr *)p[P_ARG], p, t, p[P_NT]);
  } else {
    u32 a, b;
    share(p[P_HEAD_N], t, p[P_NT], &a, &b);
    matmul(p[P_HEAD_DTYPE], F(p[P_HEAD_X]), p[P_HEAD_M], p[P_HEAD_K], B(p[P_HEAD_W]), F(p[P_HEAD_S]),
           F(p[P_HEAD_Y]), p[P_HEAD_N], a, b, MODE_STORE);
    barrier(p);
  }
}

// thread 0: start the job the plan describes on every thread and do its own share; returns when all are done
EXPORT void run(addr *p) {
#ifdef THREADS
  __atomic_fetch_add(W32(p, P_JOB), 1, __ATOMIC_SEQ_CST);
  __builtin_wasm_memory_atomic_notify((int *)W32(p, P_JOB), p[P_NT]);
#endif
  run_share(p, 0);
}

#ifdef THREADS
// threads 1..T-1: wait for each job after job number `seen`, run its share; return on KIND_EXIT
EXPORT void thread_loop(addr *p, u32 t, u32 seen) {
  u32 *job = W32(p, P_JOB);
  for (;;) {
    for (u32 i = 0; i < SPIN && load_acquire(job) == seen; i++) {}
    while (load_acquire(job) == seen) __builtin_wasm_memory_atomic_wait32((int *)job, seen, -1);
    seen = load_acquire(job);
    if (p[P_KIND] == KIND_EXIT) return;
    run_share(p, t);
  }
}
#endif
