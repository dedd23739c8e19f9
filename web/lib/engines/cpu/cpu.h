// Shared definitions of the CPU engine's kernels (matmul.c, decoder.c, heads.c).
#pragma once
#include <wasm_simd128.h>

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
// An address as an integer: 32 bits in the default build (wasm32), 64 in the Memory64 build (wasm64, -DMEMORY64;
// build.py), where the engine's memory may pass 4 GiB. unsigned long is pointer-sized on both targets. Integers
// become pointers through `addr`, never u32; byte offsets that may pass 2^32 are computed in u64.
typedef unsigned long addr;
_Static_assert(sizeof(addr) == sizeof(void *), "addr is pointer-sized");

#define EXPORT __attribute__((visibility("default")))
enum { DT_F32 = 0, DT_Q8 = 1, DT_Q4 = 2 };
enum { MODE_STORE = 0, MODE_ADD = 1 };

// a*b + c: fused (relaxed SIMD) in the build that has it, else a multiply and an add
#ifdef RELAXED
#define MADD(a, b, c) wasm_f32x4_relaxed_madd(a, b, c)
#else
#define MADD(a, b, c) wasm_f32x4_add(wasm_f32x4_mul(a, b), c)
#endif

// exp(x) for float, no libm here: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6 minimax polynomial (the
// classic single-precision coefficients), 2^n put into the exponent bits. Relative error about 1e-7.
static inline float expf_(float x) {
  if (x > 88.3762626647949f) return __builtin_inff();
  if (x < -87.3365447505531f) return 0.0f;
  float n = __builtin_rintf(x * 1.44269504088896341f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float z = r * r;
  float p = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r
             + 1.6666665459e-1f) * r + 5.0000001201e-1f;
  p = p * z + r + 1.0f;
  union { u32 i; float f; } two = {(u32)((int)n + 127) << 23};
  return p * two.f;
}

void matmul(u32 dtype, const float *x, u32 M, u32 K, const u8 *w, const float *s, float *y, u32 N, u32 n0,
            u32 n1, u32 mode);
void gate_up(u32 dtype, const float *x, u32 M, u32 K, const u8 *wg, const float *sg, const u8 *wu,
             const float *su, float *y, u32 N, u32 n0, u32 n1);
