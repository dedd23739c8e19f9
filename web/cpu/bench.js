// The CPU engine's kernels on random weights of a model's shapes (default janus-pro-1b int8), in the browser:
// window.cpuBench({threads, relaxed, dtype, float, layers, ...}) -> per-job times. Driven by bench/cpu_engine.py;
// the page must be cross-origin isolated for threads > 1. `float`: the earlier float-dequant kernels
// (kernels*-float.wasm, which the benchmark builds beside the page) for before/after numbers. Jobs: one decoder
// pass of 1 token (text decode) and of 2 rows (a CFG image step) after `past` positions, lm_head (1 row), the
// image head's matrices (2 rows), and one matrix product (2048 x 5632 by default) for 1 and 2 rows.

import { CpuModel } from './model.js';
import { CpuRuntime, DTYPE, KIND, P } from './runtime.js';

const SHAPES = { hidden_size: 2048, intermediate_size: 5632, num_layers: 24, num_heads: 16, num_key_value_heads: 16,
  head_dim: 128, vocab: 102400, image_vocab: 16384, max_positions: 4096 };

/** A pack description of `s`'s shapes at int8 / q4 (tensors' offsets unused: the weights are filled in place). */
function describe(/** @type {typeof SHAPES} */ s, /** @type {string} */ dtype) {
  /** @type {Record<string, {offset: number, bytes: number, shape: number[]}>} */
  const tensors = {};
  const add = (/** @type {string} */ name, /** @type {number} */ bytes) => { tensors[name] = { offset: 0, bytes, shape: [] }; };
  const matrix = (/** @type {string} */ name, /** @type {number} */ n, /** @type {number} */ k) => {
    add(name, dtype === 'q4' ? n * k / 2 : n * k);
    add(`${name}.scales`, n * (k / 32) * 4);
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
 * @param {{threads: number, relaxed: boolean, dtype?: string, float?: boolean, repeats?: number, past?: number,
 *   layers?: number}} o
 */
async function cpuBench(o) {
  const s = { ...SHAPES, num_layers: o.layers ?? SHAPES.num_layers };
  const dtype = o.dtype ?? 'int8', code = /** @type {Record<string, number>} */ (DTYPE)[dtype];
  const desc = describe(s, dtype);
  const file = `kernels${o.threads > 1 ? '-mt' : ''}${o.relaxed ? '-relaxed' : ''}${o.float ? '-float' : ''}.wasm`;
  const module = await WebAssembly.compileStreaming(fetch(new URL(file, import.meta.url)));
  const spawn = (/** @type {number} */ _t, /** @type {object} */ init) => new Promise((resolve) => {
    const w = new Worker(new URL('thread.js', import.meta.url), { type: 'module' });
    w.onmessage = () => resolve(w);
    w.postMessage(init);
  });
  const weights = Object.values(desc.tensors).reduce((n, t) => n + t.bytes, 0);
  const rt = await CpuRuntime.create(module, o.threads, weights + 2 ** 30, spawn);
  const model = new CpuModel(rt, desc, fill);
  const repeats = o.repeats ?? 5, past = o.past ?? 600, H = s.hidden_size;
  const layerBytes = Object.entries(desc.tensors).filter(([n]) => n.startsWith('layers.'))
    .reduce((n, [, t]) => n + t.bytes, 0);
  const head = (/** @type {string} */ w, /** @type {number} */ M, /** @type {number} */ N) => () => {
    const { u } = rt.fields();
    Object.assign(u, { [P.HEAD_DTYPE]: code, [P.HEAD_X]: model.head?.x, [P.HEAD_M]: M, [P.HEAD_K]: H,
      [P.HEAD_W]: model.at[w], [P.HEAD_S]: model.at[`${w}.scales`], [P.HEAD_Y]: model.head?.y, [P.HEAD_N]: N });
    rt.run(KIND.HEAD);
  };
  const bytesOf = (/** @type {string} */ w) => desc.tensors[w].bytes + desc.tensors[`${w}.scales`].bytes;
  /** @type {Record<string, {ms: number[], bytes: number}>} */
  const out = {};
  for (const rows of [1, 2]) {
    const state = model.newState(rows, past + repeats + 2);
    state.length = past; // attention over `past` cached positions (zeros: the cost is the same)
    const x = new Float32Array(rows * H).fill(0.1);
    out[`decoder_${rows}row`] = { ms: times(() => { state.forward(x, 1); state.length -= 1; }, repeats),
      bytes: layerBytes };
    state.release();
  }
  out.lm_head_1row = { ms: times(head('lm_head', 1, s.vocab), repeats), bytes: bytesOf('lm_head') };
  out.image_head_2rows = { ms: times(() => { head('gen.proj', 2, H)(); head('gen.vision', 2, s.image_vocab)(); },
    repeats), bytes: bytesOf('gen.proj') + bytesOf('gen.vision') };
  for (const M of [1, 2]) {
    out[`matmul_5632x2048_${M}row`] = { ms: times(() => {
      const { u } = rt.fields();
      Object.assign(u, { [P.HEAD_DTYPE]: code, [P.HEAD_X]: model.head?.x, [P.HEAD_M]: M, [P.HEAD_K]: H,
        [P.HEAD_W]: model.at['layers.0.gate'], [P.HEAD_S]: model.at['layers.0.gate.scales'],
        [P.HEAD_Y]: model.head?.y, [P.HEAD_N]: s.intermediate_size });
      rt.run(KIND.HEAD);
    }, repeats * 4), bytes: bytesOf('layers.0.gate') };
  }
  rt.release();
  return { file, dtype, threads: o.threads, crossOriginIsolated: self.crossOriginIsolated,
    memoryMiB: Math.round(rt.memory.buffer.byteLength / 2 ** 20), jobs: out };
}

// The page hands each run to this same module as a Web Worker: thread 0 waits at barriers (Atomics.wait), which
// a page's main thread may not.
if (typeof window === 'undefined') {
  self.onmessage = async (e) => self.postMessage(await cpuBench(e.data).catch((err) => ({ error: String(err) })));
} else {
  /** @type {any} */ (window).cpuBench = (/** @type {object} */ o) => new Promise((resolve) => {
    const w = new Worker(new URL('bench.js', import.meta.url), { type: 'module' });
    w.onmessage = (e) => { w.terminate(); resolve(e.data); };
    w.postMessage(o);
  });
  /** @type {any} */ (window).cpuBenchReady = true;
}
