// The per-token heads of the CPU engine around the decoder (model.js chains them; the big matrices go through
// matmul.c's `matmul` on every thread, the `HEAD` job of decoder.c): the token-embedding gather, a layer's bias and
// GELU, and the image step's sampling. Arithmetic as the graphs and janusweb/sampling.py do it:
//   embedding rows  fp32 copied; int8 / q4 (GatherBlockQuantized, MatMulNBits' row layout) (q - 128|8) * scale;
//   GELU            the exported graph's exact form in float: x * (0.5 * (1 + erf(x / 1.4142135))), erf in double;
//   CFG             uncond + g * (cond - uncond) in float (numpy on float32 logits);
//   sampling        in double, as sample(): z = cfg / temperature, p = exp(z - max), cdf = running sum, the token
//                   is the number of cdf entries <= u * cdf[-1] (at most V - 1); temperature <= 0: the first argmax.
#include "cpu.h"

#define BLOCK 32

// rows ids[0..M) of a [V, H] table into out [M, H]
EXPORT void embed_rows(u32 dtype, const u8 *table, const float *scales, const u32 *ids, u32 M, u32 H, float *out) {
  for (u32 m = 0; m < M; m++) {
    float *o = out + (u64)m * H;
    u64 row = ids[m];
    if (dtype == DT_F32) {
      const float *t = (const float *)table + row * H;
      for (u32 c = 0; c < H; c++) o[c] = t[c];
      continue;
    }
    const float *s = scales + row * (H / BLOCK);
    if (dtype == DT_Q8) {
      const u8 *q = table + row * H;
      for (u32 c = 0; c < H; c++) o[c] = (float)((int)q[c] - 128) * s[c / BLOCK];
    } else {
      const u8 *q = table + row * (H / 2);
      for (u32 c = 0; c < H; c++) o[c] = (float)((int)((q[c / 2] >> (4 * (c & 1))) & 15) - 8) * s[c / BLOCK];
    }
  }
}

// erf by its Taylor series in double (|x| < 4; beyond, erf is 1 in float): 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1))
static double erf_d(double x) {
  if (x >= 4) return 1;
  if (x <= -4) return -1;
  double x2 = x * x, term = x, sum = x;
  for (u32 n = 1; n < 200; n++) {
    term *= -x2 / n;
    double add = term / (2 * n + 1);
    sum += add;
    if ((double)n > x2 && __builtin_fabs(add) < 1e-17 * __builtin_fabs(sum)) break;
  }
  return sum * 1.1283791670955126;
}

// y[m, n] += b[n], then the exact GELU where gelu != 0, for rows [0, M) of y [M, N]
EXPORT void bias_act(float *y, const float *b, u32 M, u32 N, u32 gelu) {
  for (u32 m = 0; m < M; m++) {
    float *row = y + (u64)m * N;
    for (u32 n = 0; n < N; n++) {
      float x = row[n] + b[n];
      if (gelu) {
        float e = (float)erf_d((double)(x / 1.41421353816986083984375f));
        x = x * (0.5f * (e + 1.0f));
      }
      row[n] = x;
    }
  }
}

// e^x in double for x <= 0: x = n ln2 + r, e^r by its Taylor series to degree 13 (|r| <= ln2/2), 2^n by exponent
static double exp_d(double x) {
  if (x < -745.2) return 0;
  double n = __builtin_rint(x * 1.4426950408889634);
  double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  double p = 1, term = 1;
  for (u32 k = 1; k <= 13; k++) {
    term *= r / k;
    p += term;
  }
  int e = (int)n;
  if (e < -1000) {  // a subnormal result: two steps
    union { u64 i; double d; } lo = {(u64)(1023 - 600) << 52};
    p *= lo.d;
    e += 600;
  }
  union { u64 i; double d; } two = {(u64)(e + 1023) << 52};
  return p * two.d;
}

// One image step's tokens: logits [2n, V] (rows [0, n) conditional, [n, 2n) unconditional), draws u[n] ->
// tokens[n]. z: scratch of V floats, p: of V doubles.
EXPORT void cfg_sample(const float *logits, u32 n, u32 V, float guidance, float temperature, const float *u,
                       u32 *tokens, float *z, double *p) {
  for (u32 i = 0; i < n; i++) {
    const float *c = logits + (u64)i * V, *un = logits + (u64)(n + i) * V;
    u32 best = 0;
    for (u32 j = 0; j < V; j++) {
      z[j] = un[j] + guidance * (c[j] - un[j]);
      if (z[j] > z[best]) best = j;
    }
    if (temperature <= 0) {
      tokens[i] = best;
      continue;
    }
    double t = (double)temperature, top = (double)z[best] / t, total = 0;
    for (u32 j = 0; j < V; j++) total = p[j] = total + exp_d((double)z[j] / t - top);
    double threshold = (double)u[i] * total;
    u32 count = 0;
    while (count < V && p[count] <= threshold) count++;
    tokens[i] = count < V - 1 ? count : V - 1;
  }
}
