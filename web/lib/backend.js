// Backend choice at start-up and the session options of each execution provider.
//
// WebGPU when an adapter exists and its limits fit the bundle (largest buffer vs maxBufferSize and
// maxStorageBufferBindingSize; the features its dtypes need, e.g. shader-f16), else WASM (threads when the page is
// cross-origin isolated), else a clear message. One execution provider per session.

/**
 * @typedef {object} Backend
 * @property {'webgpu'|'wasm'} ep
 * @property {string} adapter what runs the graphs, in words
 * @property {number} threads WASM threads (also used by WebGPU sessions for their CPU-side work)
 * @property {string[]} notes why this backend, in words (WebGPU unavailable, no threads...)
 * @property {string} why the choice in one plain sentence, for the page's first screen
 * @property {GPUAdapter} [gpu] WebGPU: the adapter (requestDevice makes the page's device from it)
 * @property {Needs} [needs] WebGPU: what the bundle needs of it
 * @property {GPUDevice} [device] WebGPU: the page's device (requestDevice), given to every session
 * @property {boolean} [software] WebGPU: the adapter renders in software (isSoftware)
 */

/**
 * @typedef {object} Needs
 * @property {{bytes: number, what: string}} largest the largest GPU buffer of what the page loads, and what it is
 * @property {Record<string, string[]>} features adapter features the dtypes need -> the dtypes that need them
 */

/**
 * The largest GPU buffer of what a plan loads: each graph's largest initializer at its dtype and each engine
 * pack's largest tensor, as the manifest records them (`buffers`: janusweb/buffers.py, written by quantize and
 * pack; export/limits.py's `per_graph` for fp32), or, for a graph it does not record, the token embedding / LM
 * head matrix at the dtype's bits; and one layer's KV cache for 4 images with CFG (8 rows) at 1024 prompt tokens
 * plus the image tokens. The bits of a dtype and the adapter features it needs come from the manifest's dtype
 * table (dtypes.js); a dtype of unknown bits counts as 32.
 * @param {import('./loader.js').Manifest} manifest
 * @param {any} config config.json
 * @param {Record<string, import('./dtypes.js').DtypeInfo>} table the manifest's dtype table
 * @param {Record<string, string>} graphs graph -> dtype, the graphs the plan loads
 * @param {{engine: string, dtype: string}[]} [packs] the engine packs it loads
 * @returns {Needs}
 */
export function bundleNeeds(manifest, config, table, graphs, packs = []) {
  const j = config.janusweb;
  const recorded = /** @type {any} */ (manifest).buffers ?? {};
  const rows = 8, positions = 1024 + j.num_image_tokens;
  const candidates = [{ bytes: rows * j.num_key_value_heads * positions * j.head_dim * 4,
    what: `KV cache of one layer, ${rows} rows x ${positions} positions` }];
  for (const [graph, dtype] of Object.entries(graphs)) {
    const r = recorded.variants?.[graph]?.[dtype] ?? (dtype === 'fp32' ? recorded.per_graph?.[graph] : undefined);
    if (r) {
      candidates.push({ bytes: r.bytes, what: `${graph} ${dtype} ${r.tensor}` });
    } else if (graph === 'lm_head' || graph === 'prepare_inputs_embeds') {
      candidates.push({ bytes: j.vocab_size * j.hidden_size * (table[dtype]?.bits ?? 32) / 8,
        what: `${graph} ${dtype} token matrix, estimated` });
    }
  }
  for (const { engine, dtype } of packs) {
    const r = recorded.packs?.[engine]?.[dtype];
    if (r) candidates.push({ bytes: r.bytes, what: `${engine} ${dtype} pack ${r.tensor}` });
  }
  const largest = candidates.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  /** @type {Record<string, string[]>} */
  const features = {};
  for (const d of new Set(Object.values(graphs))) {
    const f = table[d]?.requires;
    if (f) (features[f] ??= []).push(table[d].label);
  }
  return { largest, features };
}

// The buffer limits a bundle's largest buffer must fit, binding size first (it is the smaller on most adapters).
const BUFFER_LIMITS = /** @type {const} */ (['maxStorageBufferBindingSize', 'maxBufferSize']);

/**
 * Why `limits` (an adapter's or a device's) cannot hold the bundle's largest buffer, in one line naming the
 * limit, or null.
 * @param {Needs} needs @param {Record<string, number>} limits @param {string} whose @param {string} [name]
 */
export function bufferRefusal(needs, limits, whose, name) {
  const limit = BUFFER_LIMITS.find((k) => needs.largest.bytes > limits[k]);
  if (!limit) return null;
  return `this bundle's largest buffer, ${mb(needs.largest.bytes)} (${needs.largest.what}), exceeds ${whose} `
    + `${limit} ${mb(limits[limit])}${name ? ` (${name})` : ''}`;
}

// What ONNX Runtime's WebGPU provider asks of the adapter when it makes its own device: the page's device asks
// for the same (the buffer limits at the adapter's values, since activations are sized per request: the check
// before loading holds the bundle's largest buffer against them), and for the features the dtypes need.
const ORT_LIMITS = ['maxComputeWorkgroupStorageSize', 'maxComputeWorkgroupsPerDimension', ...BUFFER_LIMITS,
  'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ'];
const OPTIONAL_FEATURES = ['shader-f16', 'subgroups'];

/**
 * The page's GPUDevice, shared by every ONNX Runtime session and the page's own kernels: requiredLimits as
 * ORT_LIMITS says, checked against the bundle's largest buffer once made.
 * @param {GPUAdapter} adapter @param {Needs} needs
 */
export async function requestDevice(adapter, needs) {
  /** @type {Record<string, number>} */
  const requiredLimits = {};
  for (const k of ORT_LIMITS) requiredLimits[k] = /** @type {any} */ (adapter.limits)[k];
  const requiredFeatures = /** @type {GPUFeatureName[]} */ (OPTIONAL_FEATURES.filter((f) => adapter.features.has(f)));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const refusal = bufferRefusal(needs, /** @type {any} */ (device.limits), 'the WebGPU device\'s');
  if (refusal) {
    device.destroy();
    throw new Error(refusal);
  }
  return device;
}

/** An adapter in words: vendor, architecture, device, description. @param {GPUAdapter} adapter */
export function describeAdapter(adapter) {
  const i = adapter.info || {};
  const name = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ') || 'unknown adapter';
  return isSoftware(adapter) ? `${name} (software fallback adapter)` : name;
}

/**
 * Whether the adapter renders in software (the browser's fallback adapter, or SwiftShader by name): slower than
 * the page's WASM path, so automatic mode does not pick it. @param {GPUAdapter} adapter
 */
export function isSoftware(adapter) {
  const i = /** @type {any} */ (adapter.info || {});
  return !!(i.isFallbackAdapter || /swiftshader/i.test(`${i.vendor} ${i.architecture} ${i.device} ${i.description}`));
}

/**
 * Why WebGPU cannot run the bundle, or null with the adapter's name when it can.
 * @param {Needs} needs
 * @returns {Promise<{adapter: string|null, reason: string|null, software?: boolean, gpu?: GPUAdapter}>}
 */
export async function probeWebGPU(needs) {
  if (!('gpu' in navigator)) return { adapter: null, reason: 'this browser has no WebGPU (navigator.gpu)' };
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return { adapter: null, reason: 'WebGPU is present but no adapter is available' };
  const name = describeAdapter(adapter);
  const software = isSoftware(adapter);
  const refusal = bufferRefusal(needs, /** @type {any} */ (adapter.limits), "this adapter's", name);
  if (refusal) return { adapter: name, reason: refusal };
  for (const [feature, dtypes] of Object.entries(needs.features)) {
    if (!adapter.features.has(feature)) {
      return { adapter: name, reason: `${name} lacks ${feature}, which the ${dtypes.join('/')} graphs need`, software };
    }
  }
  return { adapter: name, reason: null, software, gpu: adapter };
}

/** Bytes in decimal megabytes. @param {number} n */
function mb(n) {
  return `${(n / 1e6).toFixed(0)} MB`;
}

/** WASM threads: all cores (at most 8) when cross-origin isolated, else 1. */
export function wasmThreads() {
  return self.crossOriginIsolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 8)) : 1;
}

/** A WASM backend, with why WebGPU is not used. @param {string[]} notes @param {string} [why] */
export function wasmBackend(notes, why = 'Running on your CPU (WebAssembly).') {
  if (typeof WebAssembly !== 'object') {
    throw new Error('this browser runs neither WebGPU nor WebAssembly; the model cannot run here');
  }
  const threads = wasmThreads();
  const extra = self.crossOriginIsolated ? [] : ['page not cross-origin isolated (COOP/COEP): WASM runs on 1 thread'];
  return { ep: /** @type {const} */ ('wasm'), adapter: `CPU (WebAssembly, ${threads} thread${threads > 1 ? 's' : ''})`,
    threads, notes: [...notes, ...extra], why };
}

/**
 * @param {'auto'|'webgpu'|'wasm'} requested
 * @param {Needs} needs
 * @returns {Promise<Backend>}
 */
export async function chooseBackend(requested, needs) {
  if (requested === 'wasm') return wasmBackend(['WASM requested'], 'Running on your CPU, as asked (?backend=wasm).');
  const probe = await probeWebGPU(needs);
  const webgpu = () => ({ ep: /** @type {const} */ ('webgpu'), adapter: /** @type {string} */ (probe.adapter),
    threads: wasmThreads(), notes: /** @type {string[]} */ ([]), gpu: probe.gpu, needs, software: !!probe.software });
  if (probe.reason === null && requested === 'webgpu') {
    return { ...webgpu(), why: `Running on WebGPU, as asked (?backend=webgpu)${probe.software
      ? ', although the only adapter renders in software and is slower than the CPU path' : ''}.` };
  }
  if (probe.reason === null && !probe.software) {
    return { ...webgpu(), why: 'Running on your GPU: it has WebGPU and the model fits its limits.' };
  }
  if (probe.reason === null) {
    return wasmBackend([`WebGPU not used: ${probe.adapter} renders in software (?backend=webgpu forces it)`],
      'Running on your CPU: the only GPU this browser offers is a software renderer, slower than the CPU path.');
  }
  return wasmBackend([`WebGPU not used: ${probe.reason}`], `Running on your CPU: ${probe.reason}.`);
}

/**
 * Session options for one graph, on one execution provider. On WebGPU: the outputs named in `onGpu` stay in
 * GPU buffers; `forceCpu` names nodes to run on the CPU EP (with the NCHW layout, so that no layout transposes
 * are added between them and placed on the GPU, which would copy their data back and forth); `strict` forbids
 * any other CPU fallback (session.disable_cpu_ep_fallback).
 * @param {Backend} backend
 * @param {{onGpu: string[], forceCpu: string[], strict: boolean, externalData: {path: string, data: Uint8Array}[]}} opts
 * @returns {import('onnxruntime-web').InferenceSession.SessionOptions}
 */
export function sessionOptions(backend, { onGpu, forceCpu, strict, externalData }) {
  const base = { graphOptimizationLevel: /** @type {const} */ ('all'), logSeverityLevel: /** @type {const} */ (3),
    ...(externalData.length ? { externalData } : {}) };
  if (backend.ep === 'wasm') return { ...base, executionProviders: ['wasm'] };
  return {
    ...base,
    executionProviders: [{ name: 'webgpu', ...(backend.device ? { device: backend.device } : {}),
      ...(forceCpu.length ? { preferredLayout: /** @type {const} */ ('NCHW'), forceCpuNodeNames: forceCpu } : {}) }],
    preferredOutputLocation: Object.fromEntries(onGpu.map((name) => [name, /** @type {const} */ ('gpu-buffer')])),
    ...(strict ? { extra: { session: { disable_cpu_ep_fallback: '1' } } } : {}),
  };
}
