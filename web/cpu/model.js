// The decoder on the CPU engine (runtime.js): a pack's weights (pack/cpu.py's format, pack/wgsl.py's plus lm_head
// and the heads of heads.js: matrices [N, K] fp32, or MatMulNBits' own uint8 blocks + fp32 scales) copied once into
// the engine's memory, and per request a state with its KV cache [rows, kv_heads, capacity, head_dim] per layer
// and activations for up to MAX_TOKENS tokens per call. Independent of ONNX Runtime (engines/cpu.js wraps it for the page).

import { CpuHeads } from './heads.js';
import { DTYPE, KIND, L, L_FIELDS, LAYER0, P } from './runtime.js';

/** Tokens (rows x positions) per call: longer prompts go in several calls. */
export const MAX_TOKENS = 64;
const MATRICES = ['qkv', 'o', 'gate', 'up', 'down'];

/**
 * Bytes of memory the model's weights take, and a request of `rows` x `capacity` positions on top.
 * @param {any} desc the pack's JSON @param {number} rows @param {number} capacity
 */
export function memoryNeeded(desc, rows, capacity) {
  const weights = Object.values(desc.tensors).reduce((s, /** @type {any} */ t) => s + t.bytes + 64, 0);
  const kv = 2 * desc.num_layers * rows * desc.num_key_value_heads * capacity * desc.head_dim * 4;
  return weights + kv + 64 * 2 ** 20;
}

export class CpuModel {
  /**
   * @param {import('./runtime.js').CpuRuntime} rt
   * @param {any} desc the pack's JSON
   * @param {(name: string, into: Uint8Array) => void} fill what fills each tensor in place: from the pack's parts
   *   (the page fills them later, part by part), or random weights (benchmarks)
   */
  constructor(rt, desc, fill) {
    const d = desc;
    const dtype = /** @type {Record<string, number>} */ (DTYPE)[d.dtype];
    if (dtype === undefined) throw new Error(`the CPU engine takes fp32, int8 or q4 packs, not ${d.dtype}`);
    if (dtype && d.block_size !== 32) throw new Error(`the CPU engine takes blocks of 32 weights (pack: ${d.block_size})`);
    if (d.hidden_size % 32 || d.intermediate_size % 32 || d.head_dim % 4 || d.head_dim > 256) {
      throw new Error(`the CPU engine takes sizes that are multiples of 32 and head_dim <= 256 (pack: ${d.hidden_size}, `
        + `${d.intermediate_size}, ${d.head_dim})`);
    }
    this.rt = rt;
    this.desc = d;
    this.dtype = dtype;
    /** @type {Record<string, number>} tensor name -> address */
    this.at = {};
    for (const [name, t] of Object.entries(/** @type {Record<string, any>} */ (d.tensors))) {
      this.at[name] = rt.alloc(t.bytes);
      fill(name, rt.u8(this.at[name], t.bytes));
    }
    const head = d.lm_head;
    this.head = head ? { dtype: /** @type {Record<string, number>} */ (DTYPE)[head.dtype], vocab: head.vocab,
      x: rt.alloc(4 * MAX_TOKENS * d.hidden_size), y: rt.alloc(4 * MAX_TOKENS * head.vocab) } : null;
    /** the token embeddings and the image step (packs from cpu-pack; decoder-only packs in the kernel tests lack them) */
    this.heads = d.embed_tokens ? new CpuHeads(this, MAX_TOKENS) : null;
  }

  /**
   * lm_head logits [M, vocab] of final-norm hidden states [M, H] (M <= MAX_TOKENS), on every thread.
   * @param {Float32Array} hidden @param {number} M
   */
  logits(hidden, M) {
    const h = this.head, rt = this.rt, H = this.desc.hidden_size;
    if (!h) throw new Error('this CPU pack has no lm_head (write it with janusweb cpu-pack)');
    if (M > MAX_TOKENS) throw new Error(`lm_head takes at most ${MAX_TOKENS} positions a call`);
    rt.f32(h.x, M * H).set(hidden.subarray(0, M * H));
    const { u } = rt.fields();
    Object.assign(u, { [P.HEAD_DTYPE]: h.dtype, [P.HEAD_X]: h.x, [P.HEAD_M]: M, [P.HEAD_K]: H,
      [P.HEAD_W]: this.at.lm_head, [P.HEAD_S]: this.at['lm_head.scales'] ?? 0, [P.HEAD_Y]: h.y, [P.HEAD_N]: h.vocab });
    rt.run(KIND.HEAD);
    return rt.f32(h.y, M * h.vocab).slice();
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

// the plan's fields a state owns (its shapes and buffers: P.CAP..P.OUT, and every layer's), written into the plan
// before each of its calls; the others (threads, barrier, job, head) are the runtime's
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
    const M = rows * this.chunk, H = d.hidden_size, NH = d.num_heads, KVH = d.num_key_value_heads, HD = d.head_dim;
    const kv = rows * KVH * capacity * HD;
    const bytes = (/** @type {number} */ n) => Math.ceil(n / 16) * 64; // floats, 64-byte aligned
    const total = 3 * bytes(M * H) + bytes(M * (NH + 2 * KVH) * HD) + bytes(M * NH * HD)
      + bytes(M * d.intermediate_size) + bytes(M * NH * capacity) + 2 * d.num_layers * bytes(kv);
    this.block = rt.take(total);
    let next = this.block;
    const floats = (/** @type {number} */ n) => {
      const at = next;
      next += bytes(n);
      if (next > this.block + total) throw new Error('CPU state: buffers past its block');
      return at;
    };
    this.x = floats(M * H);
    this.out = floats(M * H);
    const u = new Uint32Array(LAYER0 + L_FIELDS * d.num_layers), f = new Float32Array(u.buffer);
    this.fields = u;
    Object.assign(u, { [P.CAP]: capacity, [P.H]: H, [P.I]: d.intermediate_size, [P.NH]: NH, [P.KVH]: KVH,
      [P.HD]: HD, [P.LAYERS]: d.num_layers, [P.DTYPE]: model.dtype, [P.X]: this.x, [P.HB]: floats(M * H),
      [P.QKV]: floats(M * (NH + 2 * KVH) * HD), [P.ATT]: floats(M * NH * HD), [P.F]: floats(M * d.intermediate_size),
      [P.SCORES]: floats(M * NH * capacity), [P.COS]: model.at.cos, [P.SIN]: model.at.sin,
      [P.FINAL]: model.at.final_norm, [P.OUT]: this.out });
    f[P.EPS] = d.epsilon;
    f[P.SCALE] = d.scale;
    for (let i = 0; i < d.num_layers; i++) {
      const base = LAYER0 + i * L_FIELDS, w = (/** @type {string} */ n) => model.at[`layers.${i}.${n}`] ?? 0;
      u[base + L.LN1] = w('ln1');
      u[base + L.LN2] = w('ln2');
      for (const m of MATRICES) {
        const field = /** @type {Record<string, number>} */ (L)[m.toUpperCase()];
        u[base + field] = w(m);
        u[base + field + 1] = w(`${m}.scales`);
      }
      u[base + L.K] = floats(kv);
      u[base + L.V] = floats(kv);
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
      const x = rt.f32(this.x, B * Pn * H);
      for (let b = 0; b < B; b++) x.set(embeds.subarray((b * S + start) * H, (b * S + start + Pn) * H), b * Pn * H);
      const { u } = rt.fields();
      u.set(this.fields.subarray(OWN0, OWN1), OWN0);
      u.set(this.fields.subarray(LAYER0), LAYER0);
      u[P.M] = B * Pn;
      u[P.P] = Pn;
      u[P.PAST] = this.length;
      rt.run(KIND.DECODER);
      this.length += Pn;
    }
    return { hidden: rt.f32(this.out, B * Pn * H).slice(), positions: Pn };
  }

  release() {
    if (this.block >= 0) this.model.rt.free(this.block);
    this.block = -1;
  }
}
