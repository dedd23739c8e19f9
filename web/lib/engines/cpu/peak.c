// The SIMD peak of this machine's WebAssembly engine, for the benchmark's "share of peak" (not part of the
// engine's kernels: build.py builds it alone as peak*.wasm). n iterations of CHAINS independent chains, each step
// feeding the instruction its own previous result (nothing loop-invariant for the compiler to hoist), so that the
// instruction's throughput, not its latency, bounds the time. The return value depends on every chain.
// Multiply-accumulates per iteration: i16 dot 8 CHAINS, i8 dot (relaxed) 16 CHAINS, f32 multiply-add 4 CHAINS.
#include "cpu.h"

#define CHAINS 12

// i32x4.dot_i16x8_s: the q8 kernels' product (8 multiply-accumulates)
EXPORT int peak_dot_i16(u32 n, int seed) {
  v128_t b = wasm_i16x8_splat(3), x[CHAINS];
  for (u32 c = 0; c < CHAINS; c++) x[c] = wasm_i16x8_splat((short)(seed + (int)c));
  for (u32 i = 0; i < n; i++)
    for (u32 c = 0; c < CHAINS; c++) x[c] = wasm_i32x4_dot_i16x8(x[c], b);
  v128_t s = x[0];
  for (u32 c = 1; c < CHAINS; c++) s = wasm_i32x4_add(s, x[c]);
  return wasm_i32x4_extract_lane(s, 0);
}

#ifdef RELAXED
// i32x4.relaxed_dot_i8x16_i7x16_add_s: the q4 kernels' product (16 multiply-accumulates, and the add)
EXPORT int peak_dot_i8(u32 n, int seed) {
  v128_t b = wasm_i8x16_splat(7), z = wasm_i32x4_splat(1), x[CHAINS];
  for (u32 c = 0; c < CHAINS; c++) x[c] = wasm_i8x16_splat((signed char)(seed + (int)c));
  for (u32 i = 0; i < n; i++)
    for (u32 c = 0; c < CHAINS; c++) x[c] = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x[c], b, z);
  v128_t s = x[0];
  for (u32 c = 1; c < CHAINS; c++) s = wasm_i32x4_add(s, x[c]);
  return wasm_i32x4_extract_lane(s, 0);
}
#endif

// f32x4 multiply-add (fused with relaxed SIMD, else a multiply and an add): the float kernels' step (4)
EXPORT float peak_fma(u32 n, float seed) {
  v128_t a = wasm_f32x4_splat(0.5f), b = wasm_f32x4_splat(0.999f), x[CHAINS];
  for (u32 c = 0; c < CHAINS; c++) x[c] = wasm_f32x4_splat(seed + (float)c);
  for (u32 i = 0; i < n; i++)
    for (u32 c = 0; c < CHAINS; c++) x[c] = MADD(x[c], b, a);
  v128_t s = x[0];
  for (u32 c = 1; c < CHAINS; c++) s = wasm_f32x4_add(s, x[c]);
  return wasm_f32x4_extract_lane(s, 0);
}
