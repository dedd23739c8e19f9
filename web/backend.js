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
 */

/**
 * @typedef {object} Needs
 * @property {number} largestBuffer bytes of the largest GPU buffer the bundle needs (estimate)
 * @property {Record<string, string[]>} features adapter features the dtypes need -> the dtypes that need them
 */

/**
 * The largest buffer: the token embedding / LM head matrix at its dtype, or one layer's KV cache for 4 images
 * with CFG (8 rows) at 1024 prompt tokens plus the image tokens, whichever is larger.
 * The bits of a dtype and the adapter features it needs come from the manifest's dtype table (dtypes.js); a dtype
 * of unknown bits counts as 32.
 * @param {any} config config.json
 * @param {Record<string, import('./dtypes.js').DtypeInfo>} table the manifest's dtype table
 * @param {Record<string, string>} dtypes graph -> dtype
 * @returns {Needs}
 */
export function bundleNeeds(config, table, dtypes) {
  const j = config.janusweb;
  const embedBytes = (table[dtypes.lm_head]?.bits ?? 32) / 8;
  const embedding = j.vocab_size * j.hidden_size * embedBytes;
  const kv = 8 * j.num_key_value_heads * (1024 + j.num_image_tokens) * j.head_dim * 4;
  /** @type {Record<string, string[]>} */
  const features = {};
  for (const d of new Set(Object.values(dtypes))) {
    const f = table[d]?.requires;
    if (f) (features[f] ??= []).push(table[d].label);
  }
  return { largestBuffer: Math.max(embedding, kv), features };
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
 * @returns {Promise<{adapter: string|null, reason: string|null, software?: boolean}>}
 */
export async function probeWebGPU(needs) {
  if (!('gpu' in navigator)) return { adapter: null, reason: 'this browser has no WebGPU (navigator.gpu)' };
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return { adapter: null, reason: 'WebGPU is present but no adapter is available' };
  const name = describeAdapter(adapter);
  const software = isSoftware(adapter);
  const { maxBufferSize, maxStorageBufferBindingSize } = adapter.limits;
  const limit = Math.min(maxBufferSize, maxStorageBufferBindingSize);
  if (needs.largestBuffer > limit) {
    return { adapter: name, reason: `${name}: largest buffer ${mib(needs.largestBuffer)} exceeds the adapter's ` +
      `limit ${mib(limit)} (maxBufferSize ${mib(maxBufferSize)}, ` +
      `maxStorageBufferBindingSize ${mib(maxStorageBufferBindingSize)})` };
  }
  for (const [feature, dtypes] of Object.entries(needs.features)) {
    if (!adapter.features.has(feature)) {
      return { adapter: name, reason: `${name} lacks ${feature}, which the ${dtypes.join('/')} graphs need`, software };
    }
  }
  return { adapter: name, reason: null, software };
}

/** @param {number} n */
function mib(n) {
  return `${(n / 2 ** 20).toFixed(0)} MiB`;
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
    threads: wasmThreads(), notes: /** @type {string[]} */ ([]) });
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
    executionProviders: [
      forceCpu.length ? { name: 'webgpu', preferredLayout: 'NCHW', forceCpuNodeNames: forceCpu } : 'webgpu'],
    preferredOutputLocation: Object.fromEntries(onGpu.map((name) => [name, /** @type {const} */ ('gpu-buffer')])),
    ...(strict ? { extra: { session: { disable_cpu_ep_fallback: '1' } } } : {}),
  };
}
