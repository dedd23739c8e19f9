// The kernel benchmark page: times single-graph models (one MatMul in several weight formats) on one execution
// provider, for `janusweb bench-kernels` (bench/kernels.py). Session options come from backend.js, as on the
// demo page; nothing here is used by the demo.

import * as ort from 'onnxruntime-web/webgpu';
import { describeAdapter, sessionOptions, wasmThreads } from '../lib/backend.js';

/**
 * @param {{models: {name: string, url: string}[], ep: 'webgpu'|'wasm', m: number, k: number, warmup: number,
 *   repeats: number, threads?: number}} c threads: WASM threads (default: the page's, web/backend.js)
 * @returns {Promise<{threads: number, adapter: string|null,
 *   results: Record<string, {ms: number[], y?: number[], error?: string}>}>} y: the last call's output
 */
async function runKernels(c) {
  const threads = c.threads ?? wasmThreads();
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
  ort.env.logLevel = 'error';
  const backend = { ep: c.ep, adapter: '', threads, notes: [] };
  const x = new Float32Array(c.m * c.k).map((_, i) => Math.sin(i));
  /** @type {Record<string, {ms: number[], y?: number[], error?: string}>} */
  const results = {};
  for (const model of c.models) {
    const bytes = new Uint8Array(await (await fetch(model.url)).arrayBuffer());
    let session;
    try {
      session = await ort.InferenceSession.create(bytes, sessionOptions(backend,
        { onGpu: [], forceCpu: [], strict: c.ep === 'webgpu', externalData: [] }));
    } catch (e) {
      results[model.name] = { ms: [], error: String(e).split('\n')[0] };
      continue;
    }
    const input = new ort.Tensor('float32', x, [c.m, c.k]);
    const ms = [];
    let y = new Float32Array(0);
    for (let r = 0; r < c.warmup + c.repeats; r++) {
      const t0 = performance.now();
      const out = await session.run({ x: input });
      y = /** @type {Float32Array} */ (await out.y.getData()); // on the CPU: the whole call, GPU work included
      if (r >= c.warmup) ms.push(performance.now() - t0);
    }
    await session.release();
    results[model.name] = { ms, y: Array.from(y) };
  }
  const adapter = c.ep === 'webgpu' ? await navigator.gpu?.requestAdapter() : null;
  return { threads, adapter: adapter ? describeAdapter(adapter) : null, results };
}

Object.assign(window, { runKernels });
/** @type {HTMLElement} */ (document.getElementById('status')).textContent = 'ready';
