// The CPU engine's WebAssembly side: one instance of the kernels (cpu/*.c, built by cpu/build.py) per thread over
// one memory that holds the weights, the KV caches and the activations (the engine's own memory, not ONNX
// Runtime's heap), a bump allocator over it for what stays (weights) and blocks that are given back (requests'
// states), and the plan (the u32 table decoder.c reads; the names below follow its enum). Threads: with a shared memory, threads - 1 Web Workers (thread.js) wait in thread_loop for each job.
// Runs in a page's worker and in Node (the kernel tests).

/** Plan fields (decoder.c's P_* enum). */
export const P = Object.fromEntries(['M', 'P', 'PAST', 'CAP', 'H', 'I', 'NH', 'KVH', 'HD', 'LAYERS', 'DTYPE', 'EPS',
  'SCALE', 'X', 'HB', 'QKV', 'ATT', 'F', 'SCORES', 'COS', 'SIN', 'FINAL', 'OUT', 'NT', 'BAR_COUNT', 'BAR_GEN', 'JOB',
  'KIND', 'HEAD_DTYPE', 'HEAD_X', 'HEAD_M', 'HEAD_K', 'HEAD_W', 'HEAD_S', 'HEAD_Y', 'HEAD_N'].map((k, i) => [k, i]));
export const LAYER0 = 40;
/** Per-layer fields (decoder.c's L_* enum). */
export const L = Object.fromEntries(['LN1', 'QKV', 'QKV_S', 'O', 'O_S', 'LN2', 'GATE', 'GATE_S', 'UP', 'UP_S', 'DOWN',
  'DOWN_S', 'K', 'V'].map((k, i) => [k, i]));
export const L_FIELDS = 14;
export const KIND = { EXIT: 0, DECODER: 1, HEAD: 2 };
export const DTYPE = { fp32: 0, int8: 1, q4: 2 };
export const PAGE = 65536;
export const MAX_PAGES = 65535; // the build's --max-memory: 4 GB less one page (wasm32)
const STACK = 1 << 20;

/** Whether this engine supports relaxed SIMD (validates a module with f32x4.relaxed_madd). */
export function hasRelaxedSimd() {
  // (module (func (result v128) v128.const 0 v128.const 0 v128.const 0 f32x4.relaxed_madd))
  const bytes = Uint8Array.from([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 61, 1, 59,
    0, 253, 12, ...new Array(16).fill(0), 253, 12, ...new Array(16).fill(0), 253, 12, ...new Array(16).fill(0),
    253, 133, 2, 11]);
  return WebAssembly.validate(bytes);
}

/** Which build to load: threads need a shared memory; relaxed SIMD where it validates. @param {number} threads */
export function kernelsFile(threads) {
  return `kernels${threads > 1 ? '-mt' : ''}${hasRelaxedSimd() ? '-relaxed' : ''}.wasm`;
}

export class CpuRuntime {
  /**
   * @param {WebAssembly.Module} module
   * @param {number} threads 1 (plain memory) or more (shared memory; `spawn` starts the other threads)
   * @param {number} bytes memory to reserve up front (grown on demand after)
   * @param {((tid: number, init: object) => Promise<{terminate: () => any}>)|null} spawn starts thread.js
   */
  static async create(module, threads, bytes, spawn) {
    const pages = Math.min(MAX_PAGES, Math.ceil(bytes / PAGE) + 64);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: MAX_PAGES, shared: threads > 1 });
    const instance = await WebAssembly.instantiate(module, { env: { memory } });
    const rt = new CpuRuntime(instance, memory, threads);
    rt.plan = rt.alloc(4 * (LAYER0 + L_FIELDS * 64));
    rt.u32(rt.plan, LAYER0).fill(0);
    rt.u32(rt.plan, LAYER0)[P.NT] = threads;
    for (let t = 1; t < threads; t++) {
      const stack = rt.alloc(STACK, 16);
      rt.workers.push(await /** @type {any} */ (spawn)(t, { module, memory, plan: rt.plan, tid: t, stack: stack + STACK }));
    }
    return rt;
  }

  /** @param {WebAssembly.Instance} instance @param {WebAssembly.Memory} memory @param {number} threads */
  constructor(instance, memory, threads) {
    this.exports = /** @type {any} */ (instance.exports);
    this.memory = memory;
    this.threads = threads;
    this.top = this.exports.__heap_base.value;
    /** @type {Map<number, number>} blocks handed out by take(): address -> bytes */
    this.taken = new Map();
    /** @type {{at: number, size: number}[]} blocks given back, by address */
    this.spare = [];
    this.plan = 0;
    /** @type {{terminate: () => any}[]} */
    this.workers = [];
  }

  /** `bytes` of memory aligned to `align`, growing the memory when needed. @param {number} bytes @param {number} [align] */
  alloc(bytes, align = 64) {
    const at = Math.ceil(this.top / align) * align;
    const end = at + bytes;
    if (end > MAX_PAGES * PAGE) {
      throw Object.assign(new Error(`the CPU engine needs ${(end / 2 ** 30).toFixed(2)} GB of memory, more than `
        + `a 32-bit WebAssembly memory holds (${(MAX_PAGES * PAGE / 2 ** 30).toFixed(2)} GB)`), { kind: 'backend' });
    }
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
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

  /** The plan's fields: u32 and f32 views of the same words. */
  fields() {
    return { u: this.u32(this.plan, LAYER0 + L_FIELDS * 64), f: this.f32(this.plan, LAYER0 + L_FIELDS * 64) };
  }

  /** Run the job the plan describes on every thread. @param {number} kind */
  run(kind) {
    this.fields().u[P.KIND] = kind;
    this.exports.run(this.plan);
  }

  release() {
    if (this.workers.length) {
      const words = new Int32Array(this.memory.buffer, this.plan, LAYER0);
      words[P.KIND] = KIND.EXIT;
      Atomics.add(words, P.JOB, 1);
      Atomics.notify(words, P.JOB);
    }
    this.workers.forEach((w) => w.terminate());
    this.workers = [];
  }
}
