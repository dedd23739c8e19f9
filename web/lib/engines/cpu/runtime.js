// The CPU engine's WebAssembly side: one instance of the kernels (cpu/*.c, built by cpu/build.py) per thread over
// one memory that holds the weights, the KV caches and the activations (the engine's own memory, not ONNX
// Runtime's heap), a bump allocator over it for what stays (weights) and blocks that are given back (requests'
// states), and the plan (the table decoder.c reads, one pointer-sized slot a field: Slots; the names below follow
// its enum). Either address width (memory64.js: the 32-bit build, or the Memory64 one) with the same JS: addresses
// are Numbers. Threads: with a shared memory, threads - 1 Web Workers (thread.js) wait in thread_loop for each job.
// Runs in a page's worker and in Node (the kernel tests).

import { BackendError } from '../../errors.js';
import { moduleInfo, newMemory, numberExports, PAGE } from './memory64.js';

/** Plan fields (decoder.c's P_* enum). */
export const P = Object.fromEntries(['M', 'P', 'PAST', 'CAP', 'H', 'I', 'NH', 'KVH', 'HD', 'LAYERS', 'DTYPE', 'EPS',
  'SCALE', 'X', 'HB', 'QKV', 'ATT', 'F', 'SCORES', 'COS', 'SIN', 'FINAL', 'OUT', 'NT', 'BAR_COUNT', 'BAR_GEN', 'JOB',
  'KIND', 'HEAD_DTYPE', 'HEAD_X', 'HEAD_M', 'HEAD_K', 'HEAD_W', 'HEAD_S', 'HEAD_Y', 'HEAD_N', 'XQ', 'ARG'].map((k, i) => [k, i]));
export const LAYER0 = 40;
/** Per-layer fields (decoder.c's L_* enum). */
export const L = Object.fromEntries(['LN1', 'QKV', 'QKV_S', 'O', 'O_S', 'LN2', 'GATE', 'GATE_S', 'UP', 'UP_S', 'DOWN',
  'DOWN_S', 'K', 'V'].map((k, i) => [k, i]));
export const L_FIELDS = 14;
export const KIND = { EXIT: 0, DECODER: 1, HEAD: 2, VISION: 3, VQ: 4 };
export const DTYPE = { fp32: 0, int8: 1, q4: 2 };
/** Layers the plan has room for. */
const MAX_LAYERS = 64;
const STACK = 1 << 20;
const gb = (/** @type {number} */ n) => `${(n / 1e9).toFixed(2)} GB`;

/** Whether this engine supports relaxed SIMD (validates a module with f32x4.relaxed_madd). */
export function hasRelaxedSimd() {
  // (module (func (result v128) v128.const 0 v128.const 0 v128.const 0 f32x4.relaxed_madd))
  const bytes = Uint8Array.from([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 61, 1, 59,
    0, 253, 12, ...new Array(16).fill(0), 253, 12, ...new Array(16).fill(0), 253, 12, ...new Array(16).fill(0),
    253, 133, 2, 11]);
  return WebAssembly.validate(bytes);
}

/**
 * Which build to load: threads need a shared memory; relaxed SIMD where it validates; 64-bit addresses where the
 * memory needs them (memory64.js's addressWidth).
 * @param {number} threads @param {32|64} [bits]
 */
export function kernelsFile(threads, bits = 32) {
  return `kernels${threads > 1 ? '-mt' : ''}${hasRelaxedSimd() ? '-relaxed' : ''}${bits === 64 ? '-m64' : ''}.wasm`;
}

/**
 * The plan's table (decoder.c's P_* and L_* fields) as JS writes it, over the plan in memory (rt.fields()) or a
 * state's own copy: one slot a field, 4 bytes in the 32-bit build and 8 (a little-endian u64: two words) in the
 * Memory64 one. Scalars and addresses are Numbers; a float goes in its slot's first 4 bytes.
 */
export class Slots {
  /** @param {ArrayBufferLike} buffer @param {number} at @param {number} count @param {number} stride words a slot */
  constructor(buffer, at, count, stride) {
    this.words = new Uint32Array(buffer, at, count * stride);
    this.stride = stride;
  }

  /** @param {number} i @param {number} value an integer, 0 <= value < 2^53 */
  set(i, value) {
    const w = i * this.stride;
    this.words[w] = value % 2 ** 32;
    if (this.stride === 2) this.words[w + 1] = Math.floor(value / 2 ** 32);
  }

  /** @param {number} i */
  get(i) {
    const w = i * this.stride;
    return this.words[w] + (this.stride === 2 ? this.words[w + 1] * 2 ** 32 : 0);
  }

  /** @param {number} i @param {number} value */
  float(i, value) {
    new Float32Array(this.words.buffer, this.words.byteOffset, this.words.length)[i * this.stride] = value;
  }

  /** @param {Record<number, number>} fields index -> value */
  assign(fields) {
    for (const [i, value] of Object.entries(fields)) this.set(Number(i), value);
  }

  /** Fields [i0, i1) from another table of the same width. @param {Slots} from @param {number} i0 @param {number} i1 */
  copy(from, i0, i1) {
    this.words.set(from.words.subarray(i0 * this.stride, i1 * this.stride), i0 * this.stride);
  }
}

export class CpuRuntime {
  /**
   * @param {BufferSource} kernels the bytes of a kernels build (kernelsFile): its width is the module's own
   * @param {number} threads 1 (plain memory) or more (shared memory; `spawn` starts the other threads)
   * @param {number} bytes memory to reserve up front (grown on demand after)
   * @param {((tid: number, init: object) => Promise<{terminate: () => any}>)|null} spawn starts thread.js
   */
  static async create(kernels, threads, bytes, spawn) {
    const info = moduleInfo(kernels), bits = /** @type {32|64} */ (info.memory.bits), max = info.memory.maxPages;
    const pages = Math.min(max, Math.ceil(bytes / PAGE) + 64);
    let memory;
    try {
      memory = newMemory(pages, max, threads > 1, bits);
    } catch (e) {
      throw new BackendError(`this browser would not give the CPU engine ${gb(pages * PAGE)} of ${bits}-bit `
        + `WebAssembly memory${threads > 1 ? ' shared between threads' : ''} (${e})`);
    }
    const module = await WebAssembly.compile(kernels);
    const instance = await WebAssembly.instantiate(module, { env: { memory: memory.memory } });
    const rt = new CpuRuntime(numberExports(instance.exports, info), memory, threads, bits);
    // q8 on the unsigned byte dot where this engine computes it exactly (qmat.h); chosen before any weight is
    // repacked, and kept in the memory every thread shares
    rt.unsignedDot = rt.exports.choose_u8_dot ? rt.exports.choose_u8_dot(127, 255) === 1 : false;
    rt.plan = rt.alloc(4 * rt.stride * (LAYER0 + L_FIELDS * MAX_LAYERS));
    rt.fields().words.fill(0);
    rt.fields().set(P.NT, threads);
    for (let t = 1; t < threads; t++) {
      const stack = rt.alloc(STACK, 16);
      rt.workers.push(await /** @type {any} */ (spawn)(t, { module, memory: memory.memory, plan: rt.plan, tid: t,
        stack: stack + STACK }));
    }
    return rt;
  }

  /**
   * @param {Record<string, any>} exports (numberExports: addresses as Numbers)
   * @param {ReturnType<typeof newMemory>} memory @param {number} threads @param {32|64} bits
   */
  constructor(exports, memory, threads, bits) {
    this.exports = exports;
    this.memory = memory.memory;
    this.grow = memory.grow;
    this.threads = threads;
    /** address width: 32, or 64 (Memory64) */
    this.bits = bits;
    /** the most pages this memory may have */
    this.maxPages = memory.maxPages;
    /** 32-bit words in a plan slot */
    this.stride = bits / 32;
    this.top = Number(exports.__heap_base.value);
    /** @type {Map<number, number>} blocks handed out by take(): address -> bytes */
    this.taken = new Map();
    /** @type {{at: number, size: number}[]} blocks given back, by address */
    this.spare = [];
    this.plan = 0;
    /** whether int8 weights run on the unsigned byte dot (relaxed SIMD, exact here: choose_u8_dot) */
    this.unsignedDot = false;
    /** @type {{terminate: () => any}[]} */
    this.workers = [];
  }

  /** `bytes` of memory aligned to `align`, growing the memory when needed. @param {number} bytes @param {number} [align] */
  alloc(bytes, align = 64) {
    const at = Math.ceil(this.top / align) * align;
    const end = at + bytes;
    if (end > this.maxPages * PAGE) {
      throw new BackendError(`the CPU engine needs ${gb(end)} of memory, more than its ${this.bits}-bit `
        + `WebAssembly memory may have (${gb(this.maxPages * PAGE)})`);
    }
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      try {
        this.grow(Math.ceil((end - have) / PAGE));
      } catch (e) {
        throw new BackendError(`this browser would not grow the CPU engine's ${this.bits}-bit WebAssembly memory `
          + `from ${gb(have)} to ${gb(end)} (${e})`);
      }
    }
    this.top = end;
    return at;
  }

  /**
   * Space that is given back (a request's state): first fit among the blocks freed before, else new memory at the
   * top. Returns its address; `free(at)` gives it back (neighbouring free blocks merge).
   * @param {number} bytes
   */
  take(bytes) {
    const size = Math.ceil(bytes / 64) * 64;
    const i = this.spare.findIndex((b) => b.size >= size);
    if (i < 0) {
      const at = this.alloc(size);
      this.taken.set(at, size);
      return at;
    }
    const block = this.spare[i];
    if (block.size === size) this.spare.splice(i, 1);
    else this.spare[i] = { at: block.at + size, size: block.size - size };
    this.taken.set(block.at, size);
    return block.at;
  }

  /** @param {number} at an address from take() */
  free(at) {
    const size = this.taken.get(at);
    if (size === undefined) throw new Error(`no block taken at ${at}`);
    this.taken.delete(at);
    this.spare.push({ at, size });
    this.spare.sort((a, b) => a.at - b.at);
    this.spare = this.spare.reduce((/** @type {{at: number, size: number}[]} */ out, b) => {
      const last = out.at(-1);
      if (last && last.at + last.size === b.at) last.size += b.size;
      else out.push({ ...b });
      return out;
    }, []);
  }

  /** @param {number} at @param {number} n */
  f32(at, n) { return new Float32Array(this.memory.buffer, at, n); }

  /** @param {number} at @param {number} n */
  u32(at, n) { return new Uint32Array(this.memory.buffer, at, n); }

  /** @param {number} at @param {number} n */
  u8(at, n) { return new Uint8Array(this.memory.buffer, at, n); }

  /** A copy of `data` in memory; returns its address. @param {ArrayBufferView} data */
  put(data) {
    const at = this.alloc(data.byteLength);
    this.u8(at, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return at;
  }

  /** The plan's fields in memory. */
  fields() {
    return new Slots(this.memory.buffer, this.plan, LAYER0 + L_FIELDS * MAX_LAYERS, this.stride);
  }

  /** A table of `count` fields of this width outside memory (a state's own). @param {number} count */
  slots(count) {
    return new Slots(new ArrayBuffer(4 * this.stride * count), 0, count, this.stride);
  }

  /** Run the job the plan describes on every thread. @param {number} kind */
  run(kind) {
    this.fields().set(P.KIND, kind);
    this.exports.run(this.plan);
  }

  release() {
    if (this.workers.length) {
      const words = new Int32Array(this.memory.buffer, this.plan, LAYER0 * this.stride), s = this.stride;
      words[P.KIND * s] = KIND.EXIT;
      Atomics.add(words, P.JOB * s, 1);
      Atomics.notify(words, P.JOB * s);
    }
    this.workers.forEach((w) => w.terminate());
    this.workers = [];
  }
}
