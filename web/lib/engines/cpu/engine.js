// CPU: the model on the page's own WebAssembly SIMD kernels (this folder), WASM, from the bundle's CPU pack (janusweb
// pack cpu: the weights of the fused graph, lm_head, the token table, gen_head, gen_img_embeds, the vision tower
// and the VQ decoder): a prompt's embeddings (tokens, and an image's features: the vision tower), the decoder
// layers, lm_head, the image step and the image's pixels (the VQ decoder), in the engine's own memory (not ONNX
// Runtime's heap), threads as Web Workers sharing it when the page is cross-origin isolated; a 64-bit memory (the
// kernels' Memory64 build) where a 32-bit one cannot hold the model and the browser runs it (memory64.js). No ONNX
// Runtime session is made.

import * as ort from 'onnxruntime-web/webgpu';
import { CpuModel, memoryNeeded } from './model.js';
import { addressWidth, packRefusal } from './memory64.js';
import { CpuRuntime, hasRelaxedSimd, kernelsFile } from './runtime.js';
import { BackendError, InputError } from '../../errors.js';
import { partsNote, staleFormat } from '../packs.js';

/** @typedef {import('../engine.js').KVCache} KVCacheType */

/**
 * Threads 1..n-1 of the engine: module Web Workers running thread.js over the shared memory.
 * @param {URL} base where the kernels (*.wasm) and thread.js are served (the `assets` option's cpu/)
 */
const spawner = (base) => (/** @type {number} */ _t, /** @type {object} */ init) => new Promise((resolve, reject) => {
  const w = new Worker(new URL('thread.js', base), { type: 'module' });
  w.onmessage = () => resolve(w);
  w.onerror = (e) => reject(new Error(`CPU engine thread: ${e.message}`));
  w.postMessage(init);
});

/** @implements {KVCacheType} */
class CpuCache {
  /** @param {import('./model.js').CpuState} state @param {number} H */
  constructor(state, H) {
    this.state = state;
    this.H = H;
  }

  /** @param {ort.Tensor} embeds [rows, S, H] */
  async step(embeds) {
    const [B, S] = embeds.dims;
    if (B !== this.state.rows) throw new Error(`the KV cache holds ${this.state.rows} rows; this step has ${B}`);
    const { hidden, positions } = this.state.forward(/** @type {Float32Array} */ (await embeds.getData()), S);
    return new ort.Tensor('float32', hidden, [B, positions, this.H]);
  }

  release() {
    this.state.release();
  }
}

/** The pack's parts made from other graphs than the fused one, each with its source's name and sha256. */
const SOURCES = ['lm_head', 'embed_tokens', 'gen_head', 'gen_img_embeds', 'vision', 'vq'];

/**
 * The image loop's sampler on the CPU heads: the drawn tokens stay in a JS array.
 * @param {import('./heads.js').CpuHeads} heads
 * @param {import('../engine.js').ImageRun} run
 * @param {number} H
 * @returns {import('../engine.js').ImageSampler}
 */
function cpuSampler(heads, run, H) {
  const { n, T } = run;
  const drawn = new BigInt64Array(n * T);
  const u = new Float32Array(n);
  return {
    async step(hidden, step) {
      const [B, S] = hidden.dims;
      if (B !== 2 * n) throw new Error(`the image step takes ${2 * n} rows, not ${B}`);
      const data = /** @type {Float32Array} */ (await hidden.getData());
      const last = new Float32Array(B * H);
      for (let b = 0; b < B; b++) last.set(data.subarray((b * S + S - 1) * H, (b * S + S) * H), b * H);
      for (let i = 0; i < n; i++) u[i] = run.draws[i * T + step];
      const { tokens, embeds } = heads.imageStep(last, n, run.guidance, run.temperature, u);
      tokens.forEach((t, i) => { drawn[i * T + step] = BigInt(t); });
      const both = new Float32Array(2 * n * H);
      both.set(embeds);
      both.set(embeds, n * H);
      return new ort.Tensor('float32', both, [2 * n, 1, H]);
    },
    tokens: () => new ort.Tensor('int64', drawn.slice(), [n, T]),
    drawn: async () => drawn,
    release: () => undefined,
  };
}

/** @type {import('../engine.js').EngineSpec} */
export const engine = {
  name: 'cpu',
  label: "CPU engine (the page's WebAssembly kernels)",
  auto: 1,
  unsupported: (backend) => (backend.ep !== 'wasm' ? 'the CPU engine runs on WASM'
    : typeof window !== 'undefined' && backend.threads > 1 // thread 0 waits at barriers (Atomics.wait)
      ? "the CPU engine's threads need a worker (a page's main thread may not wait): use createJanusWorker" : null),
  plan: (manifest, dtype) => {
    const pack = /** @type {any} */ (manifest).cpu?.[dtype];
    if (!pack) return `the bundle has no ${dtype} CPU pack: run janusweb pack cpu BUNDLE --dtype ${dtype}`;
    if (staleFormat(pack)) return `the bundle's ${dtype} CPU pack is one .bin, not parts: run janusweb pack cpu BUNDLE --dtype ${dtype} again`;
    const tooLarge = packRefusal(manifest, pack, dtype);
    if (tooLarge) return tooLarge;
    return { graphs: {}, replaces: ['lm_head', 'gen_step', 'prepare_inputs_embeds', 'image_decode'], data: pack };
  },
  create: async ({ loader, backend, dtype, plan, pack: desc, assets, memory64 }) => {
    const pack = plan.data;
    const files = /** @type {any} */ (loader.manifest).files;
    for (const [part, src] of [['decoder', desc], ...SOURCES.map((r) => [r, desc[r]])]) {
      if (!src) {
        throw new InputError(`the ${dtype} CPU pack has no ${part} (made by an older janusweb): run janusweb pack cpu `
          + `BUNDLE --dtype ${dtype} again`);
      }
      if (files[`onnx/${src.source}`]?.sha256 !== src.source_sha256) {
        throw new InputError(`the ${dtype} CPU pack was made from another ${src.source}: run janusweb pack cpu `
          + `BUNDLE --dtype ${dtype} again`);
      }
    }
    // the weights and a CFG image request's KV cache of 1024 positions up front; more is asked for when needed
    const threads = backend.threads, need = memoryNeeded(desc, 2, 1024), base = new URL('cpu/', assets);
    const width = addressWidth(need, threads > 1, memory64);
    if (width.refusal !== undefined) throw new BackendError(width.refusal);
    const file = kernelsFile(threads, width.bits);
    const rt = await CpuRuntime.create(await (await fetch(new URL(file, base))).arrayBuffer(), threads, need,
      spawner(base));
    const model = new CpuModel(rt, desc, null); // memory for every tensor, filled part by part below
    await loader.packTensors(pack, desc, (name, bytes) => model.put(name, bytes))
      .catch((e) => { rt.release(); throw e; }); // a failed or aborted download: the threads end
    const H = desc.hidden_size, heads = /** @type {import('./heads.js').CpuHeads} */ (model.heads);
    const vision = /** @type {import('./vision.js').CpuVision} */ (model.vision);
    const vq = /** @type {import('./vq.js').CpuVq} */ (model.vq);
    const notes = `${hasRelaxedSimd() ? '' : ', no relaxed SIMD'}${rt.unsignedDot ? ', int8 on the unsigned byte dot' : ''}`
      + `${width.bits === 64 ? ', 64-bit memory' : ''}`;
    return {
      kvCache: `CPU engine (${pack.json}, ${partsNote(pack)}, ${threads} thread${threads > 1 ? 's' : ''}, ${file}${notes}; `
        + `${(rt.memory.buffer.byteLength / 2 ** 20).toFixed(0)} MiB of its own memory): KV cache preallocated`,
      dtypes: { language_model: dtype, lm_head: desc.lm_head.dtype, embed_tokens: desc.embed_tokens.dtype,
        prepare_inputs_embeds: desc.vision.dtype, gen_head: desc.gen_head.layers.at(-1).dtype,
        gen_img_embeds: desc.gen_img_embeds.layers.at(-1).dtype, image_decode: 'fp32' },
      newCache: (rows, capacity) => new CpuCache(model.newState(rows, capacity), H),
      maxPositions: desc.max_positions,
      embedTokens: async (rows) => {
        const S = rows[0].length;
        return new ort.Tensor('float32', heads.embed(rows.flat()), [rows.length, S, H]);
      },
      embedImage: async (rows, image) => { // the token row's embeddings, its image positions the image's features
        const ids = rows[0], out = heads.embed(ids), features = vision.features(image.pixels);
        let k = 0;
        for (let i = 0; i < ids.length; i++) {
          if (!image.imageMask[i]) continue;
          if (k === vision.d.tokens) throw new Error(`the prompt has more image positions than the image's ${k} features`);
          out.set(features.subarray(k * H, (k + 1) * H), i * H);
          k += 1;
        }
        return new ort.Tensor('float32', out, [1, ids.length, H]);
      },
      imageSampler: (run) => cpuSampler(heads, run, H),
      decodeImage: async (tokens) => vq.decode(/** @type {BigInt64Array} */ (await tokens.getData()), tokens.dims[0]),
      textLogits: async (hidden) => {
        const [, S] = hidden.dims;
        const data = /** @type {Float32Array} */ (await hidden.getData());
        return model.logits(data.subarray((S - 1) * H, S * H), 1);
      },
      memoryBytes: () => rt.memory.buffer.byteLength,
      details: { kernels: file, relaxedSimd: hasRelaxedSimd(), unsignedDot: rt.unsignedDot, threads },
      release: () => rt.release(),
    };
  },
};
