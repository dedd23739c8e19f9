// The text-to-image form: prompt, count, guidance, temperature, seed. Every run is kept, newest first, each image
// captioned with its seed; previews (every ?preview= steps, default 48, 0: off) draw the image in place as its
// tokens are drawn, within 10 % of the time unless ?preview= is given; "again with the next seed" reruns the prompt
// with seed + 1.

import { $, fail, failure, isAbort, janus, phase, running, state, workEnded } from './page.js';

// ?preview=N: exactly every N steps; by default every 48 steps while previews stay within 10 % of the time
const PREVIEW = new URLSearchParams(location.search).get('preview');
const asked = PREVIEW !== null && /^\d+$/.test(PREVIEW);
const previewEvery = asked ? Number(PREVIEW) : 48;
const previewBudget = asked ? undefined : 0.1;

/**
 * The canvas of image `index` in a run, made on first use.
 * @param {HTMLElement} run @param {number} index @param {number} seed @param {number} width @param {number} height
 */
function canvasOf(run, index, seed, width, height) {
  let figure = /** @type {HTMLElement|null} */ (run.querySelector(`figure[data-index="${index}"]`));
  if (!figure) {
    figure = document.createElement('figure');
    figure.dataset.index = String(index);
    const canvas = Object.assign(document.createElement('canvas'), { width, height });
    const caption = Object.assign(document.createElement('figcaption'), { textContent: `seed ${seed} · #${index + 1}` });
    figure.append(canvas, caption);
    const after = [...run.querySelectorAll('figure')].find((f) => Number(/** @type {HTMLElement} */ (f).dataset.index) > index);
    run.insertBefore(figure, after ?? null);
  }
  return /** @type {HTMLCanvasElement} */ (figure.querySelector('canvas'));
}

/** @param {HTMLCanvasElement} canvas @param {{rgba: Uint8ClampedArray, width: number, height: number}} msg */
function paint(canvas, msg) {
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
  ctx.putImageData(new ImageData(msg.rgba, msg.width, msg.height), 0, 0);
}

/** The final image: painted over its previews, with a PNG link. @param {HTMLElement} run @param {{index: number, width: number, height: number, rgba: Uint8ClampedArray}} msg @param {number} seed */
function showImage(run, msg, seed) {
  const canvas = canvasOf(run, msg.index, seed, msg.width, msg.height);
  paint(canvas, msg);
  canvas.classList.remove('partial');
  const link = Object.assign(document.createElement('a'),
    { textContent: 'Download PNG', download: `janus-seed${seed}-${msg.index + 1}.png` });
  canvas.toBlob((blob) => { if (blob) link.href = URL.createObjectURL(blob); }, 'image/png');
  canvas.parentElement?.append(link);
}

$('image-form').onsubmit = async (/** @type {Event} */ e) => {
  e.preventDefault();
  const seed = Number($('seed').value);
  state.images = { tokens: [], decoded: [], done: false, seconds: 0, previews: [] };
  const run = Object.assign(document.createElement('div'), { className: 'run' });
  $('gallery').prepend(run);
  $('again').hidden = true;
  $('image-bar').value = 0;
  $('image-progress').textContent = '';
  running(true, 'generate', 'image-cancel');
  const controller = new AbortController();
  $('image-cancel').onclick = () => controller.abort();
  try {
    const r = await janus().generateImages({ prompt: $('prompt').value, count: Number($('count').value),
      guidance: Number($('guidance').value), temperature: Number($('temperature').value), seed,
      preview: previewEvery, previewBudget, signal: controller.signal,
      onProgress: (p) => { if (p.what === 'phase') phase(`${p.name}…`, 'image-progress'); },
      onStep: (s) => {
        $('image-bar').value = s.step / s.total;
        $('image-progress').textContent = `drawing the image… ${s.step}/${s.total} image tokens`;
      },
      onPreview: (p) => {
        state.images.previews.push({ index: p.index, step: p.step });
        const canvas = canvasOf(run, p.index, seed, p.width, p.height);
        canvas.classList.add('partial');
        paint(canvas, p);
      } });
    for (const im of r.images) {
      state.images.tokens[im.index] = im.tokens;
      state.images.decoded[im.index] = im.decoded;
      showImage(run, im, seed);
    }
    Object.assign(state.images, { done: true, seconds: r.seconds, gpuReads: r.gpu?.reads,
      previewSeconds: r.previewSeconds });
    const n = r.images.length;
    $('image-progress').textContent = `${n} image${n > 1 ? 's' : ''} in ${r.seconds.toFixed(2)} s`;
    $('again').hidden = false;
    workEnded();
  } catch (thrown) {
    if (isAbort(thrown)) {
      state.images.done = true;
      $('image-progress').textContent = `${$('image-progress').textContent} · cancelled`;
      workEnded();
    } else {
      fail(failure(thrown));
    }
  } finally {
    running(false, 'generate', 'image-cancel');
  }
};

$('again').onclick = () => {
  $('seed').value = String(Number($('seed').value) + 1);
  $('image-form').requestSubmit();
};
