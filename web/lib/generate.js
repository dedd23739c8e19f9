// The generation loops over the Janus graphs, the same code on every backend and engine (janusweb/generate.py is
// the reference). The decoder is the engine's (engines/); the heads around it are the engine's where it has them,
// else ORT's (heads.js). On WebGPU the text loop reads one row of logits per token, the image loop reads nothing
// until the end.

import * as ort from 'onnxruntime-web/webgpu';
import { Cancelled, InputError } from './errors.js';
import { dispose } from './tensors.js';
import { heads } from './heads.js';
import { sampleToken } from './sampling.js';

// The phases of a request, as the page labels them, in the order they come.
export const PHASES = {
  encode: 'encoding the image', prefill: 'reading the prompt', tokens: 'writing the answer',
  steps: 'drawing the image', decode: 'decoding the image',
};

/** @typedef {import('./heads.js').Graphs} Graphs */
/** @typedef {import('./engines/engine.js').Dims} Dims */

/**
 * Decoding after a prompt (janusweb.generate.generate_text): greedy, or with `temperature` > 0 each token drawn
 * by sampling.js's sampleToken at draws[i]. Stops after maxNewTokens or at eosId.
 * @param {Graphs} g
 * @param {Dims} d
 * @param {{inputIds: number[], imageMask: boolean[], pixels: Float32Array|null}} prompt
 * @param {{maxNewTokens: number, eosId: number, onToken: (token: number) => void,
 *   cancelled: () => Promise<boolean>, onPhase?: (phase: string) => void,
 *   cache?: import('./engines/engine.js').KVCache, temperature?: number, draws?: Float32Array}} opts `cancelled` is
 *   awaited between steps (so the worker sees a cancel); `onPhase` names each phase as it starts; `cache`: a
 *   conversation's cache, which already holds the earlier turns and is kept (not released) afterwards;
 *   `temperature` (default 0: greedy) > 0 needs `draws`, one per token
 * @returns {Promise<number[]>}
 */
export async function generateText(g, d, prompt, opts) {
  const h = heads(g, d);
  const phase = opts.onPhase ?? (() => undefined);
  if (prompt.pixels) phase(PHASES.encode);
  let embeds = prompt.pixels ? await h.embedImage([prompt.inputIds], { pixels: prompt.pixels, imageMask: prompt.imageMask })
    : await h.embedTokens([prompt.inputIds]);
  phase(PHASES.prefill);
  const cache = opts.cache ?? g.engine.newCache(1, prompt.inputIds.length + opts.maxNewTokens);
  const tokens = [];
  try {
    for (let i = 0; i < opts.maxNewTokens; i++) {
      const hidden = await cache.step(embeds);
      dispose(embeds);
      const logits = await h.textLogits(hidden);
      dispose(hidden);
      const token = sampleToken(logits, opts.draws?.[i] ?? 0, opts.temperature ?? 0);
      tokens.push(token);
      if (i === 0) phase(PHASES.tokens);
      opts.onToken(token);
      if (token === opts.eosId || i + 1 === opts.maxNewTokens) break;
      if (await opts.cancelled()) throw new Cancelled();
      embeds = await h.embedTokens([[token]]);
    }
  } finally {
    if (!opts.cache) cache.release();
  }
  return tokens;
}

/**
 * Feed a prompt into `cache` without generating (a conversation's earlier turns, replayed).
 * @param {Graphs} g
 * @param {Dims} d
 * @param {{inputIds: number[], imageMask: boolean[], pixels: Float32Array|null}} prompt
 * @param {import('./engines/engine.js').KVCache} cache
 */
export async function feed(g, d, prompt, cache) {
  const h = heads(g, d);
  const embeds = prompt.pixels ? await h.embedImage([prompt.inputIds], { pixels: prompt.pixels, imageMask: prompt.imageMask })
    : await h.embedTokens([prompt.inputIds]);
  const hidden = await cache.step(embeds);
  dispose(embeds);
  dispose(hidden);
}

/**
 * The image grid of a preview: the first `k` tokens of each of the n rows as drawn, the rest filled with the
 * token drawn most often so far in that row (a neutral fill: the image's dominant colour, not a pattern).
 * @param {ArrayLike<number|bigint>} drawn [n,T]
 * @param {number} n @param {number} T @param {number} k
 */
export function partialGrid(drawn, n, T, k) {
  const out = new BigInt64Array(n * T);
  for (let r = 0; r < n; r++) {
    /** @type {Map<number, number>} */
    const counts = new Map();
    let fill = 0, best = 0;
    for (let i = 0; i < k; i++) {
      const t = Number(drawn[r * T + i]);
      out[r * T + i] = BigInt(t);
      const c = (counts.get(t) ?? 0) + 1;
      counts.set(t, c);
      if (c > best) [best, fill] = [c, t];
    }
    out.fill(BigInt(fill), r * T + k, (r + 1) * T);
  }
  return new ort.Tensor('int64', out, [n, T]);
}

/**
 * Text-to-image with classifier-free guidance for n images (janusweb.generate.generate_images): rows [0,n) the
 * prompt, [n,2n) the unconditional prompt. `draws` [n*T] are the uniform numbers (row-major [n,T]). Each step is
 * the decoder then the image sampler (CFG, temperature, inverse-CDF sampling, next embeddings); the image tokens
 * are read once, at the end.
 * @param {Graphs} g
 * @param {Dims} d
 * @param {{promptIds: number[], uncondIds: number[], draws: Float32Array<ArrayBuffer>, n: number, guidance: number,
 *   temperature: number, steps?: number}} run `steps`: draw only the first this many tokens (the rest are 0)
 * @param {{onStep: (step: number, total: number) => void, cancelled: () => Promise<boolean>,
 *   onPhase?: (phase: string) => void, preview?: {every: number,
 *   budget?: number, show: (images: Float32Array, step: number, ms: number) => void}}}
 *   opts `preview`: every `every` steps (not after the last), the tokens drawn so far are decoded (partialGrid) and
 *   shown; it reads the sampler's tokens and runs image_decode, and changes nothing in the loop. With `budget`, a
 *   preview is skipped while the previews so far took more than that share of the time so far
 * @returns {Promise<{tokens: BigInt64Array, images: Float32Array, decodeMs: number}>} tokens [n,T], images
 *   [n,3,H,W] in [-1,1]; decodeMs the VQ decoder's time (image_decode, its output read)
 */
export async function generateImages(g, d, run, opts) {
  const { n } = run;
  const T = d.num_image_tokens;
  const last = run.steps ?? T; // a shortened run stops after `last` steps
  const h = heads(g, d);
  const phase = opts.onPhase ?? (() => undefined);
  const started = performance.now();
  let previewMs = 0;
  const rows = [...Array(n).fill(run.promptIds), ...Array(n).fill(run.uncondIds)];
  const sampler = h.imageSampler({ n, T, draws: run.draws, guidance: run.guidance, temperature: run.temperature });
  if (last < T && !sampler.drawn) throw new InputError('this decoder engine cannot stop an image early (steps)');
  /** @type {import('onnxruntime-web').Tensor|undefined} */
  let embeds;
  /** @type {import('./engines/engine.js').KVCache|undefined} */
  let cache;
  try {
    phase(PHASES.prefill);
    embeds = await h.embedTokens(rows);
    cache = g.engine.newCache(2 * n, rows[0].length + T);
    for (let step = 0; step < last; step++) {
      const hidden = await cache.step(embeds);
      dispose(embeds);
      embeds = await sampler.step(hidden, step);
      dispose(hidden);
      if (step === 0) phase(PHASES.steps);
      opts.onStep(step + 1, T);
      const every = opts.preview?.every ?? 0;
      const budget = opts.preview?.budget ?? Infinity; // previews' share of the time so far, at most
      if (every > 0 && sampler.drawn && (step + 1) % every === 0 && step + 1 < T
        && previewMs <= budget * (performance.now() - started)) {
        const t0 = performance.now();
        const grid = partialGrid(await sampler.drawn(), n, T, step + 1);
        const images = await h.decodeImage(grid);
        previewMs += performance.now() - t0;
        opts.preview?.show(images, step + 1, performance.now() - t0);
      }
      if (await opts.cancelled()) throw new Cancelled();
    }
    let generated, ids;
    if (last < T) { // a shortened run: the tokens not drawn are 0, as janusweb.generate decodes them
      const drawn = await /** @type {() => Promise<ArrayLike<number|bigint>>} */ (sampler.drawn)();
      ids = BigInt64Array.from({ length: n * T }, (_, k) => (k % T < last ? BigInt(drawn[k]) : 0n));
      generated = new ort.Tensor('int64', ids, [n, T]);
    } else {
      generated = sampler.tokens();
      ids = /** @type {BigInt64Array} */ (await generated.getData());
    }
    phase(PHASES.decode);
    const t0 = performance.now();
    const images = await h.decodeImage(generated);
    // a cancel that came while the decoder ran (most of a short run's time) still ends the request: a request
    // aborted before its result is handed back rejects, as fetch's does
    if (await opts.cancelled()) throw new Cancelled();
    return { tokens: ids, images, decodeMs: performance.now() - t0 };
  } finally {
    dispose(embeds);
    sampler.release();
    cache?.release();
  }
}
