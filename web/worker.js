// The inference worker: loads the bundle, owns the ONNX Runtime sessions and runs generation, so the page
// stays responsive. Messages: see protocol.js.

import * as ort from 'onnxruntime-web/webgpu';
import { bundleNeeds, chooseBackend, sessionOptions, wasmBackend } from './backend.js';
import { BundleLoader, ChecksumError, graphDtypes } from './loader.js';
import { independentOf, onnxNodes } from './onnx-nodes.js';
import { JanusTokenizer } from './tokenizer.js';
import { preprocess } from './preprocess.js';
import { imageDraws } from './sampling.js';
import { Cancelled, generateImages, generateText } from './generate.js';

/** @typedef {import('./protocol.js').Request} Request */
/** @typedef {import('./protocol.js').Reply} Reply */
/** @typedef {import('./protocol.js').BackendInfo} BackendInfo */
/** @typedef {import('./backend.js').Backend} Backend */

// The graphs the page runs, and the outputs each keeps on the GPU (WebGPU only).
const GPU_OUTPUTS = {
  prepare_inputs_embeds: () => ['inputs_embeds'],
  language_model: (/** @type {string[]} */ outs) => outs,
  lm_head: () => [],
  gen_step: () => ['image_ids', 'inputs_embeds', 'tokens_out', 'image_tokens'],
  image_decode: () => [],
};
const GRAPHS = Object.keys(GPU_OUTPUTS);
const STRICT_ERROR = 'fallback to CPU EP has been explicitly disabled';

// GPU->CPU reads (buffer maps), counted so that each request can report how many it needed.
let gpuReads = 0;
if (typeof GPUBuffer !== 'undefined') {
  const mapAsync = GPUBuffer.prototype.mapAsync;
  GPUBuffer.prototype.mapAsync = function (...args) {
    gpuReads++;
    return mapAsync.apply(this, args);
  };
}

/**
 * @typedef {object} Model
 * @property {BundleLoader} loader
 * @property {JanusTokenizer} tokenizer
 * @property {any} dims config.json's janusweb block
 * @property {any} pre preprocessor_config.json
 * @property {import('./generate.js').Graphs} graphs
 */
/** @type {Model|null} */
let model = null;
let busy = false;
const cancelled = new Set();

/**
 * Whether request `id` was cancelled, after yielding to the event loop once so that a cancel message can be
 * seen (awaiting ONNX Runtime alone may never leave the microtask queue).
 * @param {number} id
 */
function cancelCheck(id) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve(cancelled.has(id));
    channel.port2.postMessage(null);
  });
}

/** @param {Reply} msg @param {Transferable[]} [transfer] */
function reply(msg, transfer = []) {
  self.postMessage(msg, { transfer });
}

/**
 * One graph's session on `backend` at `dtype`. On WebGPU the session is first created with CPU fallback
 * disabled (session.disable_cpu_ep_fallback); a graph that ORT can only place with some nodes on the CPU EP is
 * created again without it, and `cpuNodes` says so. On WebGPU, prepare_inputs_embeds runs only the token
 * embedding (and the final merge) on the GPU; the vision tower and the mask arithmetic run on the CPU EP,
 * because a text-only call feeds the vision tower zero-size tensors, which the WebGPU kernels reject.
 * @param {BundleLoader} loader
 * @param {Backend} backend
 * @param {string} name
 * @param {string} dtype
 */
async function createSession(loader, backend, name, dtype) {
  const { model: bytes, externalData } = await loader.graph(name, dtype);
  const outputs = /** @type {any} */ (loader.manifest).graphs[name].outputs.map((/** @type {any} */ o) => o.name);
  const onGpu = GPU_OUTPUTS[/** @type {keyof GPU_OUTPUTS} */ (name)](outputs);
  const forceCpu = name === 'prepare_inputs_embeds' && backend.ep === 'webgpu'
    ? independentOf(onnxNodes(bytes), 'input_ids') : [];
  const create = (/** @type {boolean} */ strict) =>
    ort.InferenceSession.create(bytes, sessionOptions(backend, { onGpu, forceCpu, strict, externalData }));
  try {
    return { session: await create(true), cpuNodes: forceCpu.length > 0 };
  } catch (e) {
    if (backend.ep !== 'webgpu' || !String(e).includes(STRICT_ERROR)) throw e;
    return { session: await create(false), cpuNodes: true };
  }
}

/**
 * Sessions for every graph. A quantized graph whose kernels this backend lacks (e.g. GatherBlockQuantized
 * on WASM) runs at fp32, and `dtypes` and `notes` say so.
 * @param {BundleLoader} loader
 * @param {Backend} backend
 * @param {Record<string, string>} wanted graph -> dtype
 * @param {number} id
 */
async function createSessions(loader, backend, wanted, id) {
  /** @type {Record<string, ort.InferenceSession>} */
  const sessions = {};
  const dtypes = { ...wanted };
  const cpuNodes = [], notes = [];
  try {
    for (const [k, name] of GRAPHS.entries()) {
      reply({ type: 'progress', id, what: 'session', name, done: k, total: GRAPHS.length });
      let created;
      try {
        created = await createSession(loader, backend, name, dtypes[name]);
      } catch (e) {
        const missing = String(e).match(/Could not find an implementation for (\w+)/);
        if (!missing || dtypes[name] === 'fp32') throw e;
        notes.push(`${name} runs at fp32: ${backend.ep} has no ${missing[1]} kernel for its ${dtypes[name]} variant`);
        dtypes[name] = 'fp32';
        created = await createSession(loader, backend, name, 'fp32');
      }
      sessions[name] = created.session;
      if (created.cpuNodes) cpuNodes.push(name);
    }
  } catch (e) {
    await Promise.all(Object.values(sessions).map((s) => s.release()));
    throw e;
  }
  reply({ type: 'progress', id, what: 'session', name: 'all', done: GRAPHS.length, total: GRAPHS.length });
  return { sessions, cpuNodes, dtypes, notes };
}

/** @param {import('./protocol.js').LoadRequest} req */
async function load(req) {
  const loader = new BundleLoader(req.base, (name, done, total, cached) =>
    reply({ type: 'progress', id: req.id, what: 'download', name, done, total, cached }));
  const manifest = await loader.loadManifest();
  const config = await loader.json('config.json');
  const pre = await loader.json('preprocessor_config.json');
  const tokenizer = new JanusTokenizer(await loader.json('tokenizer.json'), await loader.json('tokenizer_config.json'));
  const wanted = graphDtypes(config, GRAPHS, req.dtype);
  const absent = GRAPHS.filter((g) => wanted[g] !== 'fp32' && !manifest.graphs[g]?.variants?.[wanted[g]]);
  const dtypes = Object.fromEntries(GRAPHS.map((g) => [g, absent.includes(g) ? 'fp32' : wanted[g]]));
  let backend = await chooseBackend(req.backend, bundleNeeds(config, dtypes));
  if (req.backend === 'webgpu' && backend.ep !== 'webgpu') {
    throw Object.assign(new Error(backend.notes.join('; ')), { kind: 'backend' });
  }
  const missing = absent.map((g) => `${g} runs at fp32: the bundle has no ${wanted[g]} variant of it`);
  ort.env.wasm.numThreads = backend.threads;
  ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
  ort.env.logLevel = 'error';
  let created;
  try {
    created = await createSessions(loader, backend, dtypes, req.id);
  } catch (e) {
    if (backend.ep !== 'webgpu' || e instanceof ChecksumError || req.backend === 'webgpu') throw e;
    backend = wasmBackend([`WebGPU failed while creating sessions (${e instanceof Error ? e.message : e}); using WASM`]);
    created = await createSessions(loader, backend, dtypes, req.id);
  }
  const device = backend.ep === 'webgpu' ? await ort.env.webgpu.device : null;
  model = { loader, tokenizer, dims: config.janusweb, pre, graphs: { sessions: created.sessions, device } };
  const used = created.dtypes;
  const main = req.dtype ?? used.language_model;
  const odd = GRAPHS.filter((g) => used[g] !== main).map((g) => `${g}: ${used[g]}`);
  /** @type {BackendInfo} */
  const info = { ep: backend.ep, adapter: backend.adapter, dtype: odd.length ? `${main} (${odd.join(', ')})` : main,
    dtypes: used, threads: backend.threads, cpuNodes: created.cpuNodes,
    notes: [...backend.notes, ...missing, ...created.notes] };
  reply({ type: 'done', id: req.id, cancelled: false, backend: info });
}

/** Decode an uploaded image as PIL would (no colour management) and preprocess it. @param {Blob} blob */
async function pixelValues(blob) {
  const bitmap = await createImageBitmap(blob, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext('2d'));
  ctx.drawImage(bitmap, 0, 0);
  const { data } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  return preprocess(data, bitmap.width, bitmap.height, model?.pre);
}

/** @param {import('./protocol.js').ChatRequest} req */
async function chat(req) {
  const m = /** @type {Model} */ (model);
  const pixels = req.image ? await pixelValues(req.image) : null;
  const prompt = { ...m.tokenizer.understandingInputs(req.question, m.dims.num_image_tokens, !!pixels), pixels };
  const reads = gpuReads;
  const start = performance.now();
  let first = 0;
  /** @type {number[]} */
  const tokens = [];
  const speed = () => (tokens.length > 1 ? (tokens.length - 1) / ((performance.now() - first) / 1000) : 0);
  let wasCancelled = false;
  try {
    await generateText(m.graphs, m.dims, prompt, {
      maxNewTokens: req.maxNewTokens, eosId: req.stopAtEos === false ? -1 : m.tokenizer.ids.eos, cancelled: () => cancelCheck(req.id),
      onToken: (token) => {
        if (!tokens.length) first = performance.now();
        tokens.push(token);
        reply({ type: 'token', id: req.id, token, text: m.tokenizer.decode(tokens), tokensPerSecond: speed() });
      },
    });
  } catch (e) {
    if (!(e instanceof Cancelled)) throw e;
    wasCancelled = true;
  }
  reply({ type: 'done', id: req.id, cancelled: wasCancelled, tokens, text: m.tokenizer.decode(tokens),
    tokensPerSecond: speed(), seconds: (performance.now() - start) / 1000, gpuReads: gpuReads - reads });
}

/** decoded [3,H,W] in [-1,1] -> RGBA bytes, as janusweb.image.to_uint8. @param {Float32Array} x @param {number} size */
function toRgba(x, size) {
  const plane = size * size;
  const out = new Uint8ClampedArray(plane * 4);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.fround(Math.fround(Math.fround(x[c * plane + i] + 1) / 2) * 255);
      out[i * 4 + c] = Math.trunc(Math.min(255, Math.max(0, v)));
    }
    out[i * 4 + 3] = 255;
  }
  return out;
}

/** @param {import('./protocol.js').ImageRequest} req */
async function image(req) {
  const m = /** @type {Model} */ (model);
  const n = req.count, T = m.dims.num_image_tokens, size = m.dims.decoded_image_size;
  if (!(Number.isInteger(n) && n >= 1 && n <= 4)) throw Object.assign(new Error('count must be 1 to 4'), { kind: 'input' });
  if (!Number.isInteger(req.seed)) throw Object.assign(new Error('the seed must be an integer'), { kind: 'input' });
  const promptIds = m.tokenizer.generationPrompt(req.prompt);
  const reads = gpuReads;
  const start = performance.now();
  let result;
  try {
    result = await generateImages(m.graphs, m.dims, {
      promptIds, uncondIds: m.tokenizer.unconditional(promptIds), draws: imageDraws(req.seed, n, T), n,
      guidance: req.guidance, temperature: req.temperature,
    }, {
      onStep: (done, total) => reply({ type: 'progress', id: req.id, what: 'step', name: 'image', done, total }),
      cancelled: () => cancelCheck(req.id),
    });
  } catch (e) {
    if (!(e instanceof Cancelled)) throw e;
    reply({ type: 'done', id: req.id, cancelled: true, seconds: (performance.now() - start) / 1000 });
    return;
  }
  const seconds = (performance.now() - start) / 1000;
  const readsDuring = gpuReads - reads;
  const pixels = 3 * size * size;
  for (let i = 0; i < n; i++) {
    const decoded = result.images.slice(i * pixels, (i + 1) * pixels);
    const rgba = toRgba(decoded, size);
    const tokens = Array.from(result.tokens.subarray(i * T, (i + 1) * T), Number);
    reply({ type: 'image', id: req.id, index: i, width: size, height: size, rgba, decoded, tokens },
      [rgba.buffer, decoded.buffer]);
  }
  reply({ type: 'done', id: req.id, cancelled: false, seconds, gpuReads: readsDuring });
}

/** @param {unknown} e */
function errorKind(e) {
  if (e instanceof ChecksumError) return 'checksum';
  const kind = /** @type {any} */ (e)?.kind;
  return kind === 'input' || kind === 'backend' ? kind : 'other';
}

/** @param {MessageEvent<Request>} event */
self.onmessage = async (event) => {
  const req = event.data;
  if (req.type === 'cancel') {
    cancelled.add(req.id);
    return;
  }
  if (busy) {
    reply({ type: 'error', id: req.id, kind: 'input', message: 'busy: wait for the current request or cancel it' });
    return;
  }
  busy = true;
  try {
    if (req.type === 'load') await load(req);
    else if (!model) throw Object.assign(new Error('the model is not loaded'), { kind: 'input' });
    else if (req.task === 'chat') await chat(req);
    else await image(req);
  } catch (e) {
    console.error(e);
    reply({ type: 'error', id: req.id, kind: errorKind(e), message: e instanceof Error ? e.message : String(e) });
  } finally {
    busy = false;
    cancelled.delete(req.id);
  }
};
