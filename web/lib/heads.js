// The per-token heads around the decoder, on ORT sessions: the defaults for an engine that does not take them
// over (engines/engine.js's Engine: embedTokens, textLogits, imageSampler). On WebGPU, embeddings, hidden states
// and the image token buffer stay in GPU buffers between sessions.

import * as ort from 'onnxruntime-web/webgpu';
import { dispose, gpuTensor, int64, slicePositions } from './tensors.js';

/** @typedef {import('./engines/engine.js').Dims} Dims */
/** @typedef {import('./engines/engine.js').ImageRun} ImageRun */

// On WebGPU, a second prepare_inputs_embeds session with every node on the GPU, for prompts with an image (the
// first one runs the vision tower on the CPU, for text-only calls): see sessions.js.
export const IMAGE_EMBEDS = 'prepare_inputs_embeds@image';

/**
 * The model's runtime: its sessions, where their tensors live, and the decoder engine.
 * @typedef {object} Graphs
 * @property {Record<string, ort.InferenceSession>} sessions by session name
 * @property {GPUDevice|null} device set on WebGPU: constants are uploaded once, rows copied on the GPU
 * @property {import('./engines/engine.js').Engine} engine
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
 * @param {Float32Array<ArrayBuffer>} data
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
export async function embed(g, d, rows, image) {
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

/**
 * gen_step as the image loop's sampler: CFG, temperature, inverse-CDF sampling, next embeddings and the token
 * buffer, all on the device; the image tokens come out of the last step.
 * @param {Graphs} g
 * @param {ImageRun} run
 * @returns {import('./engines/engine.js').ImageSampler}
 */
function genStepSampler(g, run) {
  const { n, T } = run;
  const consts = {
    draws: constant(g, run.draws, [n, T]),
    guidance: constant(g, Float32Array.of(run.guidance), [1]),
    temperature: constant(g, Float32Array.of(run.temperature), [1]),
  };
  /** @type {ort.Tensor} */
  let tokens = new ort.Tensor('float32', new Float32Array(n * T), [n, T]);
  /** @type {ort.Tensor|undefined} */
  let imageTokens;
  return {
    async step(hidden, step) {
      const [, S, H] = hidden.dims;
      const feeds = { hidden_states: view(hidden, [2, n, S, H]), ...consts, tokens,
        step: new ort.Tensor('float32', Float32Array.of(step), [1]) };
      const last = step === T - 1;
      const out = await g.sessions.gen_step.run(feeds, ['inputs_embeds', 'tokens_out', ...(last ? ['image_tokens'] : [])]);
      dispose(tokens);
      tokens = out.tokens_out;
      imageTokens = out.image_tokens;
      return out.inputs_embeds;
    },
    tokens: () => /** @type {ort.Tensor} */ (imageTokens),
    drawn: async () => /** @type {Float32Array} */ (await tokens.getData()),
    release: () => [tokens, imageTokens, ...Object.values(consts)].forEach(dispose),
  };
}

/**
 * The heads the loops use: the engine's where it has them, else the ORT sessions'.
 * @param {Graphs} g
 * @param {Dims} d
 */
export function heads(g, d) {
  const e = g.engine;
  return {
    embedTokens: e.embedTokens ?? ((/** @type {number[][]} */ rows) => embed(g, d, rows, null)),
    embedImage: e.embedImage ?? ((/** @type {number[][]} */ rows,
      /** @type {{pixels: Float32Array, imageMask: boolean[]}} */ image) => embed(g, d, rows, image)),
    decodeImage: e.decodeImage ?? (async (/** @type {ort.Tensor} */ tokens) => {
      const { decoded_image } = await g.sessions.image_decode.run({ generated_tokens: tokens });
      const pixels = /** @type {Float32Array} */ (await decoded_image.getData());
      dispose(decoded_image);
      return pixels;
    }),
    textLogits: e.textLogits ?? (async (/** @type {ort.Tensor} */ hidden) => {
      const last = lastPosition(g, hidden);
      const { logits } = await g.sessions.lm_head.run({ hidden_states: last });
      if (last !== hidden) dispose(last);
      return /** @type {Float32Array} */ (await logits.getData());
    }),
    imageSampler: e.imageSampler ?? ((/** @type {ImageRun} */ run) => genStepSampler(g, run)),
  };
}
