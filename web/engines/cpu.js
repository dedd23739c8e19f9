// The CPU engine on the page (WASM backend): the decoder layers and lm_head on the page's own WebAssembly SIMD
// kernels (../cpu/), weights from the bundle's CPU pack (janusweb cpu-pack) in the engine's own memory, threads
// as Web Workers sharing it when the page is cross-origin isolated. To the generation loops (generate.js) it is a
// KV cache factory (newCache -> step(embeds) -> hidden states) and an lm_head "session" (run({hidden_states}) ->
// {logits}); ONNX Runtime keeps prepare_inputs_embeds (token embeddings, vision tower), gen_step and image_decode.

import * as ort from 'onnxruntime-web/webgpu';
import { CpuModel, memoryNeeded } from '../cpu/model.js';
import { CpuRuntime, hasRelaxedSimd, kernelsFile } from '../cpu/runtime.js';

/** @param {string} message */
const inputError = (message) => Object.assign(new Error(message), { kind: 'input' });

/**
 * The CPU pack of `dtype`, checked against the graphs it was made from.
 * @param {import('../loader.js').BundleLoader} loader
 * @param {string} dtype
 */
export async function cpuPack(loader, dtype) {
  const manifest = /** @type {any} */ (loader.manifest);
  const pack = manifest.cpu?.[dtype];
  if (!pack) throw inputError(`the bundle has no ${dtype} CPU pack: run janusweb cpu-pack BUNDLE --dtype ${dtype}`);
  const desc = await loader.json(pack.json);
  for (const src of [desc, desc.lm_head]) {
    if (manifest.files[`onnx/${src.source}`]?.sha256 !== src.source_sha256) {
      throw inputError(`the ${dtype} CPU pack was made from another ${src.source}: run janusweb cpu-pack BUNDLE `
        + `--dtype ${dtype} again`);
    }
  }
  return { pack, desc };
}

/**
 * @param {import('../loader.js').BundleLoader} loader
 * @param {string} dtype the pack's
 * @param {number} threads
 * @param {URL} base where the kernels (cpu/*.wasm) and thread.js are served
 */
export async function createCpuEngine(loader, dtype, threads, base) {
  const { pack, desc } = await cpuPack(loader, dtype);
  const file = kernelsFile(threads);
  const module = await WebAssembly.compileStreaming(fetch(new URL(file, base)));
  const spawn = (/** @type {number} */ _t, /** @type {object} */ init) => new Promise((resolve, reject) => {
    const w = new Worker(new URL('thread.js', base), { type: 'module' });
    w.onmessage = () => resolve(w);
    w.onerror = (e) => reject(new Error(`CPU engine thread: ${e.message}`));
    w.postMessage(init);
  });
  const rt = await CpuRuntime.create(module, threads, memoryNeeded(desc, 2, 1024), spawn);
  const model = new CpuModel(rt, desc, await loader.file(pack.bin));
  const H = desc.hidden_size;
  const lmHead = {
    /** @param {{hidden_states: ort.Tensor}} feeds */
    async run(feeds) {
      const [B, S] = feeds.hidden_states.dims;
      const logits = model.logits(/** @type {Float32Array} */ (feeds.hidden_states.data), B * S);
      return { logits: new ort.Tensor('float32', logits, [B, S, desc.lm_head.vocab]) };
    },
    release: async () => undefined,
  };
  const simd = threads > 1 ? `${file}${hasRelaxedSimd() ? '' : ', no relaxed SIMD'}` : file;
  return {
    /** @param {number} rows @param {number} capacity */
    newCache: (rows, capacity) => new CpuCache(model.newState(rows, capacity), H),
    lmHead,
    dtypes: { language_model: dtype, lm_head: desc.lm_head.dtype },
    kvCache: `CPU engine (${pack.bin}, ${threads} thread${threads > 1 ? 's' : ''}, ${simd}; `
      + `${(rt.memory.buffer.byteLength / 2 ** 20).toFixed(0)} MiB of its own memory): KV cache preallocated`,
    release: () => rt.release(),
  };
}

/** @implements {import('../kv-cache.js').KVCache} */
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
