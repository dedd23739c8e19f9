// Loading a bundle: dtypes and backend, the decoder engine, the sessions (falling back from WebGPU to WASM
// when WebGPU fails while creating them, unless WebGPU was asked for), and what runs where (info.js).

import * as ort from 'onnxruntime-web/webgpu';
import { requestDevice, wasmBackend } from './backend.js';
import { BackendError, ChecksumError, InputError } from './errors.js';
import { countGpuWork } from './gpu-counts.js';
import { describeInfo } from './info.js';
import { BundleLoader, download } from './loader.js';
import { readPack } from './engines/packs.js';
import { planFiles, planLoad, sessionPlan, unverifiable } from './plan.js';
import { createSessions } from './sessions.js';
import { JanusTokenizer } from './tokenizer.js';

/** @typedef {import('./options.js').PlanOptions} PlanOptions */
/** @typedef {import('./options.js').Progress} Progress */

/**
 * @typedef {object} Model
 * @property {JanusTokenizer} tokenizer
 * @property {import('./engines/engine.js').Dims} dims config.json's janusweb block
 * @property {any} pre preprocessor_config.json
 * @property {import('./heads.js').Graphs} graphs
 * @property {() => import('./info.js').JanusInfo} info the facts, with the engine's memory as it is now
 * @property {import('./gpu-counts.js').GpuCounts|null} gpuCounts live counts of the device's work (countGpuWork)
 * @property {() => Promise<void>} release
 */

// ONNX Runtime's WebAssembly binary (web/build.mjs writes the sizes of ort/ to ort/files.json): fetched here with
// progress and handed to ORT (env.wasm.wasmBinary) instead of letting it fetch it unseen. ORT's env is one per
// JavaScript realm and read once, when its WebAssembly starts: the first instance in a page (or worker) sets where
// its files are and its thread count; later ones share them (a note says so where they asked for other threads).
const ORT_WASM = 'ort-wasm-simd-threaded.asyncify.wasm';

/** @param {URL} assets @param {(name: string, done: number, total: number) => void} onProgress */
async function loadOrtWasm(assets, onProgress) {
  if (ort.env.wasm.wasmBinary) return;
  const dir = new URL('ort/', assets).href;
  ort.env.wasm.wasmPaths = dir;
  const sizes = await (await fetch(dir + 'files.json')).json();
  const name = `ort/${ORT_WASM}`;
  const bytes = await download(dir + ORT_WASM, sizes[ORT_WASM], (n) => onProgress(name, n, sizes[ORT_WASM]));
  ort.env.wasm.wasmBinary = bytes.buffer;
}

/**
 * @param {string} base the bundle's URL, ending with '/'
 * @param {import('./plan.js').LoadRequest & {threads?: number, memory64?: boolean, cache?: boolean, countGpuWork?: boolean,
 *   signal?: AbortSignal}} req `signal`: an aborted load releases whatever it made (progress throws the abort)
 * @param {URL} assets where ort/ and cpu/ are served
 * @param {(p: Progress) => void} progress
 * @returns {Promise<Model>}
 */
export async function loadModel(base, req, assets, progress) {
  const loader = new BundleLoader(base, (name, done, total, cached) =>
    progress({ what: 'download', name, done, total, cached }), req.cache !== false);
  await loader.loadManifest();
  let { manifest, config, dtypes, missing, backend, chosen, pack } = await planLoad(loader, req);
  const pre = await loader.json('preprocessor_config.json');
  const tokenizer = new JanusTokenizer(await loader.json('tokenizer.json'), await loader.json('tokenizer_config.json'));
  if (req.backend === 'webgpu' && backend.ep !== 'webgpu') throw new BackendError(backend.notes.join('; '));
  const tooLarge = unverifiable(manifest, planFiles(manifest, chosen));
  if (tooLarge) throw new InputError(tooLarge); // before any download
  if (req.threads) backend = { ...backend, threads: Math.max(1, Math.min(backend.threads, req.threads)) };
  if (!ort.env.wasm.wasmBinary) ort.env.wasm.numThreads = backend.threads;
  else if (ort.env.wasm.numThreads !== backend.threads) { // ORT's threads are the first instance's (one per page)
    backend = { ...backend, notes: [...backend.notes, `ONNX Runtime runs its WASM kernels on `
      + `${ort.env.wasm.numThreads} thread(s) here, as the first instance in this page set it`] };
  }
  ort.env.logLevel = 'error';
  await loadOrtWasm(assets, (name, done, total) => progress({ what: 'download', name, done, total }));
  const onSession = (/** @type {string} */ name, /** @type {number} */ done, /** @type {number} */ total) =>
    progress({ what: 'session', name, done, total });
  let created;
  /** @type {import('./gpu-counts.js').GpuCounts|null} */
  let gpuCounts = null;
  try {
    if (backend.ep === 'webgpu') {
      const device = await requestDevice(/** @type {GPUAdapter} */ (backend.gpu),
        /** @type {import('./backend.js').Needs} */ (backend.needs));
      if (req.countGpuWork) gpuCounts = countGpuWork(device);
      backend = { ...backend, device };
    }
    created = await createSessions(loader, backend, chosen.sessions, onSession);
  } catch (e) {
    backend.device?.destroy();
    if (backend.ep !== 'webgpu' || e instanceof ChecksumError || req.backend === 'webgpu' || req.signal?.aborted) {
      throw e;
    }
    gpuCounts = null;
    backend = wasmBackend([`WebGPU failed while creating sessions (${e instanceof Error ? e.message : e}); using WASM`],
      'Running on your CPU: WebGPU failed while setting up the model.');
    chosen = sessionPlan(manifest, backend, dtypes, req);
    pack = await readPack(loader, chosen);
    created = await createSessions(loader, backend, chosen.sessions, onSession);
  }
  const device = backend.device ?? null;
  const { sessions } = created;
  const releaseSessions = async () => {
    await Promise.all(Object.values(sessions).map((s) => s.release()));
    device?.destroy();
  };
  let engine;
  try {
    engine = await chosen.engine.spec.create({ loader, backend, dims: config.janusweb, sessions, device,
      dtype: chosen.dtype, plan: chosen.engine.plan, pack, assets, memory64: req.memory64 === true });
  } catch (e) {
    await releaseSessions();
    throw e;
  }
  if (req.signal?.aborted) { // aborted while the engine was made: nothing stays loaded
    engine.release();
    await releaseSessions();
    throw req.signal.reason;
  }
  const used = { ...created.dtypes, ...engine.dtypes };
  const files = planFiles(manifest, chosen);
  const facts = { manifest, backend, used, main: req.dtype ?? used.language_model_gqa ?? used.language_model,
    created, chosen, missing, engine, files };
  return {
    tokenizer, dims: config.janusweb, pre, graphs: { sessions, device, engine }, gpuCounts,
    info: () => describeInfo(facts),
    release: async () => {
      engine.release();
      await releaseSessions();
    },
  };
}
