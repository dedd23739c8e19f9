// The decoder on the CPU engine (runtime.js): a pack's weights (pack/cpu.py's format, pack/wgsl.py's plus lm_head
// and the heads of heads.js: matrices [N, K] fp32, or MatMulNBits' own uint8 blocks + fp32 scales) copied once into
// the engine's memory (quantized matrices rewritten into the kernels' order, qlayout.c), activations for up to
// MAX_TOKENS tokens per call shared by every request (one runs at a time), and per request a state with its KV cache
// [rows, kv_heads, capacity, head_dim] per layer. Independent of ONNX Runtime (engines/cpu.js wraps it for the page).

import { CpuHeads } from './heads.js';
import { DTYPE, KIND, L, L_FIELDS, LAYER0, P } from './runtime.js';
import { CpuVision, visionBuffers, visionTableBytes } from './vision.js';
import { CpuVq, vqAllocations, vqBuffers } from './vq.js';

/** Tokens (rows x positions) per call: longer prompts go in several calls (each reads every weight once). An image
 * question's prompt (576 image positions and its text) fits in one. */
export const MAX_TOKENS = 640;
/** Rows of an lm_head call (more are done in several). */
const HEAD_ROWS = 8;
/** Queries per attention tile (attention.c's QT): each thread's scores scratch holds that many rows. */
const QT = 4;
const MATRICES = ['qkv', 'o', 'gate', 'up', 'down'];
const floatBytes = (/** @type {number} */ n) => Math.ceil(n / 16) * 64; // n floats, 64-byte aligned

/**
 * Bytes of the activations of a call of `tokens` rows (CpuModel's scratch).
 * @param {any} d the pack's JSON @param {number} tokens @param {number} threads
 */
function scratchBytes(d, tokens, threads) {
  const H = d.hidden_size, NH = d.num_heads, KVH = d.num_key_value_heads, HD = d.head_dim;
  const widest = Math.max(H, d.intermediate_size, NH * HD);
  return 3 * floatBytes(tokens * H) + floatBytes(tokens * (NH + 2 * KVH) * HD) + floatBytes(tokens * NH * HD)
    + floatBytes(tokens * d.intermediate_size) + floatBytes(threads * QT * (d.max_positions + 4))
    + tokens * (2 * widest + widest / 4) + 128;
}

/**
 * Bytes of memory the model takes (its weights, the activations of a call, the vision tower's and the VQ decoder's
 * buffers, up to 8 threads' scratch) and a request of `rows` x `capacity` positions on top.
 * @param {any} desc the pack's JSON @param {number} rows @param {number} capacity
 */
export function memoryNeeded(desc, rows, capacity) {
  const weights = Object.values(desc.tensors).reduce((s, /** @type {any} */ t) => s + t.bytes + 64, 0);
  const kv = 2 * desc.num_layers * rows * desc.num_key_value_heads * capacity * desc.head_dim * 4;
  const sum = (/** @type {number[]} */ sizes) => sizes.reduce((s, n) => s + n + 64, 0);
  const v = desc.vision;
  const vision = v ? sum([...Object.values(visionBuffers(v, 8)), visionTableBytes(v, 2)]) : 0;
  const vq = desc.vq ? sum(vqAllocations(vqBuffers(desc.vq, 8, 2))) : 0;
  return weights + kv + scratchBytes(desc, MAX_TOKENS, 8) + vision + vq + 64 * 2 ** 20;
}

/**
 * The pack's quantized matrices, which the kernels read in their own order (every tensor with scales but the token
 * table, which embed_rows reads as it is): name -> dtype code, rows N, columns K.
 * @param {any} desc
 * @returns {Record<string, {dtype: number, N: number, K: number}>}
 */
export function quantizedMatrices(desc) {
  /** @type {Record<string, {dtype: number, N: number, K: number}>} */
  const out = {};
  for (const [name, t] of Object.entries(/** @type {Record<string, any>} */ (desc.tensors))) {
    const scales = desc.tensors[`${name}.scales`];
    if (!scales || name === 'embed_tokens') continue;
    const N = scales.shape[0], K = scales.bytes / 4 / N * 32;
    out[name] = { dtype: t.bytes === N * K ? DTYPE.int8 : DTYPE.q4, N, K };
  }
  return out;
}

export class CpuModel {
  /**
   * @param {import('./runtime.js').CpuRuntime} rt
   * @param {any} desc the pack's JSON
   * @param {((name: string, into: Uint8Array) => void)|null} fill what fills each tensor in place: from the pack's
   *   parts, or random weights (benchmarks); null: memory only, filled later through put() (the page, part by part)
   */
  constructor(rt, desc, fill) {
    const d = desc;
    const dtype = /** @type {Record<string, number>} */ (DTYPE)[d.dtype];
    if (dtype === undefined) throw new Error(`the CPU engine takes fp32, int8 or q4 packs, not ${d.dtype}`);
    if (dtype && d.block_size !== 32) throw new Error(`the CPU engine takes blocks of 32 weights (pack: ${d.block_size})`);
    if (d.hidden_size % 32 || d.intermediate_size % 32 || d.head_dim % 8 || d.head_dim > 256) {
      throw new Error(`the CPU engine takes sizes that are multiples of 32 and a head_dim that is a multiple of 8, at most 256 (pack: ${d.hidden_size}, `
        + `${d.intermediate_size}, ${d.head_dim})`);
    }
    this.rt = rt;
    this.desc = d;
    this.dtype = dtype;
    /** @type {Record<string, number>} tensor name -> address */
    this.at = {};
    for (const [name, t] of Object.entries(/** @type {Record<string, any>} */ (d.tensors))) {
      this.at[name] = rt.alloc(t.bytes);
    }
    this.matrices = quantizedMatrices(d);
    if (fill) {
      for (const [name, t] of Object.entries(/** @type {Record<string, any>} */ (d.tensors))) {
        fill(name, rt.u8(this.at[name], t.bytes));
        if (this.matrices[name]) this.repack(name);
      }
    }
    const head = d.lm_head;
    this.head = head ? { dtype: /** @type {Record<string, number>} */ (DTYPE)[head.dtype], vocab: head.vocab,
      x: rt.alloc(4 * HEAD_ROWS * d.hidden_size), y: rt.alloc(4 * HEAD_ROWS * head.vocab) } : null;
    this.scratch = this.activations(rt.alloc(scratchBytes(d, MAX_TOKENS, rt.threads)));
    /** the token embeddings and the image step (packs from janusweb pack cpu; decoder-only packs in the kernel tests lack them) */
    this.heads = d.embed_tokens ? new CpuHeads(this, MAX_TOKENS) : null;
    /** the vision tower (janusweb pack cpu; decoder-only packs in the kernel tests lack it) */
    this.vision = d.vision ? new CpuVision(this) : null;
    /** the VQ decoder (janusweb pack cpu) */
    this.vq = d.vq ? new CpuVq(this) : null;
  }

  /**
   * A tensor's bytes from the pack into its place (the page fills the model part by part, after the constructor).
   * @param {string} name @param {Uint8Array} bytes
   */
  put(name, bytes) {
    this.rt.u8(this.at[name], bytes.length).set(bytes);
    if (this.matrices[name]) this.repack(name);
  }

  /** A quantized matrix into the kernels' order (qlayout.c), in place. @param {string} name */
  repack(name) {
    const m = this.matrices[name];
    this.rt.exports.repack(m.dtype, this.at[name], m.K, 0, m.N);
  }

  /**
   * The plan's buffer fields of a call's activations, laid out from `at` (scratchBytes).
   * @param {number} at
   */
  activations(at) {
    const d = this.desc, M = MAX_TOKENS, H = d.hidden_size, NH = d.num_heads, KVH = d.num_key_value_heads;
    const HD = d.head_dim;
    let next = at;
    const floats = (/** @type {number} */ n) => {
      const here = next;
      next += floatBytes(n);
      return here;
    };
    return { [P.X]: floats(M * H), [P.OUT]: floats(M * H), [P.HB]: floats(M * H),
      [P.QKV]: floats(M * (NH + 2 * KVH) * HD), [P.ATT]: floats(M * NH * HD), [P.F]: floats(M * d.intermediate_size),
      [P.SCORES]: floats(this.rt.threads * QT * (d.max_positions + 4)), [P.XQ]: next };
  }

  /**
   * lm_head logits [M, vocab] of final-norm hidden states [M, H], on every thread (HEAD_ROWS rows a call).
   * @param {Float32Array} hidden @param {number} M
   */
  logits(hidden, M) {
    const h = this.head, rt = this.rt, H = this.desc.hidden_size;
    if (!h) throw new Error('this CPU pack has no lm_head (write it with janusweb pack cpu)');
    const out = new Float32Array(M * h.vocab);
    for (let m0 = 0; m0 < M; m0 += HEAD_ROWS) {
      const rows = Math.min(HEAD_ROWS, M - m0);
      rt.f32(h.x, rows * H).set(hidden.subarray(m0 * H, (m0 + rows) * H));
      rt.fields().assign({ [P.HEAD_DTYPE]: h.dtype, [P.HEAD_X]: h.x, [P.HEAD_M]: rows, [P.HEAD_K]: H,
        [P.HEAD_W]: this.at.lm_head, [P.HEAD_S]: this.at['lm_head.scales'] ?? 0, [P.HEAD_Y]: h.y,
        [P.HEAD_N]: h.vocab });
      rt.run(KIND.HEAD);
      out.set(rt.f32(h.y, rows * h.vocab), m0 * h.vocab);
    }
    return out;
  }

  /**
   * A request's state: several live at once (a kept conversation and an image request), each in a block of the
   * engine's memory given back by release().
   * @param {number} rows @param {number} capacity
   */
  newState(rows, capacity) {
    if (capacity > this.desc.max_positions) {
      throw new Error(`${capacity} positions exceed the model's ${this.desc.max_positions} (rotary table of the pack)`);
    }
    return new CpuState(this, rows, capacity);
  }
}

// the plan's fields a state owns (its shapes and buffers: P.CAP..P.OUT, P.XQ, and every layer's), written into the
// plan before each of its calls; the others (threads, barrier, job, head) are the runtime's
const OWN0 = P.CAP, OWN1 = P.OUT + 1;

export class CpuState {
  /** @param {CpuModel} model @param {number} rows @param {number} capacity */
  constructor(model, rows, capacity) {
    const d = model.desc, rt = model.rt;
    this.model = model;
    this.rows = rows;
    this.capacity = capacity;
    this.length = 0;
    this.chunk = Math.max(1, Math.floor(MAX_TOKENS / rows));
    const H = d.hidden_size, NH = d.num_heads, KVH = d.num_key_value_heads, HD = d.head_dim;
    const kv = floatBytes(rows * KVH * capacity * HD);
    /** bytes of its KV cache (each layer's keys, then its values), from `block` */
    this.blockBytes = 2 * d.num_layers * kv;
    this.block = rt.take(this.blockBytes);
    const u = rt.slots(LAYER0 + L_FIELDS * d.num_layers);
    this.fields = u;
    u.assign({ [P.CAP]: capacity, [P.H]: H, [P.I]: d.intermediate_size, [P.NH]: NH, [P.KVH]: KVH,
      [P.HD]: HD, [P.LAYERS]: d.num_layers, [P.DTYPE]: model.dtype, [P.COS]: model.at.cos, [P.SIN]: model.at.sin,
      [P.FINAL]: model.at.final_norm, ...model.scratch });
    u.float(P.EPS, d.epsilon);
    u.float(P.SCALE, d.scale);
    for (let i = 0; i < d.num_layers; i++) {
      const base = LAYER0 + i * L_FIELDS, w = (/** @type {string} */ n) => model.at[`layers.${i}.${n}`] ?? 0;
      u.set(base + L.LN1, w('ln1'));
      u.set(base + L.LN2, w('ln2'));
      for (const m of MATRICES) {
        const field = /** @type {Record<string, number>} */ (L)[m.toUpperCase()];
        u.set(base + field, w(m));
        u.set(base + field + 1, w(`${m}.scales`));
      }
      u.set(base + L.K, this.block + 2 * i * kv);
      u.set(base + L.V, this.block + (2 * i + 1) * kv);
    }
  }

  /**
   * embeds [rows, S, H] (row-major) through every layer; returns the final-norm hidden states of the last call's
   * positions [rows, S', H] (S' = S, or the last chunk of a long prompt) and S'.
   * @param {Float32Array} embeds @param {number} S
   */
  forward(embeds, S) {
    if (this.block < 0) throw new Error('this CPU engine state was released');
    const rt = this.model.rt, H = this.model.desc.hidden_size, B = this.rows;
    if (this.length + S > this.capacity) {
      throw new Error(`the KV cache holds ${this.capacity} positions; this step needs ${this.length + S}`);
    }
    let Pn = 0;
    for (let start = 0; start < S; start += this.chunk) {
      Pn = Math.min(this.chunk, S - start);
      const x = rt.f32(this.fields.get(P.X), B * Pn * H);
      for (let b = 0; b < B; b++) x.set(embeds.subarray((b * S + start) * H, (b * S + start + Pn) * H), b * Pn * H);
      const plan = rt.fields();
      plan.copy(this.fields, OWN0, OWN1);
      plan.copy(this.fields, LAYER0, LAYER0 + L_FIELDS * this.model.desc.num_layers);
      plan.assign({ [P.XQ]: this.fields.get(P.XQ), [P.M]: B * Pn, [P.P]: Pn, [P.PAST]: this.length });
      rt.run(KIND.DECODER);
      this.length += Pn;
    }
    return { hidden: rt.f32(this.fields.get(P.OUT), B * Pn * H).slice(), positions: Pn };
  }

  release() {
    if (this.block >= 0) this.model.rt.free(this.block);
    this.block = -1;
  }
}
