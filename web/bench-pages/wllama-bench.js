// The llama.cpp peer row: llama.cpp's WebAssembly build (npm @wllama/wllama, its wasm copied to wllama/ by
// build.mjs --bench) decoding a GGUF with the decoder's shapes (bench/gguf_peer.py), in the same Chromium as the
// other rows. window.runWllama({url, threads, prompt, tokens, repeats}) loads the GGUF as one Blob, then runs
// `repeats` greedy completions of `tokens` tokens each (EOS ignored) and returns llama.cpp's own timings per
// run (prompt and decode apart) with the token arrival times seen here. Not part of the demo site.

import { Wllama } from '@wllama/wllama';
import pkg from '@wllama/wllama/package.json';

/**
 * @param {{url: string, threads: number, prompt: string, tokens: number, repeats: number, n_ctx?: number}} c
 */
async function runWllama(c) {
  const t0 = performance.now();
  const blob = await (await fetch(c.url)).blob();
  const logs = /** @type {string[]} */ ([]);
  const keep = (/** @type {any[]} */ ...a) => { logs.push(a.join(' ')); };
  const wllama = new Wllama({ default: new URL('./wllama/wllama.wasm', import.meta.url).href },
    { suppressNativeLog: true, logger: { debug: () => {}, log: keep, warn: keep, error: keep } });
  wllama.setCompat(null); // never the CDN's compatibility build
  await wllama.loadModel([blob], { n_threads: c.threads, n_gpu_layers: 0, n_ctx: c.n_ctx ?? 1024, seed: 0 });
  const loadMs = performance.now() - t0;
  const runs = [];
  for (let r = 0; r < c.repeats; r++) {
    const arrivals = /** @type {number[]} */ ([]);
    let last = /** @type {any} */ (null);
    const start = performance.now();
    await wllama.createCompletion({
      prompt: c.prompt, max_tokens: c.tokens, temperature: 0, top_k: 1, ignore_eos: true, seed: 0, stream: true,
      onData: (/** @type {any} */ chunk) => { arrivals.push(performance.now() - start); last = chunk; },
    });
    runs.push({ timings: last?.timings ?? null, usage: last?.usage ?? null, arrivals_ms: arrivals,
      finish_reason: last?.choices?.[0]?.finish_reason ?? null });
  }
  const info = wllama.getLoadedContextInfo();
  const out = { wllama: pkg.version, libllama: Wllama.getLibllamaVersion(), threads: wllama.isMultithread() ? wllama.getNumThreads() : 1,
    multithread: wllama.isMultithread(), crossOriginIsolated: self.crossOriginIsolated, load_ms: loadMs,
    gguf_bytes: blob.size, n_vocab: info.n_vocab, n_layer: info.n_layer, n_embd: info.n_embd, runs,
    warnings: logs.slice(-5) };
  await wllama.exit();
  return out;
}

Object.assign(window, { runWllama });
/** @type {HTMLElement} */ (document.getElementById('status')).textContent = 'ready';
