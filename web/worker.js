// The inference worker: a thin message handler (protocol.js). It loads the bundle (model.js) and runs the
// generate requests (requests.js) one at a time, so the page stays responsive; errors go back with their kind.

import './gpu-reads.js';
import { InputError, errorKind, fromOrt } from './errors.js';
import { BundleLoader } from './loader.js';
import { loadModel } from './model.js';
import { describePlan } from './plan.js';
import { chat, endConversation, image } from './requests.js';

/** @typedef {import('./protocol.js').Request} Request */
/** @typedef {import('./protocol.js').Reply} Reply */

/** @type {import('./model.js').Model|null} */
let model = null;
let busy = false;
const cancelled = new Set();

/** @param {Reply} msg @param {Transferable[]} [transfer] */
function reply(msg, transfer = []) {
  self.postMessage(msg, { transfer });
}

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

/**
 * The one task wrapper: one request at a time; any error goes back as an error reply with its kind.
 * @param {number} id
 * @param {() => Promise<void>} work
 */
async function task(id, work) {
  if (busy) {
    reply({ type: 'error', id, kind: 'busy', message: 'busy: wait for the current request or cancel it' });
    return;
  }
  busy = true;
  try {
    await work();
  } catch (thrown) {
    console.error(thrown);
    const e = fromOrt(thrown); // while running: the WASM heap filled up with activations
    reply({ type: 'error', id, kind: errorKind(e), message: e instanceof Error ? e.message : String(e) });
  } finally {
    busy = false;
    cancelled.delete(id);
  }
}

/** The loaded model, or an InputError. */
function loaded() {
  if (!model) throw new InputError('the model is not loaded');
  return model;
}

/** @param {import('./protocol.js').LoadRequest} req */
async function load(req) {
  const old = model;
  model = null;
  endConversation();
  await old?.release();
  model = await loadModel(req, reply);
  reply({ type: 'done', id: req.id, cancelled: false, backend: model.info });
}

/** @param {MessageEvent<Request>} event */
self.onmessage = (event) => {
  const req = event.data;
  const isCancelled = () => cancelCheck(req.id);
  switch (req.type) {
    case 'cancel':
      cancelled.add(req.id);
      return;
    case 'load':
      return task(req.id, () => load(req));
    case 'plan':
      return task(req.id, async () => reply({ type: 'done', id: req.id, cancelled: false,
        plan: await describePlan(new BundleLoader(req.base, () => undefined), req) }));
    case 'generate':
      return task(req.id, () => (req.task === 'chat' ? chat(loaded(), req, reply, isCancelled)
        : image(loaded(), req, reply, isCancelled)));
    default:
      reply({ type: 'error', id: /** @type {any} */ (req).id, kind: 'input',
        message: `unknown request ${/** @type {any} */ (req).type}` });
  }
};
