// The CPU engine's kernels on random weights of a model's shapes (default janus-pro-1b int8), in the browser:
// window.cpuBench({threads, relaxed, dtype, m64, shapes, layers, ...}) -> per-job times. Driven by
// bench/cpu_engine.py; the page must be cross-origin isolated for threads > 1. `m64`: the Memory64 build (64-bit
// addresses) of the same kernels; `shapes`: another model's (SEVEN_B: janus-pro-7b's). Jobs: one decoder pass of 1
// token (text decode) and of 2 rows (a CFG image step) after `past` positions, a prompt's prefill of `prefill`
// positions (with its multiply-accumulates of the matrices, and of attention), lm_head (1 row), the image head's
// matrices (2 rows), one matrix product (the gate's: 5632 x 2048 at 1B) for 1 and 2 rows (the decoder passes read a
// KV cache of `past` written positions); and the SIMD peak (peak*.wasm: the integer dot instructions and the float
// multiply-add, on every thread at once) to set them against.

import { CpuModel } from '../lib/engines/cpu/model.js';
import { CpuRuntime, DTYPE, KIND, P } from '../lib/engines/cpu/runtime.js';

const SHAPES = { hidden_size: 2048, intermediate_size: 5632, num_layers: 24, num_heads: 16, num_key_value_heads: 16,
  head_dim: 128, vocab: 102400, image_vocab: 16384, max_positions: 4096 };
/** janus-pro-7b's (config.json of deepseek-ai/Janus-Pro-7B: its language model is LLaMA-7B-shaped). */
const SEVEN_B = { ...SHAPES, hidden_size: 4096, intermediate_size: 11008, num_layers: 30, num_heads: 32,
  num_key_value_heads: 32 };

/** A pack description of `s`'s shapes at int8 / q4 (tensors' offsets unused: the weights are filled in place). */
function describe(/** @type {typeof SHAPES} */ s, /** @type {string} */ dtype) {
  /** @type {Record<string, {offset: number, bytes: number, shape: number[]}>} */
  const tensors = {};
  const add = (/** @type {string} */ name, /** @type {number} */ bytes, /** @type {number[]} */ shape = []) => {
    tensors[name] = { offset: 0, bytes, shape };
  };
  const matrix = (/** @type {string} */ name, /** @type {number} */ n, /** @type {number} */ k) => {
    add(name, dtype === 'q4' ? n * k / 2 : n * k, [n, k / 32, dtype === 'q4' ? 16 : 32]);
    add(`${name}.scales`, n * (k / 32) * 4, [n, k / 32]);
  };
  const H = s.hidden_size, QKV = (s.num_heads + 2 * s.num_key_value_heads) * s.head_dim;
  for (let i = 0; i < s.num_layers; i++) {
    add(`layers.${i}.ln1`, H * 4);
    add(`layers.${i}.ln2`, H * 4);
    matrix(`layers.${i}.qkv`, QKV, H);
    matrix(`layers.${i}.o`, H, s.num_heads * s.head_dim);
    matrix(`layers.${i}.gate`, s.intermediate_size, H);
    matrix(`layers.${i}.up`, s.intermediate_size, H);
    matrix(`layers.${i}.down`, H, s.intermediate_size);
  }
  add('final_norm', H * 4);
  add('cos', s.max_positions * s.head_dim * 2);
  add('sin', s.max_positions * s.head_dim * 2);
  matrix('lm_head', s.vocab, H);
  matrix('gen.proj', H, H); // the image head: 2048 -> 2048, then -> 16384 image logits
  matrix('gen.vision', s.image_vocab, H);
  return { dtype, block_size: 32, epsilon: 1e-6, scale: s.head_dim ** -0.5, ...s, tensors,
    lm_head: { dtype, vocab: s.vocab } };
}

/** Multiply-accumulates of one decoder layer's matrices for one token. @param {typeof SHAPES} s */
function matrixMacs(s) {
  const H = s.hidden_size, QKV = (s.num_heads + 2 * s.num_key_value_heads) * s.head_dim;
  return H * QKV + s.num_heads * s.head_dim * H + 3 * H * s.intermediate_size;
}

/**
 * The SIMD peak (peak.c) on `threads` Web Workers at once: multiply-accumulates per second of each instruction.
 * @param {number} threads @param {boolean} relaxed
 */
async function peakRates(threads, relaxed) {
  const module = await WebAssembly.compileStreaming(fetch(new URL(`peak${relaxed ? '-relaxed' : ''}.wasm`, import.meta.url)));
  const kinds = { peak_dot_i16: 8 * 12, peak_fma: 4 * 12, ...(relaxed ? { peak_dot_i8: 16 * 12 } : {}) };
  /** @type {Record<string, number>} */
  const out = {};
  for (const [fn, perIteration] of Object.entries(kinds)) {
    const n = 5e7; // ~0.2-0.5 s a thread
    const workers = Array.from({ length: threads }, () => new Worker(new URL('bench.js', import.meta.url), { type: 'module' }));
    const ms = await Promise.all(workers.map((w) => new Promise((resolve, reject) => {
      w.onmessage = (e) => resolve(e.data);
      w.onerror = (e) => reject(new Error(`peak ${fn}: ${e.message}`));
      w.postMessage({ peak: { module, fn, n } });
    })));
    workers.forEach((w) => w.terminate());
    out[fn] = ms.reduce((sum, t) => sum + n * perIteration / /** @type {number} */ (t) / 1e6, 0); // GMAC/s
  }
  return out;
}

/** Random bytes for quantized weights, constants for the rest (the cost does not depend on the values). @param {string} name @param {Uint8Array} into */
function fill(name, into) {
  if (name.endsWith('.scales') || /ln|norm|cos|sin/.test(name)) {
    new Float32Array(into.buffer, into.byteOffset, into.byteLength / 4).fill(name.includes('scales') ? 1e-3 : 0.5);
    return;
  }
  const chunk = new Uint8Array(65536);
  crypto.getRandomValues(chunk);
  for (let at = 0; at < into.length; at += chunk.length) into.set(chunk.subarray(0, into.length - at), at);
}

/** @param {() => void} f @param {number} repeats @returns {number[]} ms */
function times(f, repeats) {
  f();
  const out = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    f();
    out.push(performance.now() - t0);
  }
  return out;
}

/**
 * @param {{threads: number, relaxed: boolean, dtype?: string, m64?: boolean, shapes?: '1b'|'7b', repeats?: number,
 *   past?: number, layers?: number, prefill?: number}} o
 */
async function cpuBench(o) {
  const base = o.shapes === '7b' ? SEVEN_B : SHAPES;
  const s = { ...base, num_layers: o.layers ?? base.num_layers };
  const dtype = o.dtype ?? 'int8', code = /** @type {Record<string, number>} */ (DTYPE)[dtype];
  const desc = describe(s, dtype);
  const file = `kernels${o.threads > 1 ? '-mt' : ''}${o.relaxed ? '-relaxed' : ''}${o.m64 ? '-m64' : ''}.wasm`;
  const kernels = await (await fetch(new URL(file, import.meta.url))).arrayBuffer();
  const spawn = (/** @type {number} */ _t, /** @type {object} */ init) => new Promise((resolve) => {
    const w = new Worker(new URL('thread.js', import.meta.url), { type: 'module' });
    w.onmessage = () => resolve(w);
    w.postMessage(init);
  });
  const weights = Object.values(desc.tensors).reduce((n, t) => n + t.bytes, 0);
  const rt = await CpuRuntime.create(kernels, o.threads, weights + 2 ** 30, spawn);
  const model = new CpuModel(rt, desc, fill);
  const repeats = o.repeats ?? 5, past = o.past ?? 600, H = s.hidden_size;
  const layerBytes = Object.entries(desc.tensors).filter(([n]) => n.startsWith('layers.'))
    .reduce((n, [, t]) => n + t.bytes, 0);
  const head = (/** @type {string} */ w, /** @type {number} */ M, /** @type {number} */ N) => () => {
    rt.fields().assign({ [P.HEAD_DTYPE]: code, [P.HEAD_X]: model.head?.x, [P.HEAD_M]: M, [P.HEAD_K]: H,
      [P.HEAD_W]: model.at[w], [P.HEAD_S]: model.at[`${w}.scales`], [P.HEAD_Y]: model.head?.y, [P.HEAD_N]: N });
    rt.run(KIND.HEAD);
  };
  const bytesOf = (/** @type {string} */ w) => desc.tensors[w].bytes + desc.tensors[`${w}.scales`].bytes;
  /** @type {Record<string, {ms: number[], bytes: number}>} */
  const out = {};
  const prompt = o.prefill ?? 256;
  if (prompt > 0) { // a prompt in one call (MAX_TOKENS), from an empty cache; 2 repeats (it is long)
    const state = model.newState(1, prompt);
    const x = new Float32Array(prompt * H).map((_, i) => Math.sin(i));
    out[`prefill_${prompt}`] = { ms: times(() => { state.length = 0; state.forward(x, prompt); }, Math.min(repeats, 2)),
      bytes: layerBytes, macs: s.num_layers * prompt * matrixMacs(s),
      attentionMacs: s.num_layers * s.num_heads * s.head_dim * prompt * (prompt + 1) };
    state.release();
  }
  for (const rows of [1, 2]) {
    const state = model.newState(rows, past + repeats + 2);
    // attention over `past` cached positions, written: memory never written reads as the one shared zero page, at
    // no bandwidth (a page's cache is written by its prompt)
    rt.f32(state.block, state.blockBytes / 4).fill(0.01);
    state.length = past;
    const x = new Float32Array(rows * H).fill(0.1);
    const kvBytes = 2 * s.num_layers * rows * s.num_key_value_heads * past * s.head_dim * 4; // read per pass
    out[`decoder_${rows}row`] = { ms: times(() => { state.forward(x, 1); state.length -= 1; }, repeats),
      bytes: layerBytes + kvBytes };
    state.release();
  }
  out.lm_head_1row = { ms: times(head('lm_head', 1, s.vocab), repeats), bytes: bytesOf('lm_head') };
  out.image_head_2rows = { ms: times(() => { head('gen.proj', 2, H)(); head('gen.vision', 2, s.image_vocab)(); },
    repeats), bytes: bytesOf('gen.proj') + bytesOf('gen.vision') };
  for (const M of [1, 2]) {
    out[`matmul_${s.intermediate_size}x${H}_${M}row`] = { ms: times(() => {
      rt.fields().assign({ [P.HEAD_DTYPE]: code, [P.HEAD_X]: model.head?.x, [P.HEAD_M]: M, [P.HEAD_K]: H,
        [P.HEAD_W]: model.at['layers.0.gate'], [P.HEAD_S]: model.at['layers.0.gate.scales'],
        [P.HEAD_Y]: model.head?.y, [P.HEAD_N]: s.intermediate_size });
      rt.run(KIND.HEAD);
    }, repeats * 4), bytes: bytesOf('layers.0.gate') };
  }
  rt.release();
  return { file, dtype, threads: o.threads, bits: rt.bits, unsignedDot: rt.unsignedDot, shapes: o.shapes ?? '1b',
    crossOriginIsolated: self.crossOriginIsolated, memoryMiB: Math.round(rt.memory.buffer.byteLength / 2 ** 20),
    jobs: out, peakGmacs: await peakRates(o.threads, o.relaxed) };
}

// The page hands each run to this same module as a Web Worker: thread 0 waits at barriers (Atomics.wait), which
// a page's main thread may not.
if (typeof window === 'undefined') {
  self.onmessage = async (e) => {
    if (e.data.peak) { // one thread of peakRates
      const { module, fn, n } = e.data.peak;
      const memory = new WebAssembly.Memory({ initial: 32, maximum: 65535 }); // its stack (build.py's 1 MiB)
      const exports = /** @type {any} */ ((await WebAssembly.instantiate(module, { env: { memory } })).exports);
      exports[fn](1e5, 1); // compiled and warm before the timed run
      const t0 = performance.now();
      exports[fn](n, 1);
      self.postMessage(performance.now() - t0);
      return;
    }
    self.postMessage(await cpuBench(e.data).catch((err) => ({ error: String(err) })));
  };
} else {
  /** @type {any} */ (window).cpuBench = (/** @type {object} */ o) => new Promise((resolve) => {
    const w = new Worker(new URL('bench.js', import.meta.url), { type: 'module' });
    w.onmessage = (e) => { w.terminate(); resolve(e.data); };
    w.postMessage(o);
  });
  /** @type {any} */ (window).cpuBenchReady = true;
}
