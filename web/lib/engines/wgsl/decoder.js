// The language model's decoder layers on the page's own WGSL kernels (kernels.js), on ONNX Runtime's GPUDevice:
// it takes the embeddings ONNX Runtime's graphs write and gives back hidden states they read, as GPU buffers.
// The weights come from a WGSL pack (janusweb pack wgsl: the fused graph's own int8 or 4-bit blocks and scales,
// or its fp32 weights), uploaded once, tensor by tensor from the pack's parts (upload). A WgslCache is the KVCache of one request (kv-cache.js's interface): KV buffers
// [rows, kv_heads, capacity, head_dim] per layer, activations for up to MAX_TOKENS tokens per call, and one
// command buffer per call: 8 dispatches per layer and the final norm, no GPU->CPU read.

import { dispose, gpuTensor } from '../../tensors.js';
import { ATTENTION, MATMUL_COLUMNS, matmulSource, RMSNORM, ROPE_KV, SMALL_THREADS } from './kernels.js';

/** @typedef {import('../engine.js').KVCache} KVCacheType */

/**
 * @typedef {object} PackDesc the pack's JSON (pack/wgsl.py)
 * @property {'fp32'|'int8'|'q4'} dtype
 * @property {number} hidden_size
 * @property {number} intermediate_size
 * @property {number} num_layers
 * @property {number} num_heads
 * @property {number} num_key_value_heads
 * @property {number} head_dim
 * @property {number} epsilon
 * @property {number} scale
 * @property {number} max_positions
 * @property {number|null} block_size
 * @property {Record<string, {part: number, offset: number, bytes: number, shape: number[]}>} tensors
 */

/** Tokens (rows x positions) per call: longer prompts go in several calls. */
const MAX_TOKENS = 256;
const STORAGE = typeof GPUBufferUsage === 'undefined' ? 0
  : GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const LAYER_WEIGHTS = ['ln1', 'qkv', 'o', 'ln2', 'gate', 'up', 'down'];

/** @param {number} n @param {number} k */
const groups = (n, k) => Math.ceil(n / k);

export class WgslDecoder {
  /**
   * @param {GPUDevice} device ONNX Runtime's device (ort.env.webgpu.device)
   * @param {PackDesc} desc its tensors' buffers are made here and filled by upload()
   */
  constructor(device, desc) {
    const d = desc;
    if (d.head_dim > 256 || d.hidden_size % 4 || d.intermediate_size % 4) {
      throw new Error(`WGSL kernels take head_dim <= 256 and sizes that are multiples of 4 (pack: ${d.head_dim}, `
        + `${d.hidden_size}, ${d.intermediate_size})`);
    }
    this.device = device;
    this.desc = d;
    /** @type {Record<string, GPUBuffer>} */
    this.weights = {};
    for (const [name, t] of Object.entries(d.tensors)) {
      this.weights[name] = device.createBuffer({ label: name, size: Math.max(16, t.bytes), usage: STORAGE });
    }
    const H = d.hidden_size, NH = d.num_heads, KVH = d.num_key_value_heads, HD = d.head_dim;
    const dt = d.dtype;
    /** @type {Record<string, number>} */
    const block = dt === 'fp32' ? {} : { BLOCK: /** @type {number} */ (d.block_size) };
    /** @param {string} code @param {Record<string, number>} constants */
    const pipeline = (code, constants) => device.createComputePipeline({ layout: 'auto',
      compute: { module: device.createShaderModule({ code }), entryPoint: 'main', constants } });
    const heads = { NH, KVH, HD };
    this.pipelines = {
      norm: pipeline(RMSNORM, { H, EPS: d.epsilon }),
      qkv: pipeline(matmulSource(dt, 'store'), { K: H, N: (NH + 2 * KVH) * HD, ...block }),
      rope: pipeline(ROPE_KV, heads),
      attention: pipeline(ATTENTION, { ...heads, SCALE: d.scale }),
      o: pipeline(matmulSource(dt, 'add'), { K: NH * HD, N: H, ...block }),
      gateUp: pipeline(matmulSource(dt, 'gate_up'), { K: H, N: d.intermediate_size, ...block }),
      down: pipeline(matmulSource(dt, 'add'), { K: d.intermediate_size, N: H, ...block }),
    };
  }

  /** One tensor's bytes (from the part of the pack that holds it) into its buffer. @param {string} name @param {Uint8Array} bytes */
  upload(name, bytes) {
    const t = this.desc.tensors[name];
    if (!t || bytes.length !== t.bytes) throw new Error(`the WGSL pack's ${name}: ${bytes.length} bytes, its JSON says ${t?.bytes}`);
    this.device.queue.writeBuffer(this.weights[name], 0, /** @type {Uint8Array<ArrayBuffer>} */ (bytes));
  }

  /** @param {string} name @returns {GPUBuffer[]} the weight, and its scales when quantized */
  matrix(name) {
    return this.desc.dtype === 'fp32' ? [this.weights[name]] : [this.weights[name], this.weights[`${name}.scales`]];
  }

  /** @param {number} rows @param {number} capacity */
  newCache(rows, capacity) {
    return new WgslCache(this, rows, capacity);
  }

  release() {
    Object.values(this.weights).forEach((b) => b.destroy());
  }
}

/** @implements {KVCacheType} */
export class WgslCache {
  /** @param {WgslDecoder} dec @param {number} rows @param {number} capacity */
  constructor(dec, rows, capacity) {
    const d = dec.desc, dev = dec.device;
    if (capacity > d.max_positions) {
      throw new Error(`${capacity} positions exceed the model's ${d.max_positions} (rotary table of the WGSL pack)`);
    }
    this.dec = dec;
    this.rows = rows;
    this.capacity = capacity;
    this.length = 0;
    this.chunk = Math.max(1, Math.floor(MAX_TOKENS / rows));
    const M = rows * this.chunk, H = d.hidden_size, NH = d.num_heads, HD = d.head_dim;
    const QKV = (NH + 2 * d.num_key_value_heads) * HD;
    /** @param {string} label @param {number} floats */
    const buffer = (label, floats) => dev.createBuffer({ label, size: Math.max(16, floats * 4), usage: STORAGE });
    this.params = dev.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    const kvFloats = rows * d.num_key_value_heads * capacity * HD;
    this.act = { x: buffer('x', M * H), h: buffer('h', M * H), qkv: buffer('qkv', M * QKV), q: buffer('q', M * NH * HD),
      a: buffer('a', M * NH * HD), f: buffer('f', M * d.intermediate_size), scores: buffer('scores', M * NH * capacity) };
    this.kv = Array.from({ length: d.num_layers }, (_, i) => [buffer(`k${i}`, kvFloats), buffer(`v${i}`, kvFloats)]);
    const p = dec.pipelines, w = dec.weights, a = this.act;
    /** @param {GPUComputePipeline} pipe @param {GPUBuffer[]} buffers its bindings 0, 1, ... */
    this.bind = (pipe, buffers) => dev.createBindGroup({ layout: pipe.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })) });
    const P = this.params;
    this.layers = this.kv.map(([k, v], i) => ({
      norm1: this.bind(p.norm, [a.x, w[`layers.${i}.ln1`], a.h]),
      qkv: this.bind(p.qkv, [P, a.h, a.qkv, ...dec.matrix(`layers.${i}.qkv`)]),
      rope: this.bind(p.rope, [P, a.qkv, w.cos, w.sin, a.q, k, v]),
      attention: this.bind(p.attention, [P, a.q, k, v, a.scores, a.a]),
      o: this.bind(p.o, [P, a.a, a.x, ...dec.matrix(`layers.${i}.o`)]),
      norm2: this.bind(p.norm, [a.x, w[`layers.${i}.ln2`], a.h]),
      gateUp: this.bind(p.gateUp, [P, a.h, a.f, ...dec.matrix(`layers.${i}.gate`), ...dec.matrix(`layers.${i}.up`)]),
      down: this.bind(p.down, [P, a.f, a.x, ...dec.matrix(`layers.${i}.down`)]),
    }));
  }

  /** @param {import('onnxruntime-web/webgpu').Tensor} embeds [rows, S, H] */
  async step(embeds) {
    const [B, S] = embeds.dims;
    if (B !== this.rows) throw new Error(`the KV cache holds ${this.rows} rows; this step has ${B}`);
    if (this.length + S > this.capacity) {
      throw new Error(`the KV cache holds ${this.capacity} positions; this step needs ${this.length + S}`);
    }
    const dev = this.dec.device;
    const first = this.length === 0; // the first call of a request is checked for WebGPU validation errors
    if (first) dev.pushErrorScope('validation');
    /** @type {import('onnxruntime-web/webgpu').Tensor|undefined} */
    let hidden;
    for (let start = 0; start < S; start += this.chunk) {
      dispose(hidden);
      hidden = this.run(embeds, start, Math.min(this.chunk, S - start));
    }
    const error = first ? await dev.popErrorScope() : null;
    if (error) {
      dispose(hidden);
      throw new Error(`WGSL decoder: ${error.message.split('\n')[0]}`);
    }
    return /** @type {import('onnxruntime-web/webgpu').Tensor} */ (hidden);
  }

  /**
   * Positions [start, start + P) of every row through all layers; returns their final-norm hidden states.
   * @param {import('onnxruntime-web/webgpu').Tensor} embeds
   * @param {number} start
   * @param {number} P
   */
  run(embeds, start, P) {
    const { device: dev, desc: d, pipelines: p } = this.dec;
    const [B, S, H] = embeds.dims;
    const M = B * P, NH = d.num_heads, QKV = (NH + 2 * d.num_key_value_heads) * d.head_dim;
    dev.queue.writeBuffer(this.params, 0, Uint32Array.of(M, P, this.length, this.capacity));
    const out = gpuTensor(dev, 'float32', [B, P, H]);
    const encoder = dev.createCommandEncoder();
    for (let b = 0; b < B; b++) {
      const from = (b * S + start) * H * 4, to = b * P * H * 4, bytes = P * H * 4;
      if (embeds.location === 'gpu-buffer') encoder.copyBufferToBuffer(embeds.gpuBuffer, from, this.act.x, to, bytes);
      else dev.queue.writeBuffer(this.act.x, to, /** @type {Float32Array<ArrayBuffer>} */ (embeds.data), from / 4, P * H);
    }
    const pass = encoder.beginComputePass();
    /** @param {GPUComputePipeline} pipe @param {GPUBindGroup} group @param {number} n */
    const run = (pipe, group, n) => {
      pass.setPipeline(pipe);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(n);
    };
    for (const l of this.layers) {
      run(p.norm, l.norm1, M);
      run(p.qkv, l.qkv, groups(QKV, MATMUL_COLUMNS));
      run(p.rope, l.rope, groups(M * QKV, SMALL_THREADS));
      run(p.attention, l.attention, M * NH);
      run(p.o, l.o, groups(H, MATMUL_COLUMNS));
      run(p.norm, l.norm2, M);
      run(p.gateUp, l.gateUp, groups(d.intermediate_size, MATMUL_COLUMNS));
      run(p.down, l.down, groups(H, MATMUL_COLUMNS));
    }
    run(p.norm, this.bind(p.norm, [this.act.x, this.dec.weights.final_norm, out.gpuBuffer]), M);
    pass.end();
    dev.queue.submit([encoder.finish()]);
    this.length += P;
    return out;
  }

  release() {
    [...Object.values(this.act), ...this.kv.flat(), this.params].forEach((b) => b.destroy());
  }
}
