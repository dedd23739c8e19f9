// Image -> pixel_values exactly as janusweb/image.py (Janus's VLMImageProcessor) does it: fit the longest side
// with PIL's bicubic resampling (reimplemented below, 8-bit fixed point as Pillow's Resample.c does it, because
// canvas resampling differs), pad centred with the background colour, scale to [0, 1], normalise.

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;

/** Pillow's bicubic kernel (a = -0.5), support 2. @param {number} x */
function bicubic(x) {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/**
 * Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis.
 * @param {number} inSize
 * @param {number} outSize
 * @returns {{bounds: Int32Array, weights: Float64Array, ksize: number}} integer weights (scaled by 2**22)
 */
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  const ss = 1 / filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const k = new Float64Array(xmax);
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = bicubic((x + xmin - center + 0.5) * ss);
      total += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = total !== 0 ? k[x] / total : k[x];
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, weights, ksize };
}

/** Pillow's clip8: shift out the fixed point, clamp to a byte. @param {number} v */
function clip8(v) {
  const x = Math.floor(v / ONE);
  return x < 0 ? 0 : x > 255 ? 255 : x;
}

/**
 * One resampling pass over RGB rows (3 bytes per pixel) along x (horizontal) or y (vertical).
 * @param {Uint8Array} src
 * @param {number} w source width
 * @param {number} h source height
 * @param {number} outW
 * @param {number} outH
 * @param {boolean} horizontal
 */
function pass(src, w, h, outW, outH, horizontal) {
  const c = horizontal ? coefficients(w, outW) : coefficients(h, outH);
  const out = new Uint8Array(outW * outH * 3);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const i = horizontal ? x : y;
      const min = c.bounds[i * 2];
      const n = c.bounds[i * 2 + 1];
      let r = ONE / 2, g = ONE / 2, b = ONE / 2;
      for (let k = 0; k < n; k++) {
        const wk = c.weights[i * c.ksize + k];
        const p = horizontal ? (y * w + min + k) * 3 : ((min + k) * w + x) * 3;
        r += src[p] * wk;
        g += src[p + 1] * wk;
        b += src[p + 2] * wk;
      }
      const o = (y * outW + x) * 3;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
    }
  }
  return out;
}

/**
 * Pillow's Image.resize(size, BICUBIC) for an RGB image: two passes, each rounding to bytes. Pillow (13)
 * runs the vertical pass first when the height shrinks by more than twice as many pixels as the width does,
 * else the horizontal one first; it only runs the passes that change a size.
 * @param {Uint8Array} rgb
 * @param {number} w
 * @param {number} h
 * @param {number} outW
 * @param {number} outH
 */
export function resizeBicubic(rgb, w, h, outW, outH) {
  const verticalFirst = h - outH > 0 && h - outH > (w - outW) * 2;
  let img = rgb;
  if (verticalFirst) {
    img = pass(img, w, h, w, outH, false);
    if (outW !== w) img = pass(img, w, outH, outW, outH, true);
  } else {
    if (outW !== w) img = pass(img, w, h, outW, h, true);
    if (outH !== h) img = pass(img, outW, h, outW, outH, false);
  }
  return img;
}

/** Python's round(): half to even. @param {number} x */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * RGBA bytes (canvas ImageData order; alpha is dropped as PIL's convert("RGB") drops it) -> pixel_values
 * [3, size, size] float32, as janusweb.image.preprocess.
 * @param {Uint8ClampedArray|Uint8Array} rgba
 * @param {number} w
 * @param {number} h
 * @param {{image_size: number, min_size: number, background_color: number[], image_mean: number[], image_std: number[]}} cfg
 *   preprocessor_config.json
 * @returns {Float32Array}
 */
export function preprocess(rgba, w, h, cfg) {
  const size = cfg.image_size;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    rgb[i * 3] = rgba[i * 4];
    rgb[i * 3 + 1] = rgba[i * 4 + 1];
    rgb[i * 3 + 2] = rgba[i * 4 + 2];
  }
  const scale = size / Math.max(w, h);
  const nw = Math.max(cfg.min_size, roundHalfEven(w * scale));
  const nh = Math.max(cfg.min_size, roundHalfEven(h * scale));
  const resized = nw === w && nh === h ? rgb : resizeBicubic(rgb, w, h, nw, nh);
  const left = Math.floor((size - nw) / 2);
  const top = Math.floor((size - nh) / 2);
  const out = new Float32Array(3 * size * size);
  const plane = size * size;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const sx = x - left, sy = y - top;
      const inside = sx >= 0 && sy >= 0 && sx < nw && sy < nh;
      for (let ch = 0; ch < 3; ch++) {
        const v = inside ? resized[(sy * nw + sx) * 3 + ch] : cfg.background_color[ch];
        const unit = Math.fround(v / 255);
        out[ch * plane + y * size + x] = Math.fround(unit - Math.fround(cfg.image_mean[ch])) / Math.fround(cfg.image_std[ch]);
      }
    }
  }
  return out;
}
