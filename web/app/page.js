// The page's shared parts: its state (mirrored as `window.janusweb`, which tests and curious users read), the
// library running in a worker (createJanusWorker: the public API), the status line and the phase labels.

import { createJanusWorker, errorKind } from '../lib/index.js';

/** @typedef {import('../lib/index.js').JanusInfo} BackendInfo */

export const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));

export const state = {
  ready: false,
  /** @type {import('../lib/index.js').LoadPlan|null} */ plan: null,
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

export const janusWorker = createJanusWorker(new Worker(new URL('./worker.js', import.meta.url), { type: 'module' }));
/** @type {{instance: import('../lib/index.js').Janus|null}} the loaded model */
export const model = { instance: null };

/** The loaded model (the Ask and Generate buttons are enabled only once there is one). */
export function janus() {
  return /** @type {import('../lib/index.js').Janus} */ (model.instance);
}

/** Whether `e` is a request's abort (the Cancel button), not an error. @param {unknown} e */
export const isAbort = (e) => e instanceof DOMException && e.name === 'AbortError';

/** A thrown error as the page's {kind, message}. @param {unknown} e */
export const failure = (e) => ({ kind: errorKind(e), message: e instanceof Error ? e.message : String(e) });

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
