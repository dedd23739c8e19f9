// The generation loops over the Janus graphs, the same code on every backend and engine (janusweb/generate.py is
// the reference). The decoder is the engine's (engines/); the heads around it are the engine's where it has them,
// else ORT's (heads.js). On WebGPU the text loop reads one row of logits per token, the image loop reads nothing
// until the end.

import { Cancelled } from './errors.js';
import { dispose } from './tensors.js';
import { embed, heads } from './heads.js';

/** @typedef {import('./heads.js').Graphs} Graphs */
/** @typedef {import('./engines/engine.js').Dims} Dims */

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
  const h = heads(g, d);
  let embeds = prompt.pixels ? await embed(g, d, [prompt.inputIds], { pixels: prompt.pixels, imageMask: prompt.imageMask })
    : await h.embedTokens([prompt.inputIds]);
  const cache = g.engine.newCache(1, prompt.inputIds.length + opts.maxNewTokens);
  const tokens = [];
  try {
    for (let i = 0; i < opts.maxNewTokens; i++) {
      const hidden = await cache.step(embeds);
      dispose(embeds);
      const logits = await h.textLogits(hidden);
      dispose(hidden);
      const token = argmax(logits);
      tokens.push(token);
      opts.onToken(token);
      if (token === opts.eosId || i + 1 === opts.maxNewTokens) break;
      if (await opts.cancelled()) throw new Cancelled();
      embeds = await h.embedTokens([[token]]);
    }
  } finally {
    cache.release();
  }
  return tokens;
}

/**
 * Text-to-image with classifier-free guidance for n images (janusweb.generate.generate_images): rows [0,n) the
 * prompt, [n,2n) the unconditional prompt. `draws` [n*T] are the uniform numbers (row-major [n,T]). Each step is
 * the decoder then the image sampler (CFG, temperature, inverse-CDF sampling, next embeddings); the image tokens
 * are read once, at the end.
 * @param {Graphs} g
 * @param {Dims} d
 * @param {{promptIds: number[], uncondIds: number[], draws: Float32Array, n: number, guidance: number,
 *   temperature: number}} run
 * @param {{onStep: (step: number, total: number) => void, cancelled: () => Promise<boolean>}} opts
 * @returns {Promise<{tokens: BigInt64Array, images: Float32Array}>} tokens [n,T], images [n,3,H,W] in [-1,1]
 */
export async function generateImages(g, d, run, opts) {
  const { n } = run;
  const T = d.num_image_tokens;
  const h = heads(g, d);
  const rows = [...Array(n).fill(run.promptIds), ...Array(n).fill(run.uncondIds)];
  const sampler = h.imageSampler({ n, T, draws: run.draws, guidance: run.guidance, temperature: run.temperature });
  /** @type {import('onnxruntime-web').Tensor|undefined} */
  let embeds;
  /** @type {import('./engines/engine.js').KVCache|undefined} */
  let cache;
  try {
    embeds = await h.embedTokens(rows);
    cache = g.engine.newCache(2 * n, rows[0].length + T);
    for (let step = 0; step < T; step++) {
      const hidden = await cache.step(embeds);
      dispose(embeds);
      embeds = await sampler.step(hidden, step);
      dispose(hidden);
      opts.onStep(step + 1, T);
      if (await opts.cancelled()) throw new Cancelled();
    }
    const generated = sampler.tokens();
    const ids = /** @type {BigInt64Array} */ (await generated.getData());
    const { decoded_image } = await g.sessions.image_decode.run({ generated_tokens: generated });
    return { tokens: ids, images: /** @type {Float32Array} */ (await decoded_image.getData()) };
  } finally {
    dispose(embeds);
    sampler.release();
    cache?.release();
  }
}
