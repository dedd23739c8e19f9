// The per-token heads on the CPU engine (heads.c; pack/cpu_heads.py writes their weights): the token-embedding
// lookup, and the image step (gen_head, CFG, temperature, inverse-CDF sampling from the run's draws, then
// gen_img_embeds of the drawn tokens: the next step's input). Each linear layer is matmul.c's kernel on every
// thread (the HEAD job: output columns shared out, so gen_head's 16384 columns are split as the decoder splits
// its matrices), then its bias and GELU. Independent of ONNX Runtime (engines/cpu.js wraps it for the page).

import { DTYPE, KIND, P } from './runtime.js';

/** Images per image request at most (the page's count). */
export const MAX_IMAGES = 4;

/**
 * @typedef {object} Linear one layer in memory
 * @property {number} dtype @property {number} w @property {number} s @property {number} b
 * @property {number} N @property {number} K @property {boolean} gelu
 */

export class CpuHeads {
  /**
   * @param {import('./model.js').CpuModel} model its weights loaded (model.at); buffers are allocated here
   * @param {number} maxTokens rows of a token-embedding call
   */
  constructor(model, maxTokens) {
    const d = model.desc, rt = model.rt, at = model.at;
    for (const role of ['embed_tokens', 'gen_head', 'gen_img_embeds']) {
      if (!d[role]) throw new Error(`this CPU pack has no ${role} (an older pack: run janusweb pack cpu again)`);
    }
    this.rt = rt;
    this.H = d.hidden_size;
    this.maxTokens = maxTokens;
    const dt = (/** @type {string} */ name) => /** @type {Record<string, number>} */ (DTYPE)[name];
    this.table = { dtype: dt(d.embed_tokens.dtype), w: at.embed_tokens, s: at['embed_tokens.scales'] ?? 0,
      vocab: d.embed_tokens.vocab };
    const layers = (/** @type {string} */ role) => d[role].layers.map((/** @type {any} */ l, /** @type {number} */ i) =>
      ({ dtype: dt(l.dtype), w: at[`${role}.${i}`], s: at[`${role}.${i}.scales`] ?? 0, b: at[`${role}.${i}.bias`],
        N: l.N, K: l.K, gelu: l.gelu }));
    /** @type {Linear[]} */
    this.gen = layers('gen_head');
    /** @type {Linear[]} */
    this.img = layers('gen_img_embeds');
    this.imageTable = at['gen_img_embeds.table'];
    this.codebook = d.gen_img_embeds.codebook;
    this.D = d.gen_img_embeds.embed_dim;
    this.V = this.gen.at(-1)?.N ?? 0;
    if (this.V !== this.codebook) throw new Error(`gen_head draws from ${this.V} ids, the image-token table has ${this.codebook}`);
    const widest = Math.max(this.H, ...this.gen.map((l) => l.N), ...this.img.map((l) => l.N));
    const floats = (/** @type {number} */ n) => rt.alloc(4 * n);
    this.ids = rt.alloc(4 * Math.max(maxTokens, MAX_IMAGES));
    this.rows = floats(maxTokens * this.H);
    // the image step's activations ping-pong between two buffers of 2 * MAX_IMAGES rows of the widest layer
    this.act = [floats(2 * MAX_IMAGES * widest), floats(2 * MAX_IMAGES * widest)];
    this.z = floats(this.V);
    this.p = rt.alloc(8 * this.V, 8);
    this.u = floats(MAX_IMAGES);
  }

  /**
   * Token embeddings of `ids` -> [ids.length, H] (the pack's table: int8 / q4 rows dequantized as they are read).
   * @param {ArrayLike<number>} ids
   */
  embed(ids) {
    const rt = this.rt, H = this.H, out = new Float32Array(ids.length * H), t = this.table;
    for (let start = 0; start < ids.length; start += this.maxTokens) {
      const M = Math.min(this.maxTokens, ids.length - start), idView = rt.u32(this.ids, M);
      for (let i = 0; i < M; i++) {
        const id = ids[start + i];
        if (!(Number.isInteger(id) && id >= 0 && id < t.vocab)) throw new Error(`token id ${id} outside the vocabulary`);
        idView[i] = id;
      }
      rt.exports.embed_rows(t.dtype, t.w, t.s, this.ids, M, H, this.rows);
      out.set(rt.f32(this.rows, M * H), start * H);
    }
    return out;
  }

  /**
   * y [M, N] = act(x [M, K] W^T + b): the matrix on every thread, then the bias (and GELU) on this one.
   * @param {Linear} l @param {number} x @param {number} M @param {number} y
   */
  linear(l, x, M, y) {
    this.rt.fields().assign({ [P.HEAD_DTYPE]: l.dtype, [P.HEAD_X]: x, [P.HEAD_M]: M, [P.HEAD_K]: l.K, [P.HEAD_W]: l.w,
      [P.HEAD_S]: l.s, [P.HEAD_Y]: y, [P.HEAD_N]: l.N });
    this.rt.run(KIND.HEAD);
    this.rt.exports.bias_act(y, l.b, M, l.N, l.gelu ? 1 : 0);
  }

  /** @param {Linear[]} layers @param {number} M rows already in act[0] -> the address of the output */
  chain(layers, M) {
    let [x, y] = this.act;
    for (const l of layers) {
      this.linear(l, x, M, y);
      [x, y] = [y, x];
    }
    return x;
  }

  /**
   * One image step for n images: hidden [2n, H] (the last position of each row: [0, n) the prompt, [n, 2n) the
   * unconditional one) and the draws u [n] -> the tokens drawn [n] and their embeddings [n, H] (gen_img_embeds).
   * @param {Float32Array} hidden @param {number} n @param {number} guidance @param {number} temperature
   * @param {Float32Array} u
   */
  imageStep(hidden, n, guidance, temperature, u) {
    if (n > MAX_IMAGES) throw new Error(`the CPU engine draws at most ${MAX_IMAGES} images at a time`);
    const rt = this.rt, H = this.H, V = this.V;
    rt.f32(this.act[0], 2 * n * H).set(hidden.subarray(0, 2 * n * H));
    const logits = this.chain(this.gen, 2 * n);
    rt.f32(this.u, n).set(u.subarray(0, n));
    rt.exports.cfg_sample(logits, n, V, guidance, temperature, this.u, this.ids, this.z, this.p);
    const tokens = rt.u32(this.ids, n).slice();
    // gen_img_embeds: the image-token table's rows (fp32), then its aligner
    rt.exports.embed_rows(DTYPE.fp32, this.imageTable, 0, this.ids, n, this.D, this.act[0]);
    const out = this.chain(this.img, n);
    return { tokens, embeds: rt.f32(out, n * H).slice() };
  }
}
