// CPU: everything per token on the page's own WebAssembly SIMD kernels (../cpu/), WASM, from the bundle's CPU pack
// (janusweb cpu-pack: the weights of the fused graph, lm_head, the token table, gen_head and gen_img_embeds): the
// token embeddings, the decoder layers, lm_head and the image step, in the engine's own memory (not ONNX Runtime's
// heap), threads as Web Workers sharing it when the page is cross-origin isolated. ONNX Runtime keeps what runs
// once per request: prepare_inputs_embeds for prompts with an image (the vision tower) and image_decode; no
// gen_step or lm_head session is made.

import * as ort from 'onnxruntime-web/webgpu';
import { CpuModel, memoryNeeded } from '../cpu/model.js';
import { CpuRuntime, hasRelaxedSimd, kernelsFile } from '../cpu/runtime.js';
import { wasm32Refusal } from '../cpu/wasm32.js';
import { InputError } from '../errors.js';
import { partsNote, staleFormat } from './packs.js';

/** Where the kernels (*.wasm) and thread.js are served: cpu/ beside the worker's bundle. */
const BASE = new URL('./cpu/', import.meta.url);

/**
 * Threads 1..n-1 of the engine: module Web Workers running thread.js over the shared memory.
 * @param {number} _t @param {object} init
 */
const spawn = (_t, init) => new Promise((resolve, reject) => {
  const w = new Worker(new URL('thread.js', BASE), { type: 'module' });
  w.onmessage = () => resolve(w);
  w.onerror = (e) => reject(new Error(`CPU engine thread: ${e.message}`));
  w.postMessage(init);
});

/** @implements {import('./engine.js').KVCache} */
class CpuCache {
  /** @param {import('../cpu/model.js').CpuState} state @param {number} H */
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
const SOURCES = ['lm_head', 'embed_tokens', 'gen_head', 'gen_img_embeds'];

/**
 * The image loop's sampler on the CPU heads: the drawn tokens stay in a JS array.
 * @param {import('../cpu/heads.js').CpuHeads} heads
 * @param {import('./engine.js').ImageRun} run
 * @param {number} H
 * @returns {import('./engine.js').ImageSampler}
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

/** @type {import('./engine.js').EngineSpec} */
export const engine = {
  name: 'cpu',
  label: "CPU engine (the page's WebAssembly kernels)",
  auto: 1,
  unsupported: (backend) => (backend.ep === 'wasm' ? null : 'the CPU engine runs on WASM'),
  plan: (manifest, dtype) => {
    const pack = /** @type {any} */ (manifest).cpu?.[dtype];
    if (!pack) return `the bundle has no ${dtype} CPU pack: run janusweb cpu-pack BUNDLE --dtype ${dtype}`;
    if (staleFormat(pack)) return `the bundle's ${dtype} CPU pack is one .bin, not parts: run janusweb cpu-pack BUNDLE --dtype ${dtype} again`;
    const tooLarge = wasm32Refusal(manifest, pack, dtype);
    if (tooLarge) return tooLarge;
    return { graphs: {}, replaces: ['lm_head', 'gen_step'], data: pack };
  },
  create: async ({ loader, backend, dtype, plan }) => {
    const pack = plan.data;
    const desc = await loader.json(pack.json);
    const files = /** @type {any} */ (loader.manifest).files;
    for (const [part, src] of [['decoder', desc], ...SOURCES.map((r) => [r, desc[r]])]) {
      if (!src) {
        throw new InputError(`the ${dtype} CPU pack has no ${part} (made by an older janusweb): run janusweb cpu-pack `
          + `BUNDLE --dtype ${dtype} again`);
      }
      if (files[`onnx/${src.source}`]?.sha256 !== src.source_sha256) {
        throw new InputError(`the ${dtype} CPU pack was made from another ${src.source}: run janusweb cpu-pack `
          + `BUNDLE --dtype ${dtype} again`);
      }
    }
    const threads = backend.threads, file = kernelsFile(threads);
    const module = await WebAssembly.compileStreaming(fetch(new URL(file, BASE)));
    const rt = await CpuRuntime.create(module, threads, memoryNeeded(desc, 2, 1024), spawn);
    const model = new CpuModel(rt, desc, () => undefined); // memory for every tensor, filled part by part below
    await loader.packTensors(pack, desc, (name, bytes) => rt.u8(model.at[name], bytes.length).set(bytes));
    const H = desc.hidden_size, heads = /** @type {import('../cpu/heads.js').CpuHeads} */ (model.heads);
    const simd = hasRelaxedSimd() ? '' : ', no relaxed SIMD';
    return {
      kvCache: `CPU engine (${pack.json}, ${partsNote(pack)}, ${threads} thread${threads > 1 ? 's' : ''}, ${file}${simd}; `
        + `${(rt.memory.buffer.byteLength / 2 ** 20).toFixed(0)} MiB of its own memory): KV cache preallocated`,
      dtypes: { language_model: dtype, lm_head: desc.lm_head.dtype, embed_tokens: desc.embed_tokens.dtype,
        gen_head: desc.gen_head.layers.at(-1).dtype, gen_img_embeds: desc.gen_img_embeds.layers.at(-1).dtype },
      newCache: (rows, capacity) => new CpuCache(model.newState(rows, capacity), H),
      embedTokens: async (rows) => {
        const S = rows[0].length;
        return new ort.Tensor('float32', heads.embed(rows.flat()), [rows.length, S, H]);
      },
      imageSampler: (run) => cpuSampler(heads, run, H),
      textLogits: async (hidden) => {
        const [, S] = hidden.dims;
        const data = /** @type {Float32Array} */ (await hidden.getData());
        return model.logits(data.subarray((S - 1) * H, S * H), 1);
      },
      release: () => rt.release(),
    };
  },
};
