// The worker side of createJanusWorker: a thin adapter that runs loadJanus / planJanus and the instances' calls
// in this worker (janus.js), forwarding their callbacks as events and their errors by class name (protocol.js).
//
//   // worker.js of an app:
//   import { serveJanus } from 'janusweb/worker';
//   serveJanus(self);

import { errorData } from './errors.js';
import { LocalJanus } from './janus.js';
import { describePlan } from './plan.js';
import { BundleLoader } from './loader.js';
import { checkOptions } from './options.js';

/** @typedef {import('./protocol.js').Request} Request */
/** @typedef {import('./protocol.js').Reply} Reply */

/**
 * Serve requests arriving at `scope` (a worker's global scope, or any MessagePort-like end) until it closes.
 * @param {{postMessage: (msg: Reply, options?: {transfer?: Transferable[]}) => void,
 *   addEventListener: (type: 'message', listener: (e: MessageEvent<Request>) => void) => void}} scope
 * @param {{assets?: string|URL}} [defaults] the `assets` folder when a load does not name one (default: this
 *   script's folder)
 */
export function serveJanus(scope, defaults = {}) {
  /** @type {Map<number, LocalJanus>} */
  const instances = new Map();
  /** @type {Map<number, AbortController>} */
  const running = new Map();
  let handles = 0;
  const assets = new URL(String(defaults.assets ?? './'), import.meta.url);
  /** @param {Reply} msg @param {Transferable[]} [transfer] */
  const post = (msg, transfer = []) => scope.postMessage(msg, { transfer });

  /** @param {number} handle */
  const instance = (handle) => {
    const j = instances.get(handle);
    if (!j) throw new Error(`no instance ${handle} in this worker (released?)`);
    return j;
  };

  /**
   * @param {Request} req
   * @param {AbortSignal} signal
   * @returns {Promise<{result: any, transfer?: Transferable[], info?: import('./info.js').JanusInfo}>}
   */
  async function run(req, signal) {
    const on = (/** @type {'progress'|'token'|'step'|'preview'} */ event) => (/** @type {any} */ data) =>
      post({ id: req.id, event, data }, event === 'preview' ? [data.rgba.buffer] : []);
    switch (req.op) {
      case 'load': {
        const j = await LocalJanus.load(req.url, checkOptions({ ...req.options, signal, onProgress: on('progress') },
          assets));
        instances.set(++handles, j);
        return { result: { handle: handles, info: j.info } };
      }
      case 'plan': {
        const o = checkOptions(req.options, assets);
        return { result: await describePlan(new BundleLoader(req.url, () => undefined, o.cache !== false), o, o.assets) };
      }
      case 'chat': {
        const j = instance(req.handle);
        const request = /** @type {import('./janus.js').ChatRequest} */ (req.request);
        const result = await j.chat({ ...request, signal, onToken: on('token'), onProgress: on('progress') });
        return { result, info: j.info };
      }
      case 'images': {
        const j = instance(req.handle);
        const request = /** @type {import('./janus.js').ImagesRequest} */ (req.request);
        const result = await j.generateImages({ ...request, signal, onStep: on('step'), onPreview: on('preview'),
          onProgress: on('progress') });
        return { result, info: j.info, transfer: result.images.flatMap((im) => [im.rgba.buffer, im.decoded.buffer]) };
      }
      case 'release':
        await instance(req.handle).release();
        instances.delete(req.handle);
        return { result: null };
      default:
        throw new Error(`unknown request ${/** @type {any} */ (req).op}`);
    }
  }

  scope.addEventListener('message', async (e) => {
    const req = e.data;
    if (req.op === 'abort') {
      running.get(req.target)?.abort();
      return;
    }
    const controller = new AbortController();
    running.set(req.id, controller);
    try {
      const { result, info, transfer } = await run(req, controller.signal);
      post({ id: req.id, result, ...(info ? { info } : {}) }, transfer);
    } catch (thrown) {
      post({ id: req.id, error: errorData(thrown) });
    } finally {
      running.delete(req.id);
    }
  });
}
