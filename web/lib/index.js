// janusweb: Janus-Pro in the browser (WebGPU, with a WebAssembly fallback) as a library. Importing it does
// nothing by itself: no globals, no prototype patched, no worker started; every state lives in an instance.
//
//   import { loadJanus } from 'janusweb';
//   const janus = await loadJanus('model/', { onProgress: console.log });
//   const reply = await janus.chat.completions.create({ messages: [{ role: 'user', content: 'Hello' }] });
//
// createJanusWorker(worker) gives the same functions run in a Web Worker (its script: serveJanus from
// 'janusweb/worker').

import { janusApi } from './api.js';
import { LocalJanus } from './janus.js';
import { BundleLoader } from './loader.js';
import { bundleUrl, checkOptions } from './options.js';
import { describePlan } from './plan.js';

export { createJanusWorker } from './worker-client.js';
export { PHASES } from './generate.js';
export {
  JanuswebError, InputError, BackendError, OutOfMemoryError, MissingKernelError, CpuFallbackError, ChecksumError,
  BusyError, BundleFormatError, DownloadError, errorKind,
} from './errors.js';

/** @typedef {import('./api.js').Janus} Janus */
/** @typedef {import('./info.js').JanusInfo} JanusInfo */
/** @typedef {import('./options.js').LoadOptions} LoadOptions */
/** @typedef {import('./options.js').PlanOptions} PlanOptions */
/** @typedef {import('./options.js').Progress} Progress */
/** @typedef {import('./plan.js').LoadPlan} LoadPlan */
/** @typedef {import('./janus.js').ChatRequest} ChatRequest */
/** @typedef {import('./janus.js').ChatResult} ChatResult */
/** @typedef {import('./janus.js').ImagesRequest} ImagesRequest */
/** @typedef {import('./janus.js').ImagesResult} ImagesResult */
/** @typedef {import('./worker-client.js').JanusWorker} JanusWorker */

/** The default `assets` folder: the one of the script that holds the library (a bundle, or this file). */
const defaultAssets = () => new URL('./', import.meta.url);

/**
 * Load a janusweb bundle (the folder `janusweb export` wrote, served over HTTP) on this thread.
 * @param {string|URL} modelUrl the bundle's folder
 * @param {LoadOptions} [options]
 * @returns {Promise<Janus>}
 */
export async function loadJanus(modelUrl, options = {}) {
  const j = await LocalJanus.load(bundleUrl(modelUrl), checkOptions(options, defaultAssets()));
  return janusApi({ info: () => j.info, chat: (r) => j.chat(r), generateImages: (r) => j.generateImages(r),
    release: () => j.release() });
}

/**
 * What loadJanus would do with these options — backend, engine, files and bytes, what is cached — reading only
 * the bundle's small JSON files.
 * @param {string|URL} modelUrl
 * @param {PlanOptions} [options]
 * @returns {Promise<LoadPlan>}
 */
export async function planJanus(modelUrl, options = {}) {
  const o = checkOptions(options, defaultAssets());
  return describePlan(new BundleLoader(bundleUrl(modelUrl), () => undefined, o.cache !== false), o, o.assets);
}
