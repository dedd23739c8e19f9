// The quality evaluation's page (`janusweb bench quality`, bench/scenarios/quality.py): the library in a worker, as
// the demo page runs it, asked for every picture and every answer of the evaluation in turn. The Python side scores
// them (janusweb/quality.py, janusweb/scorer.py). Nothing here re-implements generation.

import { createJanusWorker } from '../lib/index.js';
import { base64 } from './base64.js';

/**
 * @typedef {object} QualityConfig
 * @property {'webgpu'|'wasm'} backend
 * @property {string} engine the decoder engine (loadJanus's `engine`)
 * @property {string|null} dtype
 * @property {{prompt: string, seed: number, count: number, guidance: number}[]} images text-to-image requests
 *   (temperature 1)
 * @property {{question: string, imagePng: string}[]} questions one question about one picture (base64 PNG) each,
 *   answered greedily up to EOS
 * @property {number} maxNewTokens
 */

/** @param {QualityConfig} c */
async function runQuality(c) {
  const api = createJanusWorker(new Worker(new URL('./worker.js', import.meta.url), { type: 'module' }));
  try {
    const janus = await api.loadJanus(new URL('model/', location.href),
      { backend: c.backend, dtype: c.dtype, engine: c.engine });
    /** @type {string[][]} */
    const images = [];
    for (const r of c.images) {
      const out = await janus.generateImages({ prompt: r.prompt, count: r.count, guidance: r.guidance,
        temperature: 1, seed: r.seed });
      images.push(out.images.map((im) => base64(im.decoded)));
    }
    /** @type {string[]} */
    const answers = [];
    for (const q of c.questions) {
      const image = await (await fetch(`data:image/png;base64,${q.imagePng}`)).blob();
      answers.push((await janus.chat({ question: q.question, image, maxNewTokens: c.maxNewTokens })).text);
    }
    const info = janus.info;
    await janus.release();
    return { info, images, answers, userAgent: navigator.userAgent };
  } finally {
    api.terminate();
  }
}

Object.assign(window, { runQuality });
/** @type {HTMLElement} */ (document.getElementById('status')).textContent = 'ready';
