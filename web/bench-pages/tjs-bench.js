// The comparison backend: transformers.js (its MultiModalityCausalLM, its own onnxruntime-web) running the same
// bundle in the same browser, timed per step through a streamer. Used by bench/tjs.py; not part of the demo.
// Its ONNX Runtime wasm files are served from the site (ort-tjs/), never from a CDN.

import { env, MultiModalityCausalLM, Tensor } from '@huggingface/transformers';
import { describeAdapter, wasmThreads } from '../lib/backend.js';

const GRAPHS = ['prepare_inputs_embeds', 'language_model', 'lm_head', 'gen_head', 'gen_img_embeds', 'image_decode'];

/** @param {number[][]} rows @param {string} type @param {(v: number) => any} cast */
function tensor(rows, type, cast) {
  const data = rows.flat().map(cast);
  const dims = [rows.length, rows[0].length];
  if (type === 'int64') return new Tensor('int64', BigInt64Array.from(data), dims);
  return new Tensor('bool', Uint8Array.from(data), dims);
}

/**
 * One generate() call, with the time of every step: the streamer sees the prompt first, then each new token.
 * @param {any} model @param {string} method generate or generate_images @param {object} inputs
 */
async function timedGenerate(model, method, inputs) {
  const t0 = performance.now();
  /** @type {number[]} */
  const steps = [];
  let prompt = true;
  const streamer = {
    put: () => {
      if (!prompt) steps.push(performance.now() - t0);
      prompt = false;
    },
    end: () => undefined,
  };
  const out = await model[method]({ ...inputs, streamer });
  return { out, steps, total_ms: performance.now() - t0 };
}

/**
 * @param {{backend: 'webgpu'|'wasm', dtype: string, understanding: {input_ids: number[][],
 *   images_seq_mask: boolean[][], images_emb_mask: {dims: number[], data: boolean[]}, pixel_values: {dims:
 *   number[], data: number[]}}, textTokens: number, promptIds: number[], imageTokens: number, counts: number[],
 *   repeats: number}} c
 */
async function runTransformersJs(c) {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = new URL('./', location.href).href;
  const onnx = /** @type {any} */ (env.backends.onnx);
  onnx.wasm.wasmPaths = new URL('./ort-tjs/', location.href).href;
  onnx.wasm.numThreads = wasmThreads();
  const t0 = performance.now();
  // On WebGPU, prepare_inputs_embeds runs on WASM, as transformers.js's own Janus-Pro WebGPU example does: its
  // text-only calls feed the vision tower zero-size tensors, which the WebGPU kernels reject.
  const device = c.backend === 'wasm' ? 'wasm'
    : Object.fromEntries(GRAPHS.map((g) => [g, g === 'prepare_inputs_embeds' ? 'wasm' : 'webgpu']));
  const model = await MultiModalityCausalLM.from_pretrained('model',
    { device: /** @type {any} */ (device), dtype: c.dtype });
  const load_ms = performance.now() - t0;

  const u = c.understanding;
  const seq = u.input_ids[0].length;
  const text = {
    input_ids: tensor(u.input_ids, 'int64', BigInt), attention_mask: tensor(u.input_ids, 'int64', () => 1n),
    images_seq_mask: tensor(u.images_seq_mask, 'bool', Number),
    images_emb_mask: new Tensor('bool', Uint8Array.from(u.images_emb_mask.data, Number), u.images_emb_mask.dims),
    pixel_values: new Tensor('float32', Float32Array.from(u.pixel_values.data), u.pixel_values.dims),
    max_new_tokens: c.textTokens, min_new_tokens: c.textTokens, do_sample: false, guidance_scale: null,
  };
  // The prompt's masks as its processor makes them: no image in the prompt, rows for the conditional and (CFG,
  // added by transformers.js) unconditional inputs.
  /** @param {number} n */
  const image = (n) => ({
    input_ids: tensor(Array(n).fill(c.promptIds), 'int64', BigInt),
    attention_mask: tensor(Array(n).fill(c.promptIds), 'int64', () => 1n),
    images_seq_mask: tensor(Array(2 * n).fill(c.promptIds), 'bool', () => 0),
    images_emb_mask: new Tensor('bool', new Uint8Array(0), [2 * n, 1, 0]),
    max_new_tokens: c.imageTokens, min_new_tokens: c.imageTokens, do_sample: true,
  });
  await timedGenerate(model, 'generate', { ...text, max_new_tokens: 2, min_new_tokens: 2 }); // warm-up
  await timedGenerate(model, 'generate_images', image(c.counts[0]));
  const understanding = [];
  for (let r = 0; r < c.repeats; r++) {
    const { out, steps } = await timedGenerate(model, 'generate', text);
    understanding.push({ token_times_ms: steps, tokens: Array.from(out.slice(0, [seq, null]).data, Number) });
  }
  /** @type {Record<number, {step_times_ms: number[], total_ms: number}[]>} */
  const generation = {};
  for (const n of c.counts) {
    generation[n] = [];
    for (let r = 0; r < c.repeats; r++) {
      const { steps, total_ms } = await timedGenerate(model, 'generate_images', image(n));
      generation[n].push({ step_times_ms: steps, total_ms });
    }
  }
  await model.dispose();
  const gpu = c.backend === 'webgpu' ? await navigator.gpu?.requestAdapter() : null;
  return { load_ms, understanding, generation, adapter: gpu ? describeAdapter(gpu) : null,
    userAgent: navigator.userAgent, ort: onnx.versions?.web ?? null, transformers: env.version };
}

Object.assign(window, { runTransformersJs });
/** @type {HTMLElement} */ (document.getElementById('status')).textContent = 'ready';
