// The CPU engine's two address widths. build.py builds the kernels for a 32-bit WebAssembly memory (at most 65535
// pages of 64 KiB: 4.29 GB) and again for a 64-bit one (Memory64, kernels*-m64.wasm: up to 16 GiB, the most V8
// gives one), whose addresses are i64 at the module's boundary and whose accesses are bounds-checked in code (the
// 32-bit build's are not: its memory sits in a guarded 8 GiB reservation), so it costs time (bench/ measures it).
// The 32-bit build is taken wherever the engine's memory fits it; the Memory64 build only where it does not and
// the browser validates Memory64. Here: the feature test, that choice and its refusals, the memory itself (the
// JS API as Chromium ships it, and as Node 20 has it behind --experimental-wasm-memory64), and the exports with
// their i64 parameters taking Numbers, read from the module's own type section: JS holds every address as a
// Number (exact up to 2^53) in both builds.

import { packBytes } from '../packs.js';

export const PAGE = 65536;
/** The most pages each build's memory may have (the maximum its module declares, build.py). */
export const MAX_PAGES = { 32: 65535, 64: 2 ** 18 };
const gb = (/** @type {number} */ n) => `${(n / 1e9).toFixed(2)} GB`;

/** Whether this engine validates a module with a 64-bit memory (shared: with threads). @param {boolean} shared */
export function hasMemory64(shared = false) {
  // (module (memory i64 0)), or (memory i64 0 1 shared)
  const limits = shared ? [4, 1, 7, 0, 1] : [3, 1, 4, 0];
  return WebAssembly.validate(Uint8Array.from([0, 97, 115, 109, 1, 0, 0, 0, 5, ...limits]));
}

/**
 * Why `bytes` of memory (`need`: the CPU engine's need in words) cannot be held in any memory this browser runs, in
 * one line, or null. force64: the Memory64 build is asked for even where 32 bits suffice.
 * @param {number} bytes @param {string} need @param {boolean} shared @param {boolean} force64
 */
function refusal(bytes, need, shared, force64) {
  if (!force64 && bytes <= MAX_PAGES[32] * PAGE) return null;
  if (!hasMemory64(shared)) {
    return `${force64 ? 'a Memory64 build was asked for (?memory64=1)' : `the CPU engine needs ${need}, over the `
      + `${gb(MAX_PAGES[32] * PAGE)} a 32-bit memory holds`}, and this browser does not run 64-bit WebAssembly `
      + `memory (Memory64${shared ? ', shared between threads' : ''})`;
  }
  if (bytes > MAX_PAGES[64] * PAGE) {
    return `the CPU engine needs ${need}, over the ${gb(MAX_PAGES[64] * PAGE)} its Memory64 build may have`;
  }
  return null;
}

/**
 * The build for an engine that needs `bytes` of memory: {bits: 32} where a 32-bit memory holds it, else
 * {bits: 64} where Memory64 validates and its 16 GiB hold it, else {refusal: one line}. `force64`: the Memory64
 * build even where 32 bits suffice (the page's ?memory64=1, for tests and the benchmark).
 * @param {number} bytes @param {boolean} shared @param {boolean} [force64]
 * @returns {{bits: 32|64, refusal?: undefined} | {refusal: string, bits?: undefined}}
 */
export function addressWidth(bytes, shared, force64 = false) {
  const why = refusal(bytes, `${gb(bytes)} of WebAssembly memory`, shared, force64);
  if (why) return { refusal: why };
  return { bits: !force64 && bytes <= MAX_PAGES[32] * PAGE ? 32 : 64 };
}

/**
 * Why the CPU engine cannot hold this pack's weights in any memory this browser runs, from the manifest before any
 * download (one line), or null. What the browser will really grant is known only by asking (newMemory).
 * @param {any} manifest @param {{json: string, parts: string[]}} pack @param {string} dtype
 */
export function packRefusal(manifest, pack, dtype) {
  const bytes = packBytes(manifest, pack), n = pack.parts.length;
  return refusal(bytes, `more than ${gb(bytes)} of WebAssembly memory for this bundle's ${dtype} weights `
    + `(${pack.json}'s ${n} part${n > 1 ? 's' : ''})`, false, false);
}

/**
 * A memory of `pages` growable to at most `maxPages` (the module's maximum, or less where the engine caps it:
 * Node 20 at 65536 pages for Memory64; halved until it is taken), 32- or 64-bit, and how to grow it; throws the
 * browser's own error where it will not give `pages`. A 64-bit memory's sizes are BigInts under `address` (the
 * standard; Chromium), or Numbers under `index` (the proposal's earlier form; Node 20).
 * @param {number} pages @param {number} maxPages @param {boolean} shared @param {32|64} bits
 * @returns {{memory: WebAssembly.Memory, maxPages: number, grow: (pages: number) => void}}
 */
export function newMemory(pages, maxPages, shared, bits) {
  /** @type {(n: number) => any} */
  let size = (n) => n, key = '';
  if (bits === 64) {
    try {
      new WebAssembly.Memory(/** @type {any} */ ({ address: 'i64', initial: 0n }));
      [size, key] = [BigInt, 'address'];
    } catch {
      key = 'index';
    }
  }
  for (let max = maxPages; ; max = Math.max(pages, Math.floor(max / 2))) {
    try {
      const memory = new WebAssembly.Memory(/** @type {any} */ ({ ...(key ? { [key]: 'i64' } : {}),
        initial: size(pages), maximum: size(max), shared }));
      return { memory, maxPages: max, grow: (n) => { /** @type {any} */ (memory).grow(size(n)); } };
    } catch (e) {
      if (!(e instanceof RangeError) || max <= pages) throw e;
    }
  }
}

/**
 * What a kernels module is, from its bytes: its memory's width and declared maximum (pages), and each exported
 * function's parameter and result types ('i32', 'i64', 'f32', 'f64', 'v128').
 * @param {BufferSource} source
 */
export function moduleInfo(source) {
  const b = source instanceof ArrayBuffer ? new Uint8Array(source)
    : new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  let at = 8;
  const leb = () => {
    let value = 0, scale = 1, byte;
    do {
      byte = b[at++];
      value += (byte & 127) * scale;
      scale *= 128;
    } while (byte & 128);
    return value;
  };
  const name = () => {
    const n = leb();
    at += n;
    return new TextDecoder().decode(b.subarray(at - n, at));
  };
  const VAL = /** @type {Record<number, string>} */ ({ 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128' });
  const vec = () => Array.from({ length: leb() }, () => VAL[b[at++]]);
  /** @type {{params: string[], results: string[]}[]} */
  const types = [];
  /** @type {number[]} */
  const functions = [];
  /** @type {Record<string, {params: string[], results: string[]}>} */
  const exports = {};
  let memory = { bits: 32, maxPages: MAX_PAGES[32] };
  while (at < b.length) {
    const id = b[at++], size = leb(), end = at + size;
    if (id === 1) {
      for (let n = leb(); n > 0; n--) {
        if (b[at++] !== 0x60) throw new Error('kernels: a type that is not a function type');
        types.push({ params: vec(), results: vec() });
      }
    } else if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        name();
        name();
        const kind = b[at++];
        if (kind !== 2) throw new Error('kernels: they import nothing but their memory');
        const flags = b[at++];
        leb();
        memory = { bits: flags & 4 ? 64 : 32, maxPages: flags & 1 ? leb() : MAX_PAGES[flags & 4 ? 64 : 32] };
      }
    } else if (id === 3) {
      for (let n = leb(); n > 0; n--) functions.push(leb());
    } else if (id === 7) {
      for (let n = leb(); n > 0; n--) {
        const key = name(), kind = b[at++], index = leb();
        if (kind === 0) exports[key] = types[functions[index]];
      }
    }
    at = end;
  }
  return { memory, exports };
}

/**
 * The instance's exports with every i64 parameter taking a Number (converted to BigInt) and every i64 result
 * given back as a Number: the Memory64 build's addresses. A 32-bit build's exports are returned as they are.
 * @param {WebAssembly.Exports} raw @param {ReturnType<typeof moduleInfo>} info
 */
export function numberExports(raw, info) {
  if (info.memory.bits === 32) return raw;
  /** @type {Record<string, any>} */
  const out = { ...raw };
  for (const [key, type] of Object.entries(info.exports)) {
    if (![...type.params, ...type.results].includes('i64')) continue;
    const f = /** @type {Function} */ (raw[key]), big = type.params.map((t) => t === 'i64');
    const back = type.results[0] === 'i64';
    out[key] = (/** @type {any[]} */ ...args) => {
      const r = f(...args.map((a, i) => (big[i] ? BigInt(a) : a)));
      return back ? Number(r) : r;
    };
  }
  return out;
}
