// Float convolutions of the VQ decoder (vq.c), on activations laid out [H, W, C] (a pixel's channels together):
//   3x3, stride 1, pad 1: Winograd F(4x4, 3x3) (Lavin and Gray's transform matrices, interpolation points 0, 1, -1,
//        2, -2): each 4x4 block of output pixels ("tile") from its 6x6 input pixels as 36 elementwise products, so
//        36 matrix products [tiles, Cin] x [Cin, Cout] replace 9 of them over every pixel: 4 times fewer
//        multiply-accumulates. The weights' transform U = G g G^T is made per call (wino_weights) into a shared
//        scratch [36, Cin, Cout4]; each thread then takes blocks of TB tiles through the input transform
//        B^T d B, the 36 products and the output transform A^T m A (+ bias, + a residual), in its own scratch.
//        Float32 throughout: about 2e-6 from the direct sum over 128 channels (numpy, same weights).
//   1x1: one matrix product [pixels, Cin] x [Cin, Cout4] (weights transposed per call).
// Channels are multiples of 4 (an output of 3 channels is computed as 4, the last one's weights zero).
#include <stddef.h>
#include "cpu.h"

#define TB 16 // tiles per block of a thread's Winograd work
#define MR 4  // register tile of the matrix products: 4 rows x 8 columns
#define NR 8

// C[m, n] = sum_k A[m, k] B[k, n] for m < M (<= MR), n < N (4 or 8: NR or a last 4): A rows lda apart, B rows ldb
// apart, C rows ldc apart
static inline __attribute__((always_inline)) void kernel(const float *A, size_t lda, const float *B, size_t ldb,
                                                         float *C, size_t ldc, u32 M, u32 N, size_t K) {
  v128_t acc[MR][2];
  for (u32 m = 0; m < M; m++) acc[m][0] = acc[m][1] = wasm_f32x4_splat(0);
  for (size_t k = 0; k < K; k++) {
    v128_t b0 = wasm_v128_load(B + k * ldb), b1 = N > 4 ? wasm_v128_load(B + k * ldb + 4) : b0;
    for (u32 m = 0; m < M; m++) {
      v128_t a = wasm_v128_load32_splat(A + m * lda + k);
      acc[m][0] = MADD(a, b0, acc[m][0]);
      if (N > 4) acc[m][1] = MADD(a, b1, acc[m][1]);
    }
  }
  for (u32 m = 0; m < M; m++) {
    wasm_v128_store(C + m * ldc, acc[m][0]);
    if (N > 4) wasm_v128_store(C + m * ldc + 4, acc[m][1]);
  }
}

#define KERNEL_CASE(m, n) kernel(A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc, m, n, K)
// C [M, N] = A [M, K] B [K, N], N a multiple of 4
static void sgemm(const float *A, size_t lda, const float *B, size_t ldb, float *C, size_t ldc, size_t M, size_t N,
                  size_t K) {
  for (size_t j = 0; j < N; j += NR) {
    u32 wide = N - j >= NR;
    for (size_t i = 0; i < M; i += MR) {
      switch ((M - i >= MR ? MR : (u32)(M - i)) * 2 + wide) {
        case 9: KERNEL_CASE(4, 8); break;
        case 8: KERNEL_CASE(4, 4); break;
        case 7: KERNEL_CASE(3, 8); break;
        case 6: KERNEL_CASE(3, 4); break;
        case 5: KERNEL_CASE(2, 8); break;
        case 4: KERNEL_CASE(2, 4); break;
        case 3: KERNEL_CASE(1, 8); break;
        default: KERNEL_CASE(1, 4); break;
      }
    }
  }
}

static const float G[6][3] = {{0.25f, 0, 0}, {-1.0f / 6, -1.0f / 6, -1.0f / 6}, {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                              {1.0f / 24, 1.0f / 12, 1.0f / 6}, {1.0f / 24, -1.0f / 12, 1.0f / 6}, {0, 0, 1}};

// U[xi, ci, co] = (G g G^T)[xi] of g = w[co, ci] (the [Cout, Cin, 3, 3] weights), for co in [c0, c1); zero for the
// padding columns co in [Cout, Cout4)
void wino_weights(const float *w, size_t Cin, size_t Cout, size_t Cout4, float *U, size_t c0, size_t c1) {
  for (size_t co = c0; co < c1; co++)
    for (size_t ci = 0; ci < Cin; ci++) {
      float t[6][3], u[6][6];
      const float *g = w + (co * Cin + ci) * 9;
      for (u32 i = 0; i < 6; i++)
        for (u32 j = 0; j < 3; j++)
          t[i][j] = co < Cout ? G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j] : 0;
      for (u32 i = 0; i < 6; i++)
        for (u32 j = 0; j < 6; j++) u[i][j] = t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
      for (u32 xi = 0; xi < 36; xi++) U[(xi * Cin + ci) * Cout4 + co] = u[xi / 6][xi % 6];
    }
}

// B^T d B of one column (or row) of 6 vectors
static inline void bt6(const v128_t *d, v128_t *o) {
  v128_t four = wasm_f32x4_splat(4), five = wasm_f32x4_splat(5), two = wasm_f32x4_splat(2);
  o[0] = wasm_f32x4_add(wasm_f32x4_sub(wasm_f32x4_mul(four, d[0]), wasm_f32x4_mul(five, d[2])), d[4]);
  o[1] = wasm_f32x4_sub(wasm_f32x4_add(d[3], d[4]), wasm_f32x4_mul(four, wasm_f32x4_add(d[1], d[2])));
  o[2] = wasm_f32x4_add(wasm_f32x4_sub(d[4], d[3]), wasm_f32x4_mul(four, wasm_f32x4_sub(d[1], d[2])));
  o[3] = wasm_f32x4_add(wasm_f32x4_sub(d[4], d[2]), wasm_f32x4_mul(two, wasm_f32x4_sub(d[3], d[1])));
  o[4] = wasm_f32x4_sub(wasm_f32x4_sub(d[4], d[2]), wasm_f32x4_mul(two, wasm_f32x4_sub(d[3], d[1])));
  o[5] = wasm_f32x4_add(wasm_f32x4_sub(wasm_f32x4_mul(four, d[1]), wasm_f32x4_mul(five, d[3])), d[5]);
}

// A^T m A of one column (or row) of 6 vectors -> 4
static inline void at6(const v128_t *m, v128_t *o) {
  v128_t p1 = wasm_f32x4_add(m[1], m[2]), m1 = wasm_f32x4_sub(m[1], m[2]);
  v128_t p2 = wasm_f32x4_add(m[3], m[4]), m2 = wasm_f32x4_sub(m[3], m[4]);
  o[0] = wasm_f32x4_add(wasm_f32x4_add(m[0], p1), p2);
  o[1] = wasm_f32x4_add(m1, wasm_f32x4_mul(wasm_f32x4_splat(2), m2));
  o[2] = wasm_f32x4_add(p1, wasm_f32x4_mul(wasm_f32x4_splat(4), p2));
  o[3] = wasm_f32x4_add(wasm_f32x4_add(m1, wasm_f32x4_mul(wasm_f32x4_splat(8), m2)), m[5]);
}

// bytes of a thread's Winograd scratch for Cin, Cout4 at most
size_t wino_scratch_floats(size_t Cin, size_t Cout4) { return 36 * TB * (Cin + Cout4); }

// Tiles [t0, t1) (row-major over the (H/4) x (W/4) output tiles) of out [H, W, Cout] = conv3x3(in [H, W, Cin]) + b
// (+ res [H, W, Cout] where res), from U (wino_weights); scratch: wino_scratch_floats(Cin, Cout4)
void wino_conv(const float *in, size_t H, size_t W, size_t Cin, const float *U, const float *b, const float *res,
               float *out, size_t Cout, size_t Cout4, size_t t0, size_t t1, float *scratch) {
  size_t tw = W / 4;
  float *V = scratch, *Mx = scratch + 36 * TB * Cin;
  for (size_t blk = t0; blk < t1; blk += TB) {
    size_t n = t1 - blk < TB ? t1 - blk : TB;
    for (size_t t = 0; t < n; t++) { // input transform: V[xi, t, ci]
      long y0 = (long)((blk + t) / tw) * 4 - 1, x0 = (long)((blk + t) % tw) * 4 - 1;
      for (size_t c = 0; c < Cin; c += 4) {
        v128_t d[6][6], r[6][6];
        for (u32 i = 0; i < 6; i++)
          for (u32 j = 0; j < 6; j++) {
            long y = y0 + i, x = x0 + j;
            d[i][j] = y < 0 || x < 0 || y >= (long)H || x >= (long)W ? wasm_f32x4_splat(0)
                                                                      : wasm_v128_load(in + ((size_t)y * W + x) * Cin + c);
          }
        for (u32 j = 0; j < 6; j++) { // columns, then rows
          v128_t col[6], o[6];
          for (u32 i = 0; i < 6; i++) col[i] = d[i][j];
          bt6(col, o);
          for (u32 i = 0; i < 6; i++) r[i][j] = o[i];
        }
        for (u32 i = 0; i < 6; i++) {
          v128_t o[6];
          bt6(r[i], o);
          for (u32 j = 0; j < 6; j++) wasm_v128_store(V + ((i * 6 + j) * TB + t) * Cin + c, o[j]);
        }
      }
    }
    for (u32 xi = 0; xi < 36; xi++)
      sgemm(V + xi * TB * Cin, Cin, U + xi * Cin * Cout4, Cout4, Mx + xi * TB * Cout4, Cout4, n, Cout4, Cin);
    for (size_t t = 0; t < n; t++) { // output transform
      size_t y0 = (blk + t) / tw * 4, x0 = (blk + t) % tw * 4;
      for (size_t c = 0; c < Cout4; c += 4) {
        v128_t r[6][4], bias = c + 4 <= Cout ? wasm_v128_load(b + c) : wasm_f32x4_splat(0);
        for (u32 i = 0; i < 6; i++) {
          v128_t m[6];
          for (u32 j = 0; j < 6; j++) m[j] = wasm_v128_load(Mx + ((i * 6 + j) * TB + t) * Cout4 + c);
          at6(m, r[i]);
        }
        for (u32 j = 0; j < 4; j++) {
          v128_t col[6], o[4];
          for (u32 i = 0; i < 6; i++) col[i] = r[i][j];
          at6(col, o);
          for (u32 i = 0; i < 4; i++) {
            size_t at = ((y0 + i) * W + x0 + j) * Cout + c;
            v128_t v = wasm_f32x4_add(o[i], bias);
            if (c + 4 <= Cout) {
              if (res) v = wasm_f32x4_add(wasm_v128_load(res + at), v);
              wasm_v128_store(out + at, v);
            } else { // the last channels of an output of Cout % 4 of them
              float lanes[4];
              wasm_v128_store(lanes, v);
              for (size_t k = 0; c + k < Cout; k++) out[at + k] = lanes[k] + b[c + k] + (res ? res[at + k] : 0);
            }
          }
        }
      }
    }
  }
}

// Wt[ci, co] = w[co, ci] for co in [c0, c1) (zero for co >= Cout): a 1x1 convolution's weights as a [Cin, Cout4]
// matrix
void conv1_weights(const float *w, size_t Cin, size_t Cout, size_t Cout4, float *Wt, size_t c0, size_t c1) {
  for (size_t co = c0; co < c1; co++)
    for (size_t ci = 0; ci < Cin; ci++) Wt[ci * Cout4 + co] = co < Cout ? w[co * Cin + ci] : 0;
}

// pixels [p0, p1) of out [P, Cout] = in [P, Cin] Wt + b (+ res), a block of 32 pixels at a time through scratch
// (32 Cout4 floats)
void conv1(const float *in, size_t Cin, const float *Wt, const float *b, const float *res, float *out, size_t Cout,
           size_t Cout4, size_t p0, size_t p1, float *scratch) {
  for (size_t p = p0; p < p1; p += 32) {
    size_t n = p1 - p < 32 ? p1 - p : 32;
    sgemm(in + p * Cin, Cin, Wt, Cout4, scratch, Cout4, n, Cout4, Cin);
    for (size_t i = 0; i < n; i++)
      for (size_t co = 0; co < Cout; co++) {
        size_t at = (p + i) * Cout + co;
        out[at] = scratch[i * Cout4 + co] + b[co] + (res ? res[at] : 0);
      }
  }
}
