// The benchmark page: `janusweb bench`'s workload through the library's public API, in a worker (as the demo
// page runs it) or on the page's thread. `window.runBench(config)` resolves to the raw runs, structured (times in
// ms, counts, the instance's info); the Python side (bench/browser.py) aggregates them. Nothing here
// re-implements generation.

import { createJanusWorker, loadJanus } from '../lib/index.js';
import { base64 } from './base64.js';

/** @typedef {import('../lib/index.js').Janus} Janus */
/** @typedef {{dispatches: number, submits: number, reads: number, readBytes: number}} GpuCounts */

/**
 * @typedef {object} BenchConfig
 * @property {'auto'|'webgpu'|'wasm'} backend
 * @property {string} [engine] the decoder engine (loadJanus's `engine`: auto, ort-gqa, ort-grow, wgsl, cpu)
 * @property {string|null} dtype
 * @property {number} [threads] at most this many WASM threads
 * @property {boolean} [memory64] the CPU engine's Memory64 build even where 32 bits hold the model
 * @property {string} question
 * @property {string} imagePng base64 PNG; '' for a text-only chat
 * @property {number} textTokens tokens per chat turn (all of them: EOS does not stop a run); 0: no chat
 * @property {string} prompt
 * @property {number[]} counts images per generation run, one set of runs each; []: no image
 * @property {number} guidance
 * @property {number} temperature
 * @property {number} seed
 * @property {number[]} [draws] the image draws themselves (count × tokens, row-major) instead of the seed's
 * @property {number} [steps] image tokens drawn per image (default all)
 * @property {number} repeats runs of each kind
 * @property {number|boolean} [warmup] warm-up runs of each kind before the timed ones (default 1; false = 0)
 * @property {number} [preview] image previews every this many steps (default 0: none)
 * @property {boolean} [countGpuWork] WebGPU: count dispatches, submits, reads and bytes read, per token / step
 * @property {boolean} [mainThread] run the library on this thread instead of a worker
 */

/** Per-event counts from cumulative ones. @param {(GpuCounts|undefined)[]} cumulative */
function perEvent(cumulative) {
  if (!cumulative.length || cumulative.some((c) => !c)) return null;
  const all = /** @type {GpuCounts[]} */ (cumulative);
  return all.map((c, i) => {
    const p = i ? all[i - 1] : { dispatches: 0, submits: 0, reads: 0, readBytes: 0 };
    return { dispatches: c.dispatches - p.dispatches, submits: c.submits - p.submits, reads: c.reads - p.reads,
      read_bytes: c.readBytes - p.readBytes };
  });
}

/** @param {Janus} janus @param {{question: string, image: Blob|null, tokens: number}} c */
async function understanding(janus, c) {
  /** @type {import('../lib/index.js').ChatResult['gpu'][]} */
  const gpu = [];
  /** @type {number[]} */
  const times = [];
  /** @type {{name: string, ms: number}[]} */
  const phases = [];
  const r = await janus.chat({ question: c.question, image: c.image, maxNewTokens: c.tokens, stopAtEos: false,
    onToken: (t) => { times.push(t.ms); gpu.push(t.gpu); },
    onProgress: (p) => { if (p.what === 'phase') phases.push({ name: p.name, ms: p.ms }); } }); // the tokens' clock
  return { token_times_ms: times, ttft_ms: times[0] ?? null, tokens: r.tokens, prefill_tokens: r.prefillTokens, phases,
    total_ms: r.seconds * 1000, gpu_reads: r.gpu?.reads ?? null, gpu_per_token: perEvent(gpu) };
}

/**
 * @param {Janus} janus
 * @param {{prompt: string, count: number, guidance: number, temperature: number, seed: number, draws?: number[],
 *   steps?: number, preview: number}} c
 */
async function generation(janus, c) {
  /** @type {import('../lib/index.js').ChatResult['gpu'][]} */
  const gpu = [];
  /** @type {number[]} */
  const steps = [];
  const t0 = performance.now();
  const r = await janus.generateImages({ prompt: c.prompt, count: c.count, guidance: c.guidance,
    temperature: c.temperature, ...(c.draws ? { draws: c.draws } : { seed: c.seed }), steps: c.steps,
    preview: c.preview, onStep: (s) => { steps.push(s.ms); gpu.push(s.gpu); } });
  const total = performance.now() - t0;
  if (c.draws && r.seed !== null) throw new Error('the library drew from a seed, not from the draws given');
  return { step_times_ms: steps, first_image_ms: total, total_ms: total, vq_decode_ms: r.decodeSeconds * 1000,
    preview_ms: r.previewSeconds * 1000, previews: r.previews, tokens: r.images.map((im) => im.tokens),
    decoded: r.images.map((im) => base64(im.decoded)), gpu_reads: r.gpu?.reads ?? null, gpu_per_step: perEvent(gpu) };
}

/** @param {BenchConfig} c */
async function runBench(c) {
  const image = c.imagePng ? await (await fetch(`data:image/png;base64,${c.imagePng}`)).blob() : null;
  /** @type {{name: string, ms: number}[]} */
  const sessions = [];
  const t0 = performance.now();
  const api = c.mainThread ? { loadJanus }
    : createJanusWorker(new Worker(new URL('./worker.js', import.meta.url), { type: 'module' }));
  const janus = await api.loadJanus(new URL('model/', location.href), { backend: c.backend, dtype: c.dtype,
    engine: c.engine ?? 'auto', threads: c.threads, memory64: c.memory64, countGpuWork: !!c.countGpuWork,
    onProgress: (p) => { if (p.what === 'session') sessions.push({ name: p.name, ms: performance.now() - t0 }); } });
  const loadMs = performance.now() - t0;
  const warmups = c.warmup === false ? 0 : c.warmup === true || c.warmup === undefined ? 1 : c.warmup;
  const u = { question: c.question, image, tokens: c.textTokens };
  const g = { prompt: c.prompt, guidance: c.guidance, temperature: c.temperature, seed: c.seed, draws: c.draws,
    steps: c.steps, preview: c.preview ?? 0 };
  for (let w = 0; w < warmups; w++) { // shader compilation, first allocations
    if (c.textTokens > 0) await understanding(janus, { ...u, tokens: 2 });
    if (c.counts.length) await generation(janus, { ...g, count: c.counts[0] });
  }
  const out = { backend: janus.info, info: janus.info, load_ms: loadMs, sessions, understanding: /** @type {any[]} */ ([]),
    generation: /** @type {Record<number, any[]>} */ ({}), userAgent: navigator.userAgent,
    memory: /** @type {any} */ (performance).memory
      ? { js_heap_used_bytes: /** @type {any} */ (performance).memory.usedJSHeapSize } : null };
  for (let r = 0; r < c.repeats && c.textTokens > 0; r++) out.understanding.push(await understanding(janus, u));
  for (const count of c.counts) {
    out.generation[count] = [];
    for (let r = 0; r < c.repeats; r++) out.generation[count].push(await generation(janus, { ...g, count }));
  }
  out.info = out.backend = janus.info; // the engine's memory after the runs
  await janus.release();
  if ('terminate' in api) api.terminate();
  return out;
}

Object.assign(window, { runBench });
/** @type {HTMLElement} */ (document.getElementById('status')).textContent = 'ready';
