// The inference worker: loads the bundle, owns the ONNX Runtime sessions and runs generation, so the page
// stays responsive. Messages: see protocol.js.

import * as ort from 'onnxruntime-web/webgpu';
import { bundleNeeds, chooseBackend, sessionOptions, wasmBackend, wasmDtypes } from './backend.js';
import { BundleLoader, ChecksumError, graphDtypes } from './loader.js';
import { independentOf, onnxNodes } from './onnx-nodes.js';
import { JanusTokenizer } from './tokenizer.js';
import { preprocess } from './preprocess.js';
import { imageDraws } from './sampling.js';
import { Cancelled, IMAGE_EMBEDS, generateImages, generateText } from './generate.js';
import { BoundCache, GrowingCache } from './kv-cache.js';
import { WgslDecoder } from './wgsl/decoder.js';
import { createCpuEngine } from './engines/cpu.js';

/** @typedef {import('./protocol.js').Request} Request */
/** @typedef {import('./protocol.js').Reply} Reply */
/** @typedef {import('./protocol.js').BackendInfo} BackendInfo */
/** @typedef {import('./backend.js').Backend} Backend */

// The graphs the page runs, and the outputs each keeps on the GPU (WebGPU only). The language model is one of
// two graphs: language_model_gqa (fused, KV cache bound in place; WebGPU) or language_model (any backend).
const GPU_OUTPUTS = {
  prepare_inputs_embeds: () => ['inputs_embeds'],
  language_model: (/** @type {string[]} */ outs) => outs,
  language_model_gqa: (/** @type {string[]} */ outs) => outs,
  lm_head: () => [],
  gen_step: () => ['image_ids', 'inputs_embeds', 'tokens_out', 'image_tokens'],
  image_decode: () => [],
};
const GRAPHS = ['prepare_inputs_embeds', 'language_model', 'lm_head', 'gen_step', 'image_decode'];
const FUSED = 'language_model_gqa';
// On WebGPU, the nodes that do not depend on this input run on the CPU EP (see createSession).
/** @type {Record<string, string>} */
const CPU_SIDE = { prepare_inputs_embeds: 'input_ids', [FUSED]: 'inputs_embeds' };
const STRICT_ERROR = 'fallback to CPU EP has been explicitly disabled';
/** The graph a session runs (IMAGE_EMBEDS is a second session of prepare_inputs_embeds). @param {string} name */
const graphOf = (name) => (name === IMAGE_EMBEDS ? 'prepare_inputs_embeds' : name);
const OUT_OF_MEMORY = 'ONNX Runtime Web keeps weights and activations in a WASM heap of at most 4 GB; use WebGPU, '
  + 'or a smaller dtype where the bundle has one';
// onnxruntime-web's limit on one provider option's value: forceCpuNodeNames, joined with newlines.
const OPTION_LIMIT = 8192;

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
 * One graph's session on `backend` at `dtype`. On WebGPU every node runs on the GPU unless named here:
 * - graphs with CPU_SIDE nodes place the nodes that do not depend on that input on the CPU EP by name
 *   (forceCpuNodeNames), and ORT's check session.disable_cpu_ep_fallback cannot be on (it rejects any CPU node,
 *   named or not): prepare_inputs_embeds runs its vision tower and mask arithmetic on the CPU (a text-only call
 *   feeds the vision tower zero-size tensors, which the WebGPU kernels reject), so prompts with an image go
 *   through a second session of the same graph, IMAGE_EMBEDS, all on the GPU; language_model_gqa its three
 *   attention-mask nodes (so GroupQueryAttention gets its sequence lengths without a GPU->CPU read);
 * - every other graph is created with session.disable_cpu_ep_fallback; one that ORT can only place with some
 *   nodes on the CPU EP is created again without it.
 * `cpu` says which case applied: 'named nodes', 'ORT fallback', or null (all on the GPU).
 * @param {BundleLoader} loader
 * @param {Backend} backend
 * @param {string} name
 * @param {string} dtype
 */
async function createSession(loader, backend, name, dtype) {
  const graph = graphOf(name);
  const { model: bytes, externalData } = await loader.graph(graph, dtype);
  const outputs = /** @type {any} */ (loader.manifest).graphs[graph].outputs.map((/** @type {any} */ o) => o.name);
  const onGpu = GPU_OUTPUTS[/** @type {keyof GPU_OUTPUTS} */ (graph)](outputs);
  const forceCpu = backend.ep === 'webgpu' && name in CPU_SIDE ? independentOf(onnxNodes(bytes), CPU_SIDE[name]) : [];
  if (forceCpu.join('\n').length > OPTION_LIMIT) {
    throw Object.assign(new Error(`${name}: the names of its ${forceCpu.length} CPU-side nodes exceed onnxruntime-web's `
      + `${OPTION_LIMIT}-character option (a bundle exported before node names were compacted: export it again)`),
    { kind: 'input' });
  }
  const create = (/** @type {boolean} */ strict) =>
    ort.InferenceSession.create(bytes, sessionOptions(backend, { onGpu, forceCpu, strict, externalData }));
  if (forceCpu.length) return { session: await create(false), cpu: 'named nodes' };
  try {
    return { session: await create(true), cpu: null };
  } catch (e) {
    if (backend.ep !== 'webgpu' || !String(e).includes(STRICT_ERROR)) throw e;
    return { session: await create(false), cpu: 'ORT fallback' };
  }
}

/**
 * The graphs to run on `backend`: on WebGPU the fused language_model_gqa replaces language_model when the bundle
 * has it at the language model's dtype, and IMAGE_EMBEDS joins prepare_inputs_embeds; on WASM a default int8
 * becomes q4 where the bundle has it. Returns session name -> dtype, and a note on what was changed or why the
 * fused graph is not used.
 * @param {import('./loader.js').Manifest} manifest
 * @param {Backend} backend
 * @param {Record<string, string>} dtypes the dtypes of GRAPHS
 * @param {'auto'|'grow'|'wgsl'} kvCache 'grow': language_model whatever the backend; 'wgsl': on WebGPU, the
 *   decoder on the page's WGSL kernels (`wgsl` is then set to the pack's manifest entry, and no language model
 *   session is made)
 * @param {string|null} requested the dtype asked for (WASM swaps a default int8 for q4: see wasmDtypes)
 * @param {'auto'|'cpu'|'ort'} engine on WASM: 'cpu' the page's CPU engine (auto: where the bundle has its CPU
 *   pack; `cpu` is then set to the pack's dtype, and no language_model or lm_head session is made), 'ort' ORT's own
 * @returns {{graphs: Record<string, string>, note: string|null, wgsl?: {bin: string, json: string}, cpu?: string}}
 */
function plan(manifest, backend, dtypes, kvCache, requested, engine) {
  const fused = manifest.graphs[FUSED];
  const dtype = dtypes.language_model;
  if (backend.ep !== 'webgpu') {
    const wasm = wasmDtypes(dtypes, manifest, requested);
    if (engine === 'cpu' || (engine === 'auto' && /** @type {any} */ (manifest).cpu?.[dtype])) {
      const { language_model: _, lm_head: __, ...rest } = wasm.dtypes;
      return { graphs: rest, note: wasm.note, cpu: dtype };
    }
    const why = kvCache === 'wgsl' ? 'the WGSL decoder needs WebGPU: language_model runs on WASM' : null;
    return { graphs: wasm.dtypes, note: [wasm.note, why].filter(Boolean).join('; ') || null };
  }
  const { prepare_inputs_embeds: embeds, language_model: _, ...rest } = dtypes;
  const head = { prepare_inputs_embeds: embeds, [IMAGE_EMBEDS]: embeds };
  const grown = { ...head, language_model: dtype, ...rest };
  if (kvCache === 'grow') return { graphs: grown, note: 'KV cache grown per step (language_model): requested' };
  if (kvCache === 'wgsl') {
    const pack = /** @type {any} */ (manifest).wgsl?.[dtype];
    if (!pack) {
      throw Object.assign(new Error(`the bundle has no ${dtype} WGSL pack: run janusweb wgsl-pack BUNDLE --dtype `
        + `${dtype}`), { kind: 'input' });
    }
    return { graphs: { ...head, ...rest }, note: null, wgsl: pack };
  }
  if (fused && (dtype === 'fp32' || fused.variants?.[dtype])) {
    return { graphs: { ...head, [FUSED]: dtype, ...rest }, note: null };
  }
  const why = fused ? `the bundle has no ${dtype} variant of ${FUSED}` : `the bundle has no ${FUSED}`;
  return { graphs: grown, note: `KV cache grown per step (language_model): ${why}` };
}

/**
 * Sessions for every graph. A quantized graph whose kernels this backend lacks (e.g. GatherBlockQuantized
 * on WASM) runs at fp32, and `dtypes` and `notes` say so.
 * @param {BundleLoader} loader
 * @param {Backend} backend
 * @param {Record<string, string>} wanted graph -> dtype, in creation order
 * @param {number} id
 */
async function createSessions(loader, backend, wanted, id) {
  /** @type {Record<string, ort.InferenceSession>} */
  const sessions = {};
  const dtypes = { ...wanted };
  const names = Object.keys(wanted);
  /** @type {Record<string, string>} */
  const cpuNodes = {};
  const notes = [];
  try {
    for (const [k, name] of names.entries()) {
      reply({ type: 'progress', id, what: 'session', name, done: k, total: names.length });
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
      if (created.cpu) cpuNodes[name] = created.cpu;
    }
  } catch (e) {
    await Promise.all(Object.values(sessions).map((s) => s.release()));
    if (!String(e).includes('bad_alloc')) throw e;
    const manifest = /** @type {import('./loader.js').Manifest} */ (loader.manifest);
    const mb = Math.round(names.slice(0, Object.keys(sessions).length + 1).reduce((sum, n) => {
      const g = manifest.graphs[graphOf(n)];
      return sum + (dtypes[n] === 'fp32' ? g.bytes : g.variants[dtypes[n]].bytes);
    }, 0) / 2 ** 20);
    throw Object.assign(new Error(`out of memory while creating ${Object.keys(sessions).length + 1} of `
      + `${names.length} sessions on ${backend.ep} (${mb} MiB of graphs at `
      + `${[...new Set(Object.values(dtypes))].join('/')}): ${OUT_OF_MEMORY}`), { kind: 'backend' });
  }
  reply({ type: 'progress', id, what: 'session', name: 'all', done: names.length, total: names.length });
  return { sessions, cpuNodes, dtypes, notes };
}

/**
 * How the language model runs: the WGSL decoder (pack given), the fused graph with its KV cache bound in place,
 * or language_model with the cache grown per step. Returns the KV cache factory and its description.
 * @param {BundleLoader} loader
 * @param {Record<string, ort.InferenceSession>} sessions
 * @param {any} dims config.json's janusweb block
 * @param {GPUDevice|null} device
 * @param {{bin: string, json: string}|undefined} pack
 * @param {string} dtype
 */
async function languageModel(loader, sessions, dims, device, pack, dtype) {
  if (pack) {
    const desc = await loader.json(pack.json);
    const source = /** @type {any} */ (loader.manifest).files[`onnx/${desc.source}`]?.sha256;
    if (source !== desc.source_sha256) {
      throw Object.assign(new Error(`the ${dtype} WGSL pack was made from another ${desc.source}: run janusweb `
        + `wgsl-pack BUNDLE --dtype ${dtype} again`), { kind: 'input' });
    }
    const dec = new WgslDecoder(/** @type {GPUDevice} */ (device), desc, await loader.file(pack.bin));
    return { newCache: dec.newCache.bind(dec), kvCache: `WGSL decoder (${pack.bin}): KV cache bound in place` };
  }
  if (FUSED in sessions) {
    return { newCache: (/** @type {number} */ rows, /** @type {number} */ capacity) =>
      new BoundCache(sessions[FUSED], dims, /** @type {GPUDevice} */ (device), rows, capacity),
    kvCache: `${FUSED}: bound in place, fixed capacity` };
  }
  return { newCache: (/** @type {number} */ rows) => new GrowingCache(sessions.language_model, dims, rows),
    kvCache: 'language_model: grown per step' };
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
  const kvCache = req.kvCache ?? 'auto';
  const engine = req.engine ?? 'auto';
  let created, chosen = plan(manifest, backend, dtypes, kvCache, req.dtype, engine);
  try {
    created = await createSessions(loader, backend, chosen.graphs, req.id);
  } catch (e) {
    if (backend.ep !== 'webgpu' || e instanceof ChecksumError || req.backend === 'webgpu') throw e;
    backend = wasmBackend([`WebGPU failed while creating sessions (${e instanceof Error ? e.message : e}); using WASM`]);
    chosen = plan(manifest, backend, dtypes, kvCache, req.dtype, engine);
    created = await createSessions(loader, backend, chosen.graphs, req.id);
  }
  const device = backend.ep === 'webgpu' ? await ort.env.webgpu.device : null;
  const { sessions } = created;
  const used = created.dtypes;
  let decoder;
  if (chosen.cpu) { // the CPU engine: its threads are the backend's, capped by the request's
    const threads = Math.max(1, Math.min(backend.threads, req.threads ?? backend.threads));
    const cpu = await createCpuEngine(loader, chosen.cpu, threads, new URL('./cpu/', import.meta.url));
    sessions.lm_head = /** @type {any} */ (cpu.lmHead);
    Object.assign(used, cpu.dtypes);
    backend = { ...backend, threads };
    decoder = cpu;
  } else {
    decoder = await languageModel(loader, sessions, config.janusweb, device, chosen.wgsl, dtypes.language_model);
  }
  if (chosen.wgsl) used.language_model = dtypes.language_model;
  model = { loader, tokenizer, dims: config.janusweb, pre, graphs: { sessions, device, newCache: decoder.newCache } };
  const main = req.dtype ?? used[FUSED in used ? FUSED : 'language_model'];
  const odd = Object.keys(used).filter((g) => used[g] !== main).map((g) => `${g}: ${used[g]}`);
  /** @type {BackendInfo} */
  const info = { ep: backend.ep, adapter: backend.adapter, dtype: odd.length ? `${main} (${odd.join(', ')})` : main,
    dtypes: used, threads: backend.threads, cpuNodes: created.cpuNodes, kvCache: decoder.kvCache,
    notes: [...backend.notes, ...missing, ...created.notes, ...(chosen.note ? [chosen.note] : [])] };
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
    const message = e instanceof Error ? e.message : String(e);
    if (message.includes('bad_alloc')) { // while running: the heap filled up with activations
      reply({ type: 'error', id: req.id, kind: 'backend', message: `out of memory while running: ${OUT_OF_MEMORY}` });
    } else {
      reply({ type: 'error', id: req.id, kind: errorKind(e), message });
    }
  } finally {
    busy = false;
    cancelled.delete(req.id);
  }
};
