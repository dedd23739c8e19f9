// What a decoder engine is, and the one resolver that picks it. An engine runs the language model's decoder
// layers for one request at a time through a KVCache (prefill: the first step, with the whole prompt; decode:
// one position a step) and may also take over the per-token heads (token embedding, lm_head, the image step);
// where it does not, the ORT sessions in heads.js provide them. Engines are listed in list.js, one line each.

import * as listed from './list.js';
import { InputError } from '../errors.js';

/** @typedef {import('onnxruntime-web').Tensor} Tensor */
/** @typedef {import('../backend.js').Backend} Backend */
/** @typedef {import('../loader.js').Manifest} Manifest */

/**
 * @typedef {object} Dims config.json's janusweb block
 * @property {number} num_layers
 * @property {number} num_key_value_heads
 * @property {number} head_dim
 * @property {number} hidden_size
 * @property {number} vocab_size
 * @property {number} image_size
 * @property {number} num_image_tokens
 * @property {number} decoded_image_size
 */

/**
 * One request's decoder state, for `rows` sequences of up to `capacity` positions.
 * @typedef {object} KVCache
 * @property {(embeds: Tensor) => Promise<Tensor>} step embeds [rows,S,H] -> hidden states [rows,S',H] of the last
 *   S' <= S positions (S' >= 1; the caller disposes them). The first call is the prefill.
 * @property {() => void} release
 */

/**
 * The image loop's per-step head for one request: CFG, temperature, inverse-CDF sampling, the next embeddings.
 * @typedef {object} ImageSampler
 * @property {(hidden: Tensor, step: number) => Promise<Tensor>} step hidden [2n,S,H] (rows [0,n) the prompt, [n,2n)
 *   the unconditional prompt) -> the next embeddings [2n,1,H] of the tokens it drew at `step`
 * @property {() => Tensor} tokens the image tokens drawn so far, int64 [n,T] (read after the last step)
 * @property {() => Promise<ArrayLike<number|bigint>>} [drawn] the tokens drawn so far, [n,T] row-major, values at steps not
 *   drawn yet unspecified (a read: for previews only; a sampler without it gives no previews)
 * @property {() => void} release
 */

/**
 * @typedef {object} ImageRun
 * @property {number} n images
 * @property {number} T tokens per image
 * @property {Float32Array<ArrayBuffer>} draws [n*T] uniforms, row-major [n,T]
 * @property {number} guidance CFG scale
 * @property {number} temperature 0 is greedy
 */

/**
 * A created engine. The optional members replace the default ORT heads (heads.js) when present.
 * @typedef {object} Engine
 * @property {string} kvCache how the decoder runs and holds its KV cache, in words (the page shows it)
 * @property {(rows: number, capacity: number) => KVCache} newCache
 * @property {number} [maxPositions] the most positions one of its caches holds (its rotary table); absent: no
 *   limit of its own
 * @property {() => void} release frees what the engine holds (not the ORT sessions: the model owns those)
 * @property {Record<string, string>} [dtypes] graphs it runs outside ORT sessions -> dtype (shown on the page)
 * @property {(rows: number[][]) => Promise<Tensor>} [embedTokens] token rows [B,S] -> embeddings [B,S,H]
 *   (text-only; prompts with an image go through embedImage, or prepare_inputs_embeds)
 * @property {(rows: number[][], image: {pixels: Float32Array, imageMask: boolean[]}) => Promise<Tensor>} [embedImage]
 *   one token row [1,S] with one image (pixel_values [3,H,W]; imageMask: its S positions) -> embeddings [1,S,H]
 * @property {(tokens: Tensor) => Promise<Float32Array>} [decodeImage] image tokens int64 [n,T] -> pixels [n,3,H,W]
 *   in [-1,1] (image_decode's output)
 * @property {(hidden: Tensor) => Promise<Float32Array>} [textLogits] hidden [1,S,H] -> the last position's logits
 * @property {(run: ImageRun) => ImageSampler} [imageSampler]
 * @property {() => number} [memoryBytes] the memory it holds itself (outside ORT), now
 * @property {Record<string, string|number|boolean>} [details] engine-specific facts for Janus.info
 */

/**
 * What an engine needs from the bundle, decided before any session is made.
 * @typedef {object} EnginePlan
 * @property {Record<string, string>} graphs ORT sessions the engine runs (session name -> dtype)
 * @property {string[]} [replaces] graphs it takes over ('lm_head', 'gen_step', 'prepare_inputs_embeds',
 *   'image_decode'): no session is made for them
 * @property {any} [data] anything else create() needs (e.g. the WGSL pack's manifest entry)
 */

/**
 * @typedef {object} EngineContext what create() gets
 * @property {import('../loader.js').BundleLoader} loader the bundle (manifest, verified files)
 * @property {Backend} backend
 * @property {Dims} dims
 * @property {Record<string, import('onnxruntime-web').InferenceSession>} sessions every session made, by name
 * @property {GPUDevice|null} device ONNX Runtime's device on WebGPU
 * @property {string} dtype the language model's dtype
 * @property {EnginePlan} plan what plan() returned
 * @property {any} pack the JSON of the pack plan.data names, its format checked (packs.js: readPack), or null
 * @property {URL} assets where the library's own files are served (ort/, cpu/: loadJanus's `assets` option)
 * @property {boolean} [memory64] the CPU engine's Memory64 build even where 32 bits suffice (loadJanus's `memory64` option)
 */

/**
 * One decoder engine: one module (or folder) in web/lib/engines/, one line in list.js.
 * @typedef {object} EngineSpec
 * @property {string} name the ?engine= value
 * @property {string} label the engine in words, for notes ("KV cache grown per step (language_model)")
 * @property {number} [auto] its rank when ?engine=auto (lowest first); absent: only when asked for
 * @property {(backend: Backend) => string|null} unsupported why it cannot run on this backend, or null
 * @property {(manifest: Manifest, dtype: string) => EnginePlan|string} plan or why this bundle cannot feed it
 * @property {(ctx: EngineContext) => Promise<Engine>} create
 */

/** @type {EngineSpec[]} */
export const ENGINES = Object.values(listed);
/**
 * The engine for `requested` ('auto' or an engine name) on `backend`, and a note when it
 * is not the one asked for or the preferred one. An engine asked for that cannot run on this backend gives way
 * to auto (with a note); one whose files the bundle lacks is an InputError.
 * @param {string} requested
 * @param {Manifest} manifest
 * @param {Backend} backend
 * @param {string} dtype the language model's dtype
 * @param {EngineSpec[]} [engines]
 * @returns {{spec: EngineSpec, plan: EnginePlan, note: string|null}}
 */
export function resolveEngine(requested, manifest, backend, dtype, engines = ENGINES) {
  const name = requested;
  const ranked = engines.filter((e) => e.auto !== undefined).sort((a, b) => /** @type {number} */ (a.auto)
    - /** @type {number} */ (b.auto));
  /** @type {string[]} */
  const reasons = [];
  if (name !== 'auto') {
    const spec = engines.find((e) => e.name === name);
    if (!spec) throw new InputError(`unknown engine ${requested}: one of auto, ${engines.map((e) => e.name).join(', ')}`);
    const why = spec.unsupported(backend);
    if (why) {
      reasons.push(why);
    } else {
      const plan = spec.plan(manifest, dtype);
      if (typeof plan === 'string') throw new InputError(plan);
      const preferred = ranked.find((e) => !e.unsupported(backend) && typeof e.plan(manifest, dtype) !== 'string');
      return { spec, plan, note: preferred && preferred !== spec ? `${spec.label}: requested` : null };
    }
  }
  for (const spec of ranked) {
    if (spec.unsupported(backend)) continue;
    const plan = spec.plan(manifest, dtype);
    if (typeof plan === 'string') {
      reasons.push(plan);
      continue;
    }
    return { spec, plan, note: reasons.length ? `${spec.label}: ${reasons.join('; ')}` : null };
  }
  throw new InputError(`no decoder engine runs this bundle on ${backend.ep}: ${reasons.join('; ')}`);
}
