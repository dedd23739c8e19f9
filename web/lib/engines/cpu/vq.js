// The VQ decoder on the CPU engine (vq.c, conv.c; pack/cpu_vq.py writes its weights and its program): image
// tokens [n, T] -> pixels [n, 3, S, S] in [-1, 1], as image_decode gives them. Every op of the program is one job
// on every thread; its table is made once, at load, with its buffers' addresses (activations [H, W, C], allocated
// once at the largest size each buffer takes).

import { KIND, P } from './runtime.js';

// vq.c's table fields and ops
const Q = Object.fromEntries(['OP', 'IN', 'OUT', 'RES', 'K', 'V', 'W', 'B', 'H', 'WD', 'CIN', 'COUT', 'KSIZE', 'SWISH',
  'EPS', 'SCALE', 'U', 'SCRATCH', 'SCRATCH_FLOATS', 'STATS', 'TOKENS', 'CODEBOOK'].map((k, i) => [k, i]));
const Q_FIELDS = 22;
const OPS = { embed: 0, conv: 1, norm: 2, attn: 3, upsample: 4, out: 5 };
const TB = 16, QT = 4; // conv.c's tiles per block, attention.c's queries per tile

/**
 * The VQ decoder's buffers in the engine's memory, allocated once at load (bytes): the program's activation
 * buffers at the largest size each takes, the Winograd weights of the widest conv, per-thread scratch (of
 * `perThread` floats), norm statistics, the tokens, the output pixels, and each op's table (`tables`).
 * @param {any} d the pack's vq block @param {number} threads @param {number} stride words a table slot
 */
export function vqBuffers(d, threads, stride) {
  const ceil4 = (/** @type {number} */ n) => Math.ceil(n / 4) * 4;
  const convs = d.program.filter((/** @type {any} */ op) => op.op === 'conv');
  const cin = Math.max(...convs.map((/** @type {any} */ op) => op.cin));
  const cout4 = Math.max(...convs.map((/** @type {any} */ op) => ceil4(op.cout)));
  const pixels = Math.max(...d.program.filter((/** @type {any} */ op) => op.op === 'attn')
    .map((/** @type {any} */ op) => op.h * op.h), 0);
  const perThread = Math.max(36 * TB * (cin + cout4), 32 * cout4, QT * (pixels + 4));
  const buffers = /** @type {number[]} */ (d.buffers.map((/** @type {number} */ n) => 4 * n));
  return { buffers, u: 4 * 36 * cin * cout4,
    scratch: 4 * perThread * threads, perThread, stats: 8 * 32 * threads, tokens: 4 * d.grid * d.grid,
    out: 4 * 3 * d.image_size * d.image_size, tables: d.program.map(() => 4 * stride * Q_FIELDS) };
}

/** Every allocation of a vqBuffers plan, in bytes. @param {ReturnType<typeof vqBuffers>} p */
export const vqAllocations = (p) => [...p.buffers, ...p.tables, p.u, p.scratch, p.stats, p.tokens, p.out];

export class CpuVq {
  /** @param {import('./model.js').CpuModel} model its weights loaded (model.at) */
  constructor(model) {
    const d = model.desc.vq, rt = model.rt, at = model.at;
    if (!d) throw new Error('this CPU pack has no VQ decoder (an older pack: run janusweb pack cpu again)');
    this.rt = rt;
    this.d = d;
    this.T = d.grid * d.grid;
    const plan = vqBuffers(d, rt.threads, rt.stride);
    const buffers = plan.buffers.map((bytes) => rt.alloc(bytes));
    const shared = {
      [Q.U]: rt.alloc(plan.u), [Q.SCRATCH]: rt.alloc(plan.scratch), [Q.SCRATCH_FLOATS]: plan.perThread,
      [Q.STATS]: rt.alloc(plan.stats, 8), [Q.TOKENS]: rt.alloc(plan.tokens), [Q.CODEBOOK]: at['vq.codebook'],
    };
    this.tokens = shared[Q.TOKENS];
    this.out = rt.alloc(plan.out);
    /** @type {number[]} each op's table */
    this.ops = d.program.map((/** @type {any} */ op) => {
      const u = rt.slots(Q_FIELDS);
      const buf = (/** @type {number|undefined} */ i) => (i === undefined ? 0 : buffers[i]);
      u.assign({ ...shared, [Q.OP]: OPS[/** @type {keyof OPS} */ (op.op)], [Q.IN]: buf(op.in ?? op.q),
        [Q.OUT]: op.op === 'out' ? this.out : buf(op.out), [Q.RES]: buf(op.res), [Q.K]: buf(op.k), [Q.V]: buf(op.v),
        [Q.H]: op.h, [Q.WD]: op.h, [Q.CIN]: op.cin ?? op.c, [Q.COUT]: op.cout ?? op.c, [Q.KSIZE]: op.k ?? 0,
        [Q.SWISH]: op.swish ? 1 : 0 });
      if (op.op === 'conv') u.assign({ [Q.W]: at[`${op.w}.weight`], [Q.B]: at[`${op.w}.bias`] });
      if (op.op === 'norm') u.assign({ [Q.W]: at[`vq.norm.${op.norm}.gamma`], [Q.B]: at[`vq.norm.${op.norm}.beta`] });
      u.float(Q.EPS, op.eps ?? 0);
      u.float(Q.SCALE, op.op === 'attn' ? op.c ** -0.5 : 0);
      return rt.put(u.words);
    });
  }

  /**
   * The pixels of n images' tokens: ids [n * T] (row-major [n, T]) -> [n, 3, S, S], one image at a time.
   * @param {ArrayLike<number|bigint>} ids @param {number} n
   */
  decode(ids, n) {
    const rt = this.rt, S = this.d.image_size, T = this.T, images = new Float32Array(n * 3 * S * S);
    for (let i = 0; i < n; i++) {
      const tokens = rt.u32(this.tokens, T);
      for (let k = 0; k < T; k++) {
        const id = Number(ids[i * T + k]);
        if (!(Number.isInteger(id) && id >= 0 && id < this.d.codebook)) throw new Error(`image token ${id} outside the codebook`);
        tokens[k] = id;
      }
      for (const op of this.ops) {
        rt.fields().set(P.ARG, op);
        rt.run(KIND.VQ);
      }
      images.set(rt.f32(this.out, 3 * S * S), i * 3 * S * S);
    }
    return images;
  }
}
