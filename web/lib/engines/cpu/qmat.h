// The engine's layout of quantized matrices and of the activations they meet (qlayout.c), and the matrix
// products over it (qmatmul.c).
//
// MatMulNBits keeps each weight row as K/32 blocks of 32 values (q8: a byte each, q - 128; q4: two to a byte,
// element 2i in the low nibble of byte i, q - 8) with one scale per block. The integer dot products of WebAssembly
// SIMD sum neighbouring lanes (i32x4.dot_i16x8_s: pairs of i16; relaxed i32x4.relaxed_dot_i8x16_i7x16_add_s:
// quads of i8), so with that layout every block's sum ends up spread over four lanes that must be added across
// before its scale applies. At load, `repack` rewrites each row in place so that, in each *group* of 4 blocks
// (128 values), lane j of every vector the kernels make belongs to block j: one i32x4 accumulator then holds the
// 4 blocks' sums, converted and scaled by one vector of 4 scale products. The activations are quantized into the
// same order (`quantize_rows`). Within a group, vector v's element e holds (for the i16 order) value 2v + e % 2
// of block e / 2, or (for the i8 order, q4 with relaxed SIMD) value 4v + e % 4 of block e / 4. Blocks after the
// last whole group (K/32 mod 4 of them) keep MatMulNBits' order and are summed one at a time.
//   q8 weights become signed bytes (q - 128: no zero point left); q4 keeps its unsigned nibbles (0..15, inside
//   relaxed SIMD's 7-bit operand) and the kernels subtract 8 * sum(x) per block.
//   q8 on an unsigned byte dot (relaxed SIMD where `choose_u8_dot` found the engine's relaxed dot exact on unsigned
//   bytes, as x86's VNNI instruction is): the weights keep their unsigned bytes q in the i8 order, meet i8
//   activations, and the kernels subtract 128 * sum(x) per block, as q4 subtracts 8 * sum(x). One instruction per
//   16 products instead of i16's two dots and two adds; the integer sums are the same, so are the results.
//   Activations: per row and block of 32, scale = amax / 127, q = round-half-even(x * 127 / amax) (onnxruntime's
//   MatMulNBits at accuracy_level 4), as i16 (or i8 for q4 with relaxed SIMD and for q8 on the unsigned dot), with
//   each block's sum of q.
#pragma once
#include <stddef.h>
#include "cpu.h"

#define BLOCK 32
#define GROUP 4 // blocks whose sums share one i32x4

typedef short i16;
typedef int i32;

#ifdef RELAXED
#define I8_Q4 1 // q4 meets int8 activations (relaxed integer dot)
#else
#define I8_Q4 0
#endif

// Quantized rows: row r's values at q + r * K elements (i16, or i8 where `i8`), its block scales at s + r * nb and
// block sums at sum + r * nb (nb = K / 32).
typedef struct {
  const void *q;
  const float *s;
  const i32 *sum;
  size_t K;
  u32 i8;
} XQ;

// bytes that `rows` quantized rows of K values take (a buffer for quantize_rows)
static inline size_t xq_bytes(size_t rows, size_t K) { return rows * (K * 2 + (K / BLOCK) * 8) + 64; }

XQ xq_view(void *buf, size_t rows, size_t K, u32 dtype);
u32 u8_dot_on(void);
void quantize_rows(const float *x, size_t K, u32 dtype, XQ xq, size_t r0, size_t r1);
void qmatmul(u32 dtype, XQ xq, size_t M, const u8 *w, const float *s, float *y, size_t N, size_t n0, size_t n1,
             u32 mode);
void qgate_up(u32 dtype, XQ xq, size_t M, const u8 *wg, const float *sg, const u8 *wu, const float *su, float *y,
              size_t N, size_t n0, size_t n1);
