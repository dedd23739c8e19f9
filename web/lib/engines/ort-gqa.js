// ORT fused GQA: language_model_gqa.onnx (GroupQueryAttention), WebGPU. One GPU buffer per key/value tensor,
// [rows, kv_heads, capacity, head_dim], allocated once per request and bound in place as both past and present,
// so nothing is reallocated or copied per step. The graph takes no position ids: the attention mask
// [rows, capacity] (int32, ones over the filled positions) gives each row its length. The mask is a CPU tensor and
// its three arithmetic nodes run on the CPU EP (sessions.js), so GroupQueryAttention gets its sequence lengths
// without any GPU->CPU read.

import * as ort from 'onnxruntime-web/webgpu';
import { hasDtype } from '../dtypes.js';
import { dispose, gpuTensor, kvNames, slicePositions } from '../tensors.js';

/** @typedef {import('./engine.js').KVCache} KVCacheType */

export const FUSED = 'language_model_gqa';

// onnxruntime-web 1.30's WebGPU GroupQueryAttention gets attention wrong for 32 or more new positions in one call
// (from the fifth position on; measured on SwiftShader with head sizes 16 and 128), and is exact for 31 or fewer,
// with or without a past; with a past and more than one row it takes one position per call. Longer prompts go
// in chunks: PREFILL_CHUNK positions, then (several rows) one at a time.
const PREFILL_CHUNK = 16;

/** @implements {KVCacheType} */
export class BoundCache {
  /**
   * @param {ort.InferenceSession} session language_model_gqa
   * @param {import('./engine.js').Dims} d
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
    this.names = kvNames(d);
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

/** @type {import('./engine.js').EngineSpec} */
export const engine = {
  name: 'ort-gqa',
  label: `KV cache bound in place (${FUSED})`,
  auto: 1,
  unsupported: (backend) => (backend.ep === 'webgpu' ? null : `${FUSED} needs WebGPU`),
  plan: (manifest, dtype) => {
    if (!manifest.graphs[FUSED]) return `the bundle has no ${FUSED}`;
    if (!hasDtype(manifest, FUSED, dtype)) return `the bundle has no ${dtype} variant of ${FUSED}`;
    return { graphs: { [FUSED]: dtype } };
  },
  create: async ({ sessions, dims, device }) => ({
    kvCache: `${FUSED}: bound in place, fixed capacity`,
    newCache: (rows, capacity) => new BoundCache(sessions[FUSED], dims, /** @type {GPUDevice} */ (device), rows,
      capacity),
    release: () => undefined,
  }),
};
