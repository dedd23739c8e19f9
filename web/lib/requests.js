// What the requests take and give: an image input as pixel_values, decoded images as RGBA, and the checks of a
// chat or image request's numbers.

import { InputError } from './errors.js';
import { preprocess } from './preprocess.js';

/** @typedef {Blob|ImageBitmap|ImageData} ImageInput */

/**
 * An image as RGBA bytes. A Blob (PNG, JPEG...) is decoded as PIL decodes it (no colour management, no
 * premultiplied alpha), so pixel_values equal janusweb.image.preprocess's.
 * @param {ImageInput} image
 */
async function rgbaOf(image) {
  if (typeof ImageData !== 'undefined' && image instanceof ImageData) return image;
  const bitmap = image instanceof Blob
    ? await createImageBitmap(image, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' }) : image;
  if (!(typeof ImageBitmap !== 'undefined' && bitmap instanceof ImageBitmap)) {
    throw new InputError('an image must be a Blob, an ImageBitmap or an ImageData');
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext('2d'));
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
}

/** pixel_values of an image input (preprocessor_config.json's size). @param {ImageInput} image @param {any} pre */
export async function pixelValues(image, pre) {
  const { data, width, height } = await rgbaOf(image);
  return preprocess(data, width, height, pre);
}

/** decoded [3,H,W] in [-1,1] -> RGBA bytes, as janusweb.image.to_uint8. @param {Float32Array} x @param {number} size */
export function toRgba(x, size) {
  const plane = size * size;
  const out = new Uint8ClampedArray(plane * 4);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.fround(Math.fround(Math.fround(x[c * plane + i] + 1) / 2) * 255);
      out[i * 4 + c] = Math.trunc(Math.min(255, Math.max(0, v)));
    }
    out[i * 4 + 3] = 255;
  }
  return out;
}

/** A seed when the request names none. */
const randomSeed = () => Math.floor(Math.random() * 2 ** 31);

/**
 * A chat request's numbers with their defaults, or an InputError naming the first bad one. The seed only matters
 * with a temperature above 0 (greedy decoding draws nothing).
 * @param {{maxNewTokens?: number, temperature?: number, seed?: number}} r
 */
export function chatNumbers(r) {
  const maxNewTokens = r.maxNewTokens ?? 256, temperature = r.temperature ?? 0, seed = r.seed ?? randomSeed();
  if (!(Number.isInteger(maxNewTokens) && maxNewTokens >= 1)) throw new InputError('maxNewTokens must be a whole number, at least 1');
  if (!(Number.isFinite(temperature) && temperature >= 0)) throw new InputError('temperature must be a number ≥ 0');
  if (!Number.isInteger(seed)) throw new InputError('the seed must be an integer');
  return { maxNewTokens, temperature, seed };
}

/**
 * An image request's numbers with their defaults, or an InputError naming the first bad one.
 * @param {{count?: number, guidance?: number, temperature?: number, seed?: number, draws?: ArrayLike<number>,
 *   steps?: number, preview?: number}} r
 * @param {number} T image tokens per image
 */
export function imageNumbers(r, T) {
  const n = r.count ?? 1, preview = r.preview ?? 0;
  if (!(Number.isInteger(n) && n >= 1 && n <= 4)) throw new InputError('count must be 1 to 4');
  const draws = r.draws === undefined ? null : givenDraws(r, n * T);
  const seed = draws ? null : r.seed ?? randomSeed();
  if (!draws && !Number.isInteger(seed)) throw new InputError('the seed must be an integer');
  if (!(Number.isInteger(preview) && preview >= 0)) {
    throw new InputError('preview must be a whole number of steps (0: no previews)');
  }
  if (!(r.steps === undefined || (Number.isInteger(r.steps) && r.steps >= 1 && r.steps <= T))) {
    throw new InputError(`steps must be 1 to ${T}`);
  }
  const guidance = r.guidance ?? 5, temperature = r.temperature ?? 1;
  if (!(Number.isFinite(guidance) && Number.isFinite(temperature) && temperature >= 0)) {
    throw new InputError('guidance must be a number and temperature a number ≥ 0');
  }
  return { n, seed, draws, preview, guidance, temperature };
}

/**
 * A request's own uniform draws (instead of a seed's): count × T numbers in [0, 1), row-major [count, T].
 * @param {{draws?: ArrayLike<number>, seed?: number}} r
 * @param {number} length
 */
function givenDraws(r, length) {
  if (r.seed !== undefined) throw new InputError('give a seed or draws, not both');
  const d = Float32Array.from(/** @type {ArrayLike<number>} */ (r.draws));
  if (d.length !== length || !d.every((u) => u >= 0 && u < 1)) {
    throw new InputError(`draws must be count × tokens = ${length} numbers in [0, 1)`);
  }
  return d;
}
