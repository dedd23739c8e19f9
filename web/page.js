// The page's shared parts: its state (mirrored as `window.janusweb`, which tests and curious users read), the
// inference worker and its request/reply wiring, the status line and the phase labels.

/** @typedef {import('./protocol.js').Reply} Reply */
/** @typedef {import('./protocol.js').BackendInfo} BackendInfo */

export const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));

export const state = {
  ready: false,
  /** @type {import('./protocol.js').LoadPlan|null} */ plan: null,
  /** @type {BackendInfo|null} */ backend: null,
  /** @type {{kind: string, message: string}|null} */ error: null,
  /** @type {string[]} */ notices: [], // URL parameters or values the page does not know, one line each
  /** @type {string[]} */ downloads: [], // the files the worker fetched (or read from the cache), in order
  /** @type {string[]} */ phases: [], // every phase label the page showed, in order (load, then each request)
  /** @type {{tokens: number[], text: string, done: boolean, tokensPerSecond: number, gpuReads?: number,
   *   firstTokenSeconds?: number|null, prefillTokens?: number, reusedTokens?: number}} the current turn */
  chat: { tokens: [], text: '', done: false, tokensPerSecond: 0 },
  /** @type {{role: string, text: string, image: boolean}[]} */ transcript: [],
  /** @type {{tokens: number[][], decoded: Float32Array[], done: boolean, seconds: number, gpuReads?: number,
   *   previews: {index: number, step: number}[], previewSeconds?: number}} */
  images: { tokens: [], decoded: [], done: false, seconds: 0, previews: [] },
};
Object.assign(window, { janusweb: state });

export const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
let nextId = 1;
/** @type {Map<number, (msg: Reply) => void>} */
const handlers = new Map();
worker.onmessage = (/** @type {MessageEvent<Reply>} */ e) => handlers.get(e.data.id)?.(e.data);
worker.onerror = (e) => fail({ kind: 'other', message: `the worker failed to start: ${e.message}` });

/**
 * Send a request; `onReply` sees every reply to it until done or error.
 * @param {Omit<import('./protocol.js').Request, 'id'>} msg
 * @param {(msg: Reply) => void} onReply
 */
export function send(msg, onReply) {
  const id = nextId++;
  handlers.set(id, (reply) => {
    if (reply.type === 'done' || reply.type === 'error') handlers.delete(id);
    onReply(reply);
  });
  worker.postMessage({ ...msg, id });
  return id;
}

/** @param {string} text @param {boolean} [error] */
export function status(text, error = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
}

/** @param {{kind: string, message: string}} err */
export function fail(err) {
  state.error = err;
  status(err.kind === 'checksum' ? `Checksum error: ${err.message}` : `Error: ${err.message}`, true);
}

/** A request ended: a "busy" error (a request refused while this one ran) has no reason to stay. */
export function workEnded() {
  if (state.error?.kind !== 'busy') return;
  state.error = null;
  status(state.ready ? 'Ready' : '');
}

/** Record a phase label (once per change); shown in the element `id` when given. @param {string} label @param {string} [id] */
export function phase(label, id) {
  if (state.phases.at(-1) !== label) state.phases.push(label);
  if (id) $(id).textContent = label;
}

/** @param {boolean} on @param {string} go @param {string} stop */
export function running(on, go, stop) {
  $(go).disabled = on;
  $(stop).disabled = !on;
}

/** @param {number} n bytes */
export function size(n) {
  const [unit, scale] = n >= 2 ** 30 ? ['GB', 1e9] : n >= 2 ** 20 ? ['MB', 1e6] : ['kB', 1e3];
  return `${(n / scale).toFixed(1)} ${unit}`;
}
