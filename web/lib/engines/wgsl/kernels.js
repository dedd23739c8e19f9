// WGSL sources of the decoder's kernels (see decoder.js for how they are chained). Shapes that are fixed per
// model come in as pipeline-overridable constants; what changes per call (rows, positions, past length) comes in
// the uniform `p`. Token m of a call is row m / p.P, position p.past + m % p.P.

const PARAMS = `struct Params { M: u32, P: u32, past: u32, capacity: u32 }
@group(0) @binding(0) var<uniform> p: Params;`;
// the attention shape: query heads, key/value heads, head size
const HEADS = `override NH: u32;
override KVH: u32;
override HD: u32;`;

/** Workgroup size of the matrix kernels, and the lanes that share one output column. */
export const MATMUL_THREADS = 256;
const LANES = 32;
/** Output columns per workgroup of the matrix kernels. */
export const MATMUL_COLUMNS = MATMUL_THREADS / LANES;
/** Threads per workgroup of the element-wise (rope) and attention kernels. */
export const SMALL_THREADS = 64;

/**
 * The weight formats of the matrix kernels: weights per vec4<u32>/vec4<f32> unit of a row, and the x vec4s it
 * spans. int8: MatMulNBits' bytes, value (q - 128) * scale; q4: its nibbles (low nibble first), value
 * (q - 8) * scale; one scale per BLOCK weights of a row (BLOCK a multiple of the unit).
 */
const FORMATS = { fp32: { unit: 4, quantized: false }, int8: { unit: 16, quantized: true },
  q4: { unit: 32, quantized: true } };

/**
 * y[M,N] = x[M,K] . W^T with W [N,K] (one output per row), for a few rows M (decode: M = rows of the batch).
 * Each workgroup computes MATMUL_COLUMNS outputs; the 32 lanes of an output read its row of W 16 bytes at a time
 * (4 fp32, 16 int8 or 32 4-bit weights, dequantized in registers), contiguous across lanes, and reduce in
 * workgroup memory. 4 rows of x per pass. mode 'store': y = xW; 'add': y += xW (the residual stream);
 * 'gate_up': y = silu(x Wg) * (x Wu). Bindings: 1 x, 2 y, then each weight (quantized: the bytes, then the scales).
 * @param {'fp32'|'int8'|'q4'} dtype
 * @param {'store'|'add'|'gate_up'} mode
 */
export function matmulSource(dtype, mode) {
  const f = FORMATS[dtype];
  if (!f) throw new Error(`WGSL kernels take fp32, int8 or q4 weights, not ${dtype}`);
  const ws = mode === 'gate_up' ? [0, 1] : [0];
  const decl = (/** @type {number} */ i) => (f.quantized ? `
@group(0) @binding(${3 + 2 * i}) var<storage, read> w${i}: array<vec4<u32>>;
@group(0) @binding(${4 + 2 * i}) var<storage, read> s${i}: array<f32>;` : `
@group(0) @binding(${3 + i}) var<storage, read> w${i}: array<vec4<f32>>;`);
  // one unit of a weight row; xb = the unit's first vec4 of x
  const load = (/** @type {number} */ i) => (f.quantized
    ? `let q${i} = w${i}[row * (K / ${f.unit}u) + i]; let sc${i} = s${i}[row * (K / BLOCK) + (i * ${f.unit}u) / BLOCK];`
    : `let v${i} = w${i}[row * K4 + i];`);
  const lanes = ['x', 'y', 'z', 'w'];
  const dotUnit = (/** @type {number} */ i) => {
    if (!f.quantized) return `dot(v${i}, x[xb])`;
    const terms = dtype === 'int8'
      ? lanes.map((c, j) => `dot(bytes4(q${i}.${c}), x[xb + ${j}u])`)
      : lanes.flatMap((c, j) => [`dot(nibbles4(q${i}.${c}), x[xb + ${2 * j}u])`,
        `dot(nibbles4(q${i}.${c} >> 16u), x[xb + ${2 * j + 1}u])`]);
    return `sc${i} * (${terms.join(' + ')})`;
  };
  const out = { store: 'part0[t][r]', add: 'y[o] + part0[t][r]',
    gate_up: 'part0[t][r] / (1.0 + exp(-part0[t][r])) * part1[t][r]' }[mode];
  return `${PARAMS}
override K: u32;
override N: u32;
override BLOCK: u32 = 32u;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${ws.map(decl).join('')}
${ws.map((i) => `var<workgroup> part${i}: array<vec4<f32>, ${MATMUL_THREADS}>;`).join('\n')}

fn bytes4(u: u32) -> vec4<f32> {
  return vec4<f32>(f32(u & 255u), f32((u >> 8u) & 255u), f32((u >> 16u) & 255u), f32(u >> 24u)) - 128.0;
}

// the low 4 nibbles of u, lowest first
fn nibbles4(u: u32) -> vec4<f32> {
  return vec4<f32>(f32(u & 15u), f32((u >> 4u) & 15u), f32((u >> 8u) & 15u), f32((u >> 12u) & 15u)) - 8.0;
}

@compute @workgroup_size(${MATMUL_THREADS})
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>) {
  let lane = t % ${LANES}u;
  let n = g.x * ${MATMUL_COLUMNS}u + t / ${LANES}u;
  let row = min(n, N - 1u);
  let K4 = K / 4u;
  for (var m0 = 0u; m0 < p.M; m0 += 4u) {
    ${ws.map((i) => `var a${i} = vec4<f32>(0.0);`).join(' ')}
    for (var i = lane; i < K / ${f.unit}u; i += ${LANES}u) {
      ${ws.map(load).join(' ')}
      for (var r = 0u; r < 4u; r++) {
        if (m0 + r < p.M) {
          let xb = (m0 + r) * K4 + ${f.unit / 4}u * i;
          ${ws.map((i) => `a${i}[r] += ${dotUnit(i)};`).join('\n          ')}
        }
      }
    }
    ${ws.map((i) => `part${i}[t] = a${i};`).join(' ')}
    workgroupBarrier();
    for (var off = ${LANES / 2}u; off > 0u; off >>= 1u) {
      if (lane < off) {
        ${ws.map((i) => `part${i}[t] += part${i}[t + off];`).join(' ')}
      }
      workgroupBarrier();
    }
    if (lane == 0u && n < N) {
      for (var r = 0u; r < 4u; r++) {
        if (m0 + r < p.M) {
          let o = (m0 + r) * N + n;
          y[o] = ${out};
        }
      }
    }
    workgroupBarrier();
  }
}`;
}

/**
 * RMS norm, one workgroup per token: y = x / sqrt(mean(x^2) + EPS) * w (SimplifiedLayerNormalization). It needs no
 * per-call numbers (the token is the workgroup), so its bindings start at 0: x, w, y.
 */
export const RMSNORM = `
override H: u32;
override EPS: f32;
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>) {
  let base = g.x * H;
  var s = 0.0;
  for (var i = t; i < H; i += 256u) { let v = x[base + i]; s += v * v; }
  red[t] = s;
  workgroupBarrier();
  for (var off = 128u; off > 0u; off >>= 1u) {
    if (t < off) { red[t] += red[t + off]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(red[0] / f32(H) + EPS);
  for (var i = t; i < H; i += 256u) { y[base + i] = x[base + i] * inv * w[i]; }
}`;

/**
 * Rotary embedding (rotate-half, GroupQueryAttention's do_rotary with rotary_interleaved=0) of the packed qkv
 * [M, (NH + 2 KVH) HD]: q goes to q [M, NH HD]; k and v are written into the KV cache [rows, KVH, capacity, HD]
 * at their positions. One thread per element.
 */
export const ROPE_KV = `${PARAMS}
${HEADS}
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> cosT: array<f32>;
@group(0) @binding(3) var<storage, read> sinT: array<f32>;
@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<storage, read_write> kc: array<f32>;
@group(0) @binding(6) var<storage, read_write> vc: array<f32>;

@compute @workgroup_size(${SMALL_THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let heads = NH + 2u * KVH;
  let idx = id.x;
  if (idx >= p.M * heads * HD) { return; }
  let d = idx % HD;
  let head = (idx / HD) % heads;
  let m = idx / (HD * heads);
  let r = m / p.P;
  let pos = p.past + m % p.P;
  let src = (m * heads + head) * HD;
  if (head >= NH + KVH) {
    vc[((r * KVH + head - NH - KVH) * p.capacity + pos) * HD + d] = qkv[src + d];
    return;
  }
  let half = HD / 2u;
  var v: f32;
  if (d < half) {
    v = qkv[src + d] * cosT[pos * half + d] - qkv[src + d + half] * sinT[pos * half + d];
  } else {
    let e = d - half;
    v = qkv[src + d] * cosT[pos * half + e] + qkv[src + e] * sinT[pos * half + e];
  }
  if (head < NH) {
    q[(m * NH + head) * HD + d] = v;
  } else {
    kc[((r * KVH + head - NH) * p.capacity + pos) * HD + d] = v;
  }
}`;

/**
 * Causal attention over the KV cache, one workgroup per (token, head): scores of the keys up to the token's
 * position (kept in a scratch buffer [M, NH, capacity]), softmax, weighted sum of the values. Query heads share
 * key/value heads in groups of NH / KVH.
 */
export const ATTENTION = `${PARAMS}
${HEADS}
override SCALE: f32;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
var<workgroup> qs: array<f32, 256>;
var<workgroup> red: array<f32, ${SMALL_THREADS}>;

fn reduce(t: u32, v: f32, is_max: bool) -> f32 {
  red[t] = v;
  workgroupBarrier();
  for (var off = ${SMALL_THREADS / 2}u; off > 0u; off >>= 1u) {
    if (t < off) { red[t] = select(red[t] + red[t + off], max(red[t], red[t + off]), is_max); }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(${SMALL_THREADS})
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>) {
  let m = g.x / NH;
  let h = g.x % NH;
  let r = m / p.P;
  let pos = p.past + m % p.P;
  let kv = (r * KVH + h / (NH / KVH)) * p.capacity * HD;
  let sb = (m * NH + h) * p.capacity;
  for (var d = t; d < HD; d += ${SMALL_THREADS}u) { qs[d] = q[(m * NH + h) * HD + d]; }
  workgroupBarrier();
  var mx = -3.0e38;
  for (var j = t; j <= pos; j += ${SMALL_THREADS}u) {
    var s = 0.0;
    for (var d = 0u; d < HD; d++) { s += qs[d] * kc[kv + j * HD + d]; }
    s *= SCALE;
    scores[sb + j] = s;
    mx = max(mx, s);
  }
  let top = reduce(t, mx, true);
  var sum = 0.0;
  for (var j = t; j <= pos; j += ${SMALL_THREADS}u) {
    let e = exp(scores[sb + j] - top);
    scores[sb + j] = e;
    sum += e;
  }
  let total = reduce(t, sum, false);
  storageBarrier();
  for (var d = t; d < HD; d += ${SMALL_THREADS}u) {
    var acc = 0.0;
    for (var j = 0u; j <= pos; j++) { acc += scores[sb + j] * vc[kv + j * HD + d]; }
    out[(m * NH + h) * HD + d] = acc / total;
  }
}`;
