// createJanusWorker: the library's functions run in a Web Worker (its script calls serveJanus: worker.js), with
// the same interface as on this thread. Abort, progress, tokens, steps, previews and errors (as their classes)
// cross the boundary; images come back as transferred buffers.

import { janusApi } from './api.js';
import { reviveError } from './errors.js';
import { bundleUrl } from './options.js';

/** @typedef {import('./protocol.js').Request} Request */
/** @typedef {import('./protocol.js').Reply} Reply */
/** @typedef {import('./options.js').LoadOptions} LoadOptions */
/** @typedef {import('./options.js').PlanOptions} PlanOptions */

/** @typedef {{[event: string]: ((data: any) => void)|undefined}} Handlers */

/**
 * @typedef {object} JanusWorker
 * @property {(modelUrl: string|URL, options?: LoadOptions) => Promise<import('./api.js').Janus>} loadJanus
 *   loadJanus, run in the worker
 * @property {(modelUrl: string|URL, options?: PlanOptions) => Promise<import('./plan.js').LoadPlan>} planJanus
 * @property {() => void} terminate ends the worker (and every instance in it)
 */

/**
 * The library in `worker`: a module worker whose script calls `serveJanus(self)` (the package's `./worker`).
 * @param {Worker} worker
 * @returns {JanusWorker}
 */
export function createJanusWorker(worker) {
  let ids = 0;
  /** @type {Map<number, {resolve: (r: {result: any, info?: any}) => void, reject: (e: unknown) => void, on: Handlers}>} */
  const pending = new Map();
  worker.addEventListener('message', (/** @type {MessageEvent<Reply>} */ e) => {
    const msg = e.data, call = pending.get(msg.id);
    if (!call) return;
    if ('event' in msg) call.on[msg.event]?.(msg.data);
    else if ('error' in msg) call.reject(reviveError(msg.error));
    else call.resolve(msg);
    if (!('event' in msg)) pending.delete(msg.id);
  });
  worker.addEventListener('error', (e) => {
    for (const call of pending.values()) call.reject(new Error(`the worker failed: ${e.message}`));
    pending.clear();
  });

  /**
   * @param {object} msg a Request without its id @param {AbortSignal|undefined} signal @param {Handlers} on
   * @returns {Promise<{result: any, info?: import('./info.js').JanusInfo}>}
   */
  function call(msg, signal, on) {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = ++ids;
    return new Promise((resolve, reject) => {
      const abort = () => worker.postMessage({ op: 'abort', target: id });
      signal?.addEventListener('abort', abort, { once: true });
      const done = () => signal?.removeEventListener('abort', abort);
      pending.set(id, {
        resolve: (r) => { done(); resolve(r); },
        reject: (e) => { done(); reject(signal?.aborted ? signal.reason : e); },
        on,
      });
      worker.postMessage({ ...msg, id });
    });
  }

  /** An instance in the worker, as api.js's core. @param {number} handle @param {import('./info.js').JanusInfo} first */
  function remote(handle, first) {
    let info = first;
    /** @template T @param {Promise<{result: T, info?: any}>} p */
    const keep = async (p) => {
      const r = await p;
      if (r.info) info = r.info;
      return r.result;
    };
    return janusApi({
      info: () => info,
      chat: ({ signal, onToken, onProgress, ...request }) =>
        keep(call({ op: 'chat', handle, request }, signal, { token: onToken, progress: onProgress })),
      generateImages: ({ signal, onStep, onPreview, onProgress, ...request }) =>
        keep(call({ op: 'images', handle, request }, signal, { step: onStep, preview: onPreview, progress: onProgress })),
      release: () => keep(call({ op: 'release', handle }, undefined, {})),
    });
  }

  return {
    async loadJanus(modelUrl, options = {}) {
      const { signal, onProgress, ...rest } = options;
      const { result } = await call({ op: 'load', url: bundleUrl(modelUrl), options: rest }, signal,
        { progress: onProgress });
      return remote(result.handle, result.info);
    },
    async planJanus(modelUrl, options = {}) {
      const { signal, onProgress, ...rest } = options;
      return (await call({ op: 'plan', url: bundleUrl(modelUrl), options: rest }, signal, {})).result;
    },
    terminate: () => worker.terminate(),
  };
}
