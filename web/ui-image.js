// The text-to-image form: prompt, count, guidance, temperature, seed. Every run is kept, newest first, each image
// captioned with its seed; previews (every ?preview= steps, default 48, 0: off) draw the image in place as its
// tokens are drawn, within 10 % of the time unless ?preview= is given; "again with the next seed" reruns the prompt
// with seed + 1.

import { $, fail, phase, running, send, state, worker, workEnded } from './page.js';

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

/** The final image: painted over its previews, with a PNG link. @param {HTMLElement} run @param {any} msg @param {number} seed */
function showImage(run, msg, seed) {
  const canvas = canvasOf(run, msg.index, seed, msg.width, msg.height);
  paint(canvas, msg);
  canvas.classList.remove('partial');
  const link = Object.assign(document.createElement('a'),
    { textContent: 'Download PNG', download: `janus-seed${seed}-${msg.index + 1}.png` });
  canvas.toBlob((blob) => { if (blob) link.href = URL.createObjectURL(blob); }, 'image/png');
  canvas.parentElement?.append(link);
}

$('image-form').onsubmit = (/** @type {Event} */ e) => {
  e.preventDefault();
  const seed = Number($('seed').value);
  state.images = { tokens: [], decoded: [], done: false, seconds: 0, previews: [] };
  const run = Object.assign(document.createElement('div'), { className: 'run' });
  $('gallery').prepend(run);
  $('again').hidden = true;
  $('image-bar').value = 0;
  $('image-progress').textContent = '';
  running(true, 'generate', 'image-cancel');
  const id = send({ type: 'generate', task: 'image', prompt: $('prompt').value, count: Number($('count').value),
    guidance: Number($('guidance').value), temperature: Number($('temperature').value), seed,
    preview: previewEvery, previewBudget }, (msg) => {
    if (msg.type === 'progress' && msg.what === 'phase') phase(`${msg.name}…`, 'image-progress');
    else if (msg.type === 'progress' && msg.what === 'step') {
      $('image-bar').value = msg.done / msg.total;
      $('image-progress').textContent = `drawing the image… ${msg.done}/${msg.total} image tokens`;
    } else if (msg.type === 'preview') {
      state.images.previews.push({ index: msg.index, step: msg.step });
      const canvas = canvasOf(run, msg.index, seed, msg.width, msg.height);
      canvas.classList.add('partial');
      paint(canvas, msg);
    } else if (msg.type === 'image') {
      state.images.tokens[msg.index] = msg.tokens;
      state.images.decoded[msg.index] = msg.decoded;
      showImage(run, msg, seed);
    } else if (msg.type === 'done') {
      Object.assign(state.images, { done: true, seconds: msg.seconds, gpuReads: msg.gpuReads,
        previewSeconds: msg.previewSeconds });
      const n = state.images.tokens.length;
      $('image-progress').textContent = msg.cancelled ? `${$('image-progress').textContent} · cancelled`
        : `${n} image${n > 1 ? 's' : ''} in ${msg.seconds?.toFixed(2)} s`;
      running(false, 'generate', 'image-cancel');
      $('again').hidden = !!msg.cancelled;
      workEnded();
    } else if (msg.type === 'error') {
      fail(msg);
      running(false, 'generate', 'image-cancel');
    }
  });
  $('image-cancel').onclick = () => worker.postMessage({ type: 'cancel', id });
};

$('again').onclick = () => {
  $('seed').value = String(Number($('seed').value) + 1);
  $('image-form').requestSubmit();
};
