// The language model's KV cache, held two ways behind one interface (`step`, `release`):
// - GrowingCache runs language_model.onnx: each step feeds the cache as past_key_values.* and takes back
//   present.* one position longer, as new tensors (WASM, or WebGPU with a bundle that lacks the fused graph).
// - BoundCache runs language_model_gqa.onnx (GroupQueryAttention): one GPU buffer per key/value tensor,
//   [rows, kv_heads, capacity, head_dim], allocated once per request and bound in place as both past and present,
//   so nothing is reallocated or copied per step. The graph takes no position ids: the attention mask
//   [rows, capacity] (int32, ones over the filled positions) gives each row its length. The mask is a CPU
//   tensor and its three arithmetic nodes run on the CPU EP, so GroupQueryAttention gets its sequence lengths
//   without any GPU->CPU read.

import * as ort from 'onnxruntime-web/webgpu';
import { dispose, gpuTensor, int64, slicePositions } from './tensors.js';

/** @typedef {import('./generate.js').Dims} Dims */

/**
 * @typedef {object} KVCache
 * @property {(embeds: ort.Tensor) => Promise<ort.Tensor>} step embeds [rows,S,H] -> hidden states [rows,S',H] of
 *   the last S' <= S positions (S' >= 1; the caller disposes them)
 * @property {() => void} release
 */

/** @param {Dims} d @returns {string[]} the cache's tensor names, past_key_values.{i}.{key,value} */
function cacheNames(d) {
  const names = [];
  for (let i = 0; i < d.num_layers; i++) for (const k of ['key', 'value']) names.push(`${i}.${k}`);
  return names;
}

export class GrowingCache {
  /** @param {ort.InferenceSession} session language_model @param {Dims} d @param {number} rows */
  constructor(session, d, rows) {
    this.session = session;
    this.names = cacheNames(d);
    this.length = 0;
    const dims = [rows, d.num_key_value_heads, 0, d.head_dim];
    /** @type {Record<string, ort.Tensor>} */
    this.past = Object.fromEntries(this.names.map((n) => [`past_key_values.${n}`,
      new ort.Tensor('float32', new Float32Array(0), dims)]));
  }

  /** @param {ort.Tensor} embeds */
  async step(embeds) {
    const [B, S] = embeds.dims;
    const total = this.length + S;
    const positions = [];
    for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) positions.push(this.length + s);
    const out = await this.session.run({
      inputs_embeds: embeds, attention_mask: int64(new Array(B * total).fill(1), [B, total]),
      position_ids: int64(positions, [B, S]), ...this.past,
    });
    Object.values(this.past).forEach(dispose);
    this.past = Object.fromEntries(this.names.map((n) => [`past_key_values.${n}`, out[`present.${n}`]]));
    this.length = total;
    return out.hidden_states;
  }

  release() {
    Object.values(this.past).forEach(dispose);
  }
}

// onnxruntime-web 1.30's WebGPU GroupQueryAttention gets attention wrong for 32 or more new positions in one call
// (from the fifth position on; measured on SwiftShader with head sizes 16 and 128), and is exact for 31 or fewer,
// with or without a past; with a past and more than one row it takes one position per call. Longer prompts go
// in chunks: PREFILL_CHUNK positions, then (several rows) one at a time.
const PREFILL_CHUNK = 16;

export class BoundCache {
  /**
   * @param {ort.InferenceSession} session language_model_gqa
   * @param {Dims} d
   * @param {GPUDevice} device the device ONNX Runtime runs on (the cache's buffers are allocated there)
   * @param {number} rows
   * @param {number} capacity positions: prompt plus every token the request may add
   */
  constructor(session, d, device, rows, capacity) {
    this.session = session;
    this.device = device;
    this.rows = rows;
    this.capacity = capacity;
    this.length = 0;
    this.names = cacheNames(d);
    const dims = [rows, d.num_key_value_heads, capacity, d.head_dim];
    /** @type {Record<string, ort.Tensor>} */
    this.buffers = Object.fromEntries(this.names.map((n) => [n, gpuTensor(device, 'float32', dims)]));
    this.mask = new Int32Array(rows * capacity);
  }

  /** @param {ort.Tensor} embeds */
  async step(embeds) {
    const [B, S] = embeds.dims;
    if (B !== this.rows) throw new Error(`the KV cache holds ${this.rows} rows; this step has ${B}`);
    if (this.length + S > this.capacity) {
      throw new Error(`the KV cache holds ${this.capacity} positions; this step needs ${this.length + S}`);
    }
    if (S <= PREFILL_CHUNK) return this.run(embeds);
    /** @type {ort.Tensor|undefined} */
    let hidden;
    for (let start = 0; start < S;) {
      const size = this.length === 0 || B === 1 ? Math.min(PREFILL_CHUNK, S - start) : 1;
      const part = slicePositions(this.device, embeds, start, size);
      start += size;
      dispose(hidden);
      hidden = await this.run(part);
      dispose(part);
    }
    return /** @type {ort.Tensor} */ (hidden);
  }

  /** One call of the graph on embeds [rows,S,H], S <= PREFILL_CHUNK. @param {ort.Tensor} embeds */
  async run(embeds) {
    const [B, S] = embeds.dims;
    for (let b = 0; b < B; b++) this.mask.fill(1, b * this.capacity + this.length, b * this.capacity + this.length + S);
    /** @type {Record<string, ort.Tensor>} */
    const feeds = { inputs_embeds: embeds, attention_mask: new ort.Tensor('int32', this.mask, [B, this.capacity]) };
    /** @type {Record<string, ort.Tensor|null>} */
    const fetches = { hidden_states: null };
    for (const n of this.names) {
      feeds[`past_key_values.${n}`] = this.buffers[n];
      fetches[`present.${n}`] = this.buffers[n]; // the same buffer: GroupQueryAttention writes in place
    }
    const out = await this.session.run(feeds, /** @type {any} */ (fetches));
    this.length += S;
    return out.hidden_states;
  }

  release() {
    Object.values(this.buffers).forEach(dispose);
  }
}
