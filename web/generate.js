// The generation loops over the Janus graphs, the same code on WebGPU and on WASM (janusweb/generate.py is the
// reference). On WebGPU, embeddings, hidden states, the KV cache and the image token buffer stay in GPU buffers
// between sessions; the text loop reads one row of logits per token, the image loop reads nothing until the end.
// How the KV cache is held (grown per step, or bound in place) is kv-cache.js's business.

import * as ort from 'onnxruntime-web/webgpu';
import { dispose, gpuTensor, int64, slicePositions } from './tensors.js';

/**
 * @typedef {object} Dims
 * @property {number} num_layers
 * @property {number} num_key_value_heads
 * @property {number} head_dim
 * @property {number} hidden_size
 * @property {number} image_size
 * @property {number} num_image_tokens
 * @property {number} decoded_image_size
 */

// On WebGPU, a second prepare_inputs_embeds session with every node on the GPU, for prompts with an image (the
// first one runs the vision tower on the CPU, for text-only calls): see worker.js.
export const IMAGE_EMBEDS = 'prepare_inputs_embeds@image';

export class Cancelled extends Error {
  constructor() {
    super('cancelled');
    this.name = 'Cancelled';
  }
}

/**
 * The sessions of a bundle and where their tensors live.
 * @typedef {object} Graphs
 * @property {Record<string, ort.InferenceSession>} sessions by graph name
 * @property {GPUDevice|null} device set on WebGPU: constants are uploaded once, rows copied on the GPU
 * @property {(rows: number, capacity: number) => import('./kv-cache.js').KVCache} newCache an empty KV cache
 *   for `rows` sequences of up to `capacity` positions, over the language model session
 */

/**
 * The same data with other dims (no copy). ORT refuses to reshape the GPU tensors it owns, so on the GPU this
 * is a view of the buffer, valid while `t` is.
 * @param {ort.Tensor} t
 * @param {number[]} dims
 */
function view(t, dims) {
  if (t.location !== 'gpu-buffer') return t.reshape(dims);
  return ort.Tensor.fromGpuBuffer(t.gpuBuffer, { dataType: /** @type {any} */ (t.type), dims });
}

/**
 * A tensor that stays where the session runs: on WebGPU a GPU buffer written once (no per-step upload).
 * @param {Graphs} g
 * @param {Float32Array} data
 * @param {number[]} dims
 */
function constant(g, data, dims) {
  return g.device ? gpuTensor(g.device, 'float32', dims, data) : new ort.Tensor('float32', data, dims);
}

/**
 * hidden [B,S,H] -> its last position [B,1,H]; on the GPU a buffer-to-buffer copy, never a read.
 * @param {Graphs} g
 * @param {ort.Tensor} hidden
 */
function lastPosition(g, hidden) {
  const [B, S, H] = hidden.dims;
  if (S === 1) return hidden;
  if (hidden.location !== 'gpu-buffer') {
    const data = /** @type {Float32Array} */ (hidden.data);
    const out = new Float32Array(B * H);
    for (let b = 0; b < B; b++) out.set(data.subarray((b * S + S - 1) * H, (b * S + S) * H), b * H);
    return new ort.Tensor('float32', out, [B, 1, H]);
  }
  return slicePositions(/** @type {GPUDevice} */ (g.device), hidden, S - 1, 1);
}

/**
 * prepare_inputs_embeds for token rows [B,S] (all rows the same length) and optional pixels [B,N,3,H,W].
 * @param {Graphs} g
 * @param {Dims} d
 * @param {number[][]} rows
 * @param {{pixels: Float32Array, imageMask: boolean[]}|null} image one image for a single row
 */
async function embed(g, d, rows, image) {
  const B = rows.length, S = rows[0].length, N = image ? 1 : 0, size = d.image_size, T = d.num_image_tokens;
  const seqMask = Uint8Array.from(image ? image.imageMask : new Array(B * S).fill(false), Number);
  const session = (image && g.sessions[IMAGE_EMBEDS]) || g.sessions.prepare_inputs_embeds;
  const out = await session.run({
    input_ids: int64(rows.flat(), [B, S]),
    pixel_values: new ort.Tensor('float32', image ? image.pixels : new Float32Array(0), [B, N, 3, size, size]),
    images_seq_mask: new ort.Tensor('bool', seqMask, [B, S]),
    images_emb_mask: new ort.Tensor('bool', new Uint8Array(B * N * T).fill(1), [B, N, T]),
  });
  return out.inputs_embeds;
}

/** Index of the first maximum, as numpy's argmax. @param {Float32Array} x */
function argmax(x) {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/**
 * Greedy decoding after a prompt (janusweb.generate.generate_text). Stops after maxNewTokens or at eosId.
 * @param {Graphs} g
 * @param {Dims} d
 * @param {{inputIds: number[], imageMask: boolean[], pixels: Float32Array|null}} prompt
 * @param {{maxNewTokens: number, eosId: number, onToken: (token: number) => void,
 *   cancelled: () => Promise<boolean>}} opts `cancelled` is awaited between steps (so the worker sees a cancel)
 * @returns {Promise<number[]>}
 */
export async function generateText(g, d, prompt, opts) {
  const image = prompt.pixels ? { pixels: prompt.pixels, imageMask: prompt.imageMask } : null;
  let embeds = await embed(g, d, [prompt.inputIds], image);
  const cache = g.newCache(1, prompt.inputIds.length + opts.maxNewTokens);
  const tokens = [];
  try {
    for (let i = 0; i < opts.maxNewTokens; i++) {
      const hidden = await cache.step(embeds);
      dispose(embeds);
      const last = lastPosition(g, hidden);
      const { logits } = await g.sessions.lm_head.run({ hidden_states: last });
      if (last !== hidden) dispose(last);
      dispose(hidden);
      const token = argmax(/** @type {Float32Array} */ (await logits.getData()));
      tokens.push(token);
      opts.onToken(token);
      if (token === opts.eosId || i + 1 === opts.maxNewTokens) break;
      if (await opts.cancelled()) throw new Cancelled();
      embeds = await embed(g, d, [[token]], null);
    }
  } finally {
    cache.release();
  }
  return tokens;
}

/**
 * Text-to-image with classifier-free guidance for n images (janusweb.generate.generate_images): rows [0,n) the
 * prompt, [n,2n) the unconditional prompt. `draws` [n*T] are the uniform numbers (row-major [n,T]). Each step is
 * language_model then gen_step (CFG, temperature, inverse-CDF sampling, next embeddings, token buffer), all on
 * the device; the image tokens are read once, at the end.
 * @param {Graphs} g
 * @param {Dims} d
 * @param {{promptIds: number[], uncondIds: number[], draws: Float32Array, n: number, guidance: number,
 *   temperature: number}} run
 * @param {{onStep: (step: number, total: number) => void, cancelled: () => Promise<boolean>}} opts
 * @returns {Promise<{tokens: BigInt64Array, images: Float32Array}>} tokens [n,T], images [n,3,H,W] in [-1,1]
 */
export async function generateImages(g, d, run, opts) {
  const { n } = run;
  const T = d.num_image_tokens, H = d.hidden_size;
  const rows = [...Array(n).fill(run.promptIds), ...Array(n).fill(run.uncondIds)];
  const consts = {
    draws: constant(g, run.draws, [n, T]),
    guidance: constant(g, Float32Array.of(run.guidance), [1]),
    temperature: constant(g, Float32Array.of(run.temperature), [1]),
  };
  let embeds = await embed(g, d, rows, null);
  const cache = g.newCache(2 * n, rows[0].length + T);
  let tokens = new ort.Tensor('float32', new Float32Array(n * T), [n, T]);
  /** @type {ort.Tensor|undefined} */
  let imageTokens;
  try {
    for (let step = 0; step < T; step++) {
      const hidden = await cache.step(embeds);
      dispose(embeds);
      const S = hidden.dims[1];
      const last = step === T - 1;
      const feeds = { hidden_states: view(hidden, [2, n, S, H]), ...consts, tokens,
        step: new ort.Tensor('float32', Float32Array.of(step), [1]) };
      const out = await g.sessions.gen_step.run(feeds, ['inputs_embeds', 'tokens_out', ...(last ? ['image_tokens'] : [])]);
      dispose(hidden);
      dispose(tokens);
      embeds = out.inputs_embeds;
      tokens = out.tokens_out;
      imageTokens = out.image_tokens;
      opts.onStep(step + 1, T);
      if (await opts.cancelled()) throw new Cancelled();
    }
    const generated = /** @type {ort.Tensor} */ (imageTokens);
    const ids = /** @type {BigInt64Array} */ (await generated.getData());
    const { decoded_image } = await g.sessions.image_decode.run({ generated_tokens: generated });
    return { tokens: ids, images: /** @type {Float32Array} */ (await decoded_image.getData()) };
  } finally {
    [embeds, tokens, imageTokens, ...Object.values(consts)].forEach(dispose);
    cache.release();
  }
}
