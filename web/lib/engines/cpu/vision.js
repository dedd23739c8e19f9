// The vision tower on the CPU engine (vision.c; pack/cpu_vision.py writes its weights): an image's pixels
// [3, S, S] -> the aligner's features [T, H], one row per patch, which a prompt's image positions take in place of
// token embeddings (prepare_inputs_embeds without ONNX Runtime). Its buffers are allocated once, at load.

import { KIND, P } from './runtime.js';

// vision.c's table: fields, then the aligner's layers from ALIGNER0, the encoder's from LAYER0
const V = Object.fromEntries(['T', 'D', 'HEADS', 'HD', 'I', 'LAYERS', 'DTYPE', 'EPS', 'SCALE', 'PATCH', 'SIZE',
  'PIXELS', 'COLS', 'X', 'H', 'QKV', 'ATT', 'F', 'G', 'XQ', 'SCORES', 'PATCH_W', 'PATCH_B', 'POS', 'POST', 'POST_B',
  'OUT', 'ALIGNERS', 'KV'].map((k, i) => [k, i]));
const ALIGNER0 = 32, A_FIELDS = 7, MAX_ALIGNERS = 4, LAYER0 = 64;
const LAYER = ['ln1', 'ln1.bias', 'qkv', 'qkv.scales', 'qkv.bias', 'o', 'o.scales', 'o.bias', 'ln2', 'ln2.bias', 'fc1',
  'fc1.scales', 'fc1.bias', 'fc2', 'fc2.scales', 'fc2.bias'];
const QT = 4; // attention.c's queries per tile
const DTYPE_CODE = /** @type {Record<string, number>} */ ({ fp32: 0, int8: 1, q4: 2 });

/**
 * The vision tower's activation buffers in the engine's memory, allocated once at load: table field -> bytes
 * (its table, put in that memory too, is visionTableBytes).
 * @param {any} d the pack's vision block @param {number} threads
 * @returns {Record<number, number>}
 */
export function visionBuffers(d, threads) {
  const T = d.tokens, D = d.hidden_size, I = d.intermediate_size, S = d.image_size, Pz = d.patch_size;
  const widest = Math.max(I, ...d.aligner.map((/** @type {any} */ a) => a.N));
  const K = Math.max(I, D, ...d.aligner.map((/** @type {any} */ a) => a.K));
  const floats = (/** @type {number} */ n) => 4 * n;
  return { [V.PIXELS]: floats(3 * S * S), [V.COLS]: floats(T * 3 * Pz * Pz), [V.X]: floats(T * D),
    [V.H]: floats(T * D), [V.QKV]: floats(T * 3 * D), [V.ATT]: floats(T * D), [V.F]: floats(T * widest),
    [V.G]: floats(T * widest), [V.XQ]: T * (2 * K + K / 4) + 128, [V.SCORES]: floats(threads * QT * (T + 4)),
    [V.OUT]: floats(T * d.aligner.at(-1).N), [V.KV]: floats(2 * T * D) };
}

/** Bytes of the vision tower's table in the engine's memory. @param {any} d @param {number} stride words a slot */
export const visionTableBytes = (d, stride) => 4 * stride * (LAYER0 + LAYER.length * d.num_layers);

export class CpuVision {
  /** @param {import('./model.js').CpuModel} model its weights loaded (model.at) */
  constructor(model) {
    const d = model.desc.vision, rt = model.rt, at = model.at;
    if (!d) throw new Error('this CPU pack has no vision tower (an older pack: run janusweb pack cpu again)');
    if (d.aligner.length > MAX_ALIGNERS) throw new Error(`the CPU engine takes at most ${MAX_ALIGNERS} aligner layers`);
    if (d.hidden_size % 32 || d.intermediate_size % 32 || d.head_dim % 8) {
      throw new Error(`the CPU engine's vision tower takes widths that are multiples of 32 and a head_dim that is a `
        + `multiple of 8 (pack: ${d.hidden_size}, ${d.intermediate_size}, ${d.head_dim})`);
    }
    this.rt = rt;
    this.d = d;
    const T = d.tokens, D = d.hidden_size, I = d.intermediate_size, S = d.image_size, Pz = d.patch_size;
    this.H = d.aligner.at(-1).N;
    const buffers = /** @type {Record<number, number>} */ (Object.fromEntries(
      Object.entries(visionBuffers(d, rt.threads)).map(([field, bytes]) => [field, rt.alloc(bytes)])));
    const u = rt.slots(LAYER0 + LAYER.length * d.num_layers);
    u.assign({ [V.T]: T, [V.D]: D, [V.HEADS]: d.num_heads, [V.HD]: d.head_dim, [V.I]: I,
      [V.LAYERS]: d.num_layers, [V.DTYPE]: DTYPE_CODE[d.dtype], [V.PATCH]: Pz, [V.SIZE]: S, ...buffers,
      [V.PATCH_W]: at['vision.patch'], [V.PATCH_B]: at['vision.patch.bias'], [V.POS]: at['vision.pos'],
      [V.POST]: at['vision.post'], [V.POST_B]: at['vision.post.bias'], [V.ALIGNERS]: d.aligner.length });
    u.float(V.EPS, d.epsilon);
    u.float(V.SCALE, d.scale);
    d.aligner.forEach((/** @type {any} */ a, /** @type {number} */ j) => {
      const name = `vision.aligner.${j}`;
      [DTYPE_CODE[a.dtype], at[name], at[`${name}.scales`] ?? 0, at[`${name}.bias`], a.N, a.K, a.gelu ? 1 : 0]
        .forEach((v, k) => u.set(ALIGNER0 + j * A_FIELDS + k, v));
    });
    for (let i = 0; i < d.num_layers; i++) {
      LAYER.forEach((w, k) => u.set(LAYER0 + i * LAYER.length + k, at[`vision.${i}.${w}`] ?? 0));
    }
    this.table = rt.put(u.words);
    this.fields = u;
  }

  /**
   * The features of one image: pixel_values [3, S, S] (preprocess.js) -> [T, H], on every thread.
   * @param {Float32Array} pixels
   */
  features(pixels) {
    const rt = this.rt, S = this.d.image_size;
    if (pixels.length !== 3 * S * S) throw new Error(`the vision tower takes ${S} x ${S} pixels, not ${pixels.length} values`);
    rt.f32(this.fields.get(V.PIXELS), pixels.length).set(pixels);
    rt.fields().set(P.ARG, this.table);
    rt.run(KIND.VISION);
    return rt.f32(this.fields.get(V.OUT), this.d.tokens * this.H).slice();
  }
}
