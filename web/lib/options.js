// The options of loadJanus / planJanus, checked once: an unknown option or value is an InputError naming it (a
// typo must not silently load the defaults). Progress events are typed here.

import { InputError } from './errors.js';

/**
 * @typedef {object} PlanOptions
 * @property {'auto'|'webgpu'|'wasm'} [backend] default 'auto': WebGPU on a hardware adapter whose limits fit the
 *   bundle, else WASM (a software adapter is never chosen by itself)
 * @property {string} [engine] the decoder engine: 'auto' (default), 'ort-gqa', 'ort-grow', 'wgsl', 'cpu'
 * @property {string|null} [dtype] 'fp32', 'int8', 'q4', 'fp16'; default: the bundle's
 * @property {number} [threads] at most this many WASM threads (default: the cores, at most 8, when cross-origin
 *   isolated; else 1)
 * @property {boolean} [memory64] the CPU engine's Memory64 build even where a 32-bit memory holds the model (tests,
 *   benchmarks; default: the 64-bit build only where the model does not fit 32 bits and the browser runs it)
 * @property {boolean} [cache] keep downloaded files in the Cache API and read them from it (default true)
 * @property {string|URL} [assets] the folder where the library's own files are served (`ort/`: ONNX Runtime's
 *   wasm; `cpu/`: the CPU engine's kernels and thread): default, the folder of the script that holds the library
 *   (the package's `assets/` copied beside your bundle)
 * @property {AbortSignal} [signal] abort the load (downloads stop; nothing stays loaded)
 * @property {(p: Progress) => void} [onProgress] downloads and session creation
 */

/**
 * @typedef {PlanOptions & {countGpuWork?: boolean}} LoadOptions `countGpuWork`: count the WebGPU device's
 *   dispatches, submits and reads (results then carry `gpu` counts); off by default (it wraps the instance's
 *   device, never a prototype)
 */

/**
 * A typed progress event.
 * @typedef {{what: 'download', name: string, done: number, total: number, cached?: boolean}
 *   | {what: 'session', name: string, done: number, total: number}
 *   | {what: 'phase', name: string, ms: number}
 *   | {what: 'step', name: 'image', done: number, total: number}} Progress `phase`: a request's phase begins
 *   (its label: generate.js's PHASES), `ms` after the request began (the clock of its tokens' and steps' `ms`);
 *   `session`: name 'all' once the engine is being prepared
 */

const BACKENDS = ['auto', 'webgpu', 'wasm'];
const KNOWN = ['backend', 'engine', 'dtype', 'threads', 'memory64', 'cache', 'assets', 'signal', 'onProgress', 'countGpuWork'];

/**
 * The options with their defaults, or an InputError naming the first bad one.
 * @param {LoadOptions} o
 * @param {URL} defaultAssets
 */
export function checkOptions(o, defaultAssets) {
  const unknown = Object.keys(o).find((k) => !KNOWN.includes(k));
  if (unknown) throw new InputError(`unknown option ${unknown}: the options are ${KNOWN.join(', ')}`);
  const backend = o.backend ?? 'auto';
  if (!BACKENDS.includes(backend)) throw new InputError(`backend must be one of ${BACKENDS.join(', ')}, not ${backend}`);
  if (o.threads !== undefined && !(Number.isInteger(o.threads) && o.threads >= 1)) {
    throw new InputError('threads must be a whole number, at least 1');
  }
  const assets = new URL(String(o.assets ?? defaultAssets), defaultAssets);
  if (!assets.pathname.endsWith('/')) assets.pathname += '/';
  return { ...o, backend: /** @type {'auto'|'webgpu'|'wasm'} */ (backend), engine: o.engine ?? 'auto',
    dtype: o.dtype ?? null, assets };
}

/** The bundle's URL as a folder URL (ending with '/'), relative to the page. @param {string|URL} url */
export function bundleUrl(url) {
  const base = typeof location === 'undefined' ? undefined : location.href;
  const u = new URL(String(url), base);
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u.href;
}
