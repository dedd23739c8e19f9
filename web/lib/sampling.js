// Seeded uniform draws, bit-identical to janusweb/sampling.py:
//   x = fmix32(seed * 0x9E3779B9 + index)  (uint32 arithmetic),  u = (x >> 8) / 2**24  in [0, 1).
// Every draw has 24 significant bits, so float32 holds it exactly. And the sampling rule of one row of logits
// (janusweb.sampling.sample), for chat tokens drawn on the CPU.

/** @param {number} x a uint32 */
function fmix32(x) {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b) >>> 0;
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * `count` draws in [0, 1) for `seed`, starting at draw number `offset`.
 * @param {number} seed an integer (any sign; taken modulo 2**32 like Python's `& 0xFFFFFFFF`)
 * @param {number} count
 * @param {number} [offset]
 * @returns {Float32Array<ArrayBuffer>}
 */
export function uniforms(seed, count, offset = 0) {
  const base = Number(BigInt.asUintN(32, BigInt(seed) * 0x9e3779b9n));
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    out[i] = (fmix32((base + offset + i) >>> 0) >>> 8) / 16777216;
  }
  return out;
}

/**
 * The draws of one image-generation run: row i holds the T draws of image i (draw number i*T + t), as the
 * Python reference reshapes `uniforms(seed, n*T)` to [n, T].
 * @param {number} seed
 * @param {number} images
 * @param {number} steps
 */
export function imageDraws(seed, images, steps) {
  return uniforms(seed, images * steps);
}

/**
 * One token from a row of logits, as janusweb.sampling.sample picks it: temperature 0 is the first maximum
 * (argmax); otherwise inverse-CDF sampling of softmax(logits / temperature) at the draw `u`, in float64: the
 * first index whose cumulative probability exceeds u times the total.
 * @param {ArrayLike<number>} logits
 * @param {number} u a draw in [0, 1)
 * @param {number} temperature
 */
export function sampleToken(logits, u, temperature) {
  const V = logits.length;
  let best = 0;
  for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
  if (temperature === 0) return best;
  const top = logits[best] / temperature;
  const cdf = new Float64Array(V);
  let total = 0;
  for (let i = 0; i < V; i++) {
    total += Math.exp(logits[i] / temperature - top);
    cdf[i] = total;
  }
  const threshold = u * total;
  let k = 0;
  while (k < V && cdf[k] <= threshold) k++;
  return Math.min(k, V - 1);
}
