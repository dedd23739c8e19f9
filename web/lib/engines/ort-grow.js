// ORT growing cache: language_model.onnx, any backend. Each step feeds the cache as past_key_values.* and takes
// back present.* one position longer, as new tensors (WASM, or WebGPU with a bundle that lacks the fused graph).

import * as ort from 'onnxruntime-web/webgpu';
import { dispose, int64, kvNames } from '../tensors.js';

/** @typedef {import('./engine.js').KVCache} KVCacheType */

/** @typedef {import('./engine.js').Dims} Dims */

/** @implements {KVCacheType} */
export class GrowingCache {
  /** @param {ort.InferenceSession} session language_model @param {Dims} d @param {number} rows */
  constructor(session, d, rows) {
    this.session = session;
    this.names = kvNames(d);
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

/** @type {import('./engine.js').EngineSpec} */
export const engine = {
  name: 'ort-grow',
  label: 'KV cache grown per step (language_model)',
  auto: 2,
  unsupported: () => null,
  plan: (manifest, dtype) => ({ graphs: { language_model: dtype } }),
  create: async ({ sessions, dims }) => ({
    kvCache: 'language_model: grown per step',
    newCache: (rows) => new GrowingCache(sessions.language_model, dims, rows),
    release: () => undefined,
  }),
};
