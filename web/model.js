// Loading a bundle: dtypes and backend, the decoder engine, the sessions (falling back from WebGPU to WASM
// when WebGPU fails while creating them, unless WebGPU was asked for), and what runs where, in words.

import * as ort from 'onnxruntime-web/webgpu';
import { requestDevice, wasmBackend } from './backend.js';
import { describeDtypes } from './dtypes.js';
import { BackendError, ChecksumError, InputError } from './errors.js';
import { BundleLoader, download } from './loader.js';
import { planFiles, planLoad, sessionPlan, unverifiable } from './plan.js';
import { createSessions } from './sessions.js';
import { JanusTokenizer } from './tokenizer.js';

/** @typedef {import('./backend.js').Backend} Backend */
/** @typedef {import('./protocol.js').LoadRequest} LoadRequest */

/**
 * @typedef {object} Model
 * @property {JanusTokenizer} tokenizer
 * @property {import('./engines/engine.js').Dims} dims config.json's janusweb block
 * @property {any} pre preprocessor_config.json
 * @property {import('./heads.js').Graphs} graphs
 * @property {import('./protocol.js').BackendInfo} info
 * @property {() => Promise<void>} release
 */

// ONNX Runtime's WebAssembly binary (web/build.mjs writes the sizes of ort/ to ort/files.json): fetched here with
// progress, once per worker, and handed to ORT (env.wasm.wasmBinary) instead of letting it fetch it unseen.
const ORT_WASM = 'ort-wasm-simd-threaded.asyncify.wasm';
let ortReady = false;

/** @param {(name: string, done: number, total: number) => void} onProgress */
async function loadOrtWasm(onProgress) {
  const dir = new URL('./ort/', import.meta.url).href;
  ort.env.wasm.wasmPaths = dir;
  if (ortReady) return;
  const sizes = await (await fetch(dir + 'files.json')).json();
  const name = `ort/${ORT_WASM}`;
  const bytes = await download(dir + ORT_WASM, sizes[ORT_WASM], (n) => onProgress(name, n, sizes[ORT_WASM]));
  ort.env.wasm.wasmBinary = bytes.buffer;
  ortReady = true;
}

/**
 * @param {LoadRequest} req
 * @param {(msg: import('./protocol.js').ProgressMessage) => void} progress
 * @returns {Promise<Model>}
 */
export async function loadModel(req, progress) {
  const loader = new BundleLoader(req.base, (name, done, total, cached) =>
    progress({ type: 'progress', id: req.id, what: 'download', name, done, total, cached }));
  await loader.loadManifest();
  let { manifest, config, dtypes, missing, backend, chosen } = await planLoad(loader, req);
  const pre = await loader.json('preprocessor_config.json');
  const tokenizer = new JanusTokenizer(await loader.json('tokenizer.json'), await loader.json('tokenizer_config.json'));
  if (req.backend === 'webgpu' && backend.ep !== 'webgpu') throw new BackendError(backend.notes.join('; '));
  const tooLarge = unverifiable(manifest, planFiles(manifest, chosen));
  if (tooLarge) throw new InputError(tooLarge); // before any download
  if (req.threads) backend = { ...backend, threads: Math.max(1, Math.min(backend.threads, req.threads)) }; // ?threads=
  ort.env.wasm.numThreads = backend.threads;
  ort.env.logLevel = 'error';
  await loadOrtWasm((name, done, total) =>
    progress({ type: 'progress', id: req.id, what: 'download', name, done, total }));
  const onSession = (/** @type {string} */ name, /** @type {number} */ done, /** @type {number} */ total) =>
    progress({ type: 'progress', id: req.id, what: 'session', name, done, total });
  let created;
  try {
    if (backend.ep === 'webgpu') {
      backend = { ...backend, device: await requestDevice(/** @type {GPUAdapter} */ (backend.gpu),
        /** @type {import('./backend.js').Needs} */ (backend.needs)) };
    }
    created = await createSessions(loader, backend, chosen.sessions, onSession);
  } catch (e) {
    if (backend.ep !== 'webgpu' || e instanceof ChecksumError || req.backend === 'webgpu') throw e;
    backend = wasmBackend([`WebGPU failed while creating sessions (${e instanceof Error ? e.message : e}); using WASM`],
      'Running on your CPU: WebGPU failed while setting up the model.');
    chosen = sessionPlan(manifest, backend, dtypes, req);
    created = await createSessions(loader, backend, chosen.sessions, onSession);
  }
  const device = backend.device ?? null;
  const { sessions } = created;
  const release = async () => Promise.all(Object.values(sessions).map((s) => s.release())).then(() => undefined);
  let engine;
  try {
    engine = await chosen.engine.spec.create({ loader, backend, dims: config.janusweb, sessions, device,
      dtype: chosen.dtype, plan: chosen.engine.plan });
  } catch (e) {
    await release();
    throw e;
  }
  const used = { ...created.dtypes, ...engine.dtypes };
  const main = req.dtype ?? used.language_model_gqa ?? used.language_model;
  return {
    tokenizer, dims: config.janusweb, pre, graphs: { sessions, device, engine },
    info: { ep: backend.ep, adapter: backend.adapter, dtype: describeDtypes(manifest, used, main), dtypes: used,
      threads: backend.threads, cpuNodes: created.cpuNodes, kvCache: engine.kvCache, engine: chosen.engine.spec.name,
      why: backend.why, notes: [...backend.notes, ...missing, ...created.notes, ...chosen.notes] },
    release: async () => {
      engine.release();
      await release();
    },
  };
}
