// One loaded model on this thread: its sessions and engine, its conversation (the KV cache kept between chat
// turns), one request at a time. index.js wraps it in the public interface (api.js); the worker adapter serves
// the same object to createJanusWorker's clients.

import { Conversation } from './conversation.js';
import { BusyError, Cancelled, InputError, fromOrt } from './errors.js';
import { PHASES, feed, generateImages, generateText } from './generate.js';
import { countsSince, zeroCounts } from './gpu-counts.js';
import { loadModel } from './model.js';
import { chatNumbers, imageNumbers, pixelValues, toRgba } from './requests.js';
import { imageDraws, uniforms } from './sampling.js';

/** @typedef {import('./requests.js').ImageInput} ImageInput */
/** @typedef {import('./options.js').Progress} Progress */
/** @typedef {import('./gpu-counts.js').GpuCounts} GpuCounts */

/**
 * @typedef {object} ChatRequest one user turn
 * @property {string} question
 * @property {ImageInput|null} [image] null or absent: text only
 * @property {number} [maxNewTokens] default 256
 * @property {number} [temperature] default 0: the model's greedy answer; above 0, each token is drawn from
 *   softmax(logits / temperature) at a seeded uniform draw (janusweb.generate.generate_text's rule)
 * @property {number} [seed] an integer: token i uses draw i of janusweb.sampling's uniforms(seed, maxNewTokens);
 *   default random (the result says which)
 * @property {'new'|'continue'} [conversation] 'new': the first turn of a conversation whose KV cache the instance
 *   keeps (ending the one before); 'continue': the next turn of it, prefilling only the new question (and the end
 *   of the last answer); absent: a single question, its cache released after it
 * @property {{question: string, image?: ImageInput|null, answer: string}[]} [history] with 'new': earlier turns to
 *   feed first (their answers as text), so a conversation can start from a transcript
 * @property {boolean} [stopAtEos] false: run all maxNewTokens (benchmarks); default true
 * @property {AbortSignal} [signal]
 * @property {(t: TokenEvent) => void} [onToken]
 * @property {(p: Progress) => void} [onProgress] the request's phases
 */

/**
 * @typedef {object} TokenEvent
 * @property {number} token
 * @property {number} index its position in the answer (0: the first)
 * @property {string} text the whole answer so far
 * @property {number} ms time since the request began, where it runs
 * @property {number} tokensPerSecond decode speed since the first token
 * @property {GpuCounts} [gpu] with countGpuWork: the device's work since the request began
 */

/**
 * @typedef {object} ChatResult
 * @property {number[]} tokens the answer's token ids
 * @property {string} text
 * @property {'stop'|'length'} finishReason 'stop': the model ended its answer (EOS); 'length': maxNewTokens
 * @property {number} prefillTokens the positions this turn fed at its prefill
 * @property {number} reusedTokens the positions already in the conversation's cache (earlier turns)
 * @property {number|null} firstTokenSeconds from the request to the first token
 * @property {number} tokensPerSecond decode speed, from the first token on
 * @property {number} seconds
 * @property {number|null} conversation the conversation's id (null: a single question)
 * @property {number|null} seed the draws' seed (null: greedy, nothing drawn)
 * @property {GpuCounts} [gpu] with countGpuWork: the device's work during the request
 */

/**
 * @typedef {object} ImagesRequest
 * @property {string} prompt
 * @property {number} [count] 1 to 4 images (default 1)
 * @property {number} [guidance] CFG scale (default 5)
 * @property {number} [temperature] default 1; 0 is greedy
 * @property {number} [seed] an integer; the draws are janusweb.sampling's uniforms(seed, count * tokens); default
 *   random (the result says which)
 * @property {ArrayLike<number>} [draws] the uniform draws themselves instead of a seed's: count × tokens numbers in
 *   [0, 1), row-major (token t of image i uses draws[i * tokens + t]); to reproduce another implementation's run
 * @property {number} [steps] draw only the first this many tokens of each image (benchmarks): the rest stay 0
 * @property {number} [preview] every this many steps, decode the tokens drawn so far (onPreview; 0: none)
 * @property {number} [previewBudget] skip a preview while previews took more than this share of the time so far
 * @property {AbortSignal} [signal]
 * @property {(s: StepEvent) => void} [onStep]
 * @property {(p: PreviewEvent) => void} [onPreview]
 * @property {(p: Progress) => void} [onProgress] the request's phases
 */

/**
 * @typedef {object} StepEvent
 * @property {number} step image tokens drawn (1..total)
 * @property {number} total
 * @property {number} ms time since the request began (on WebGPU: when the step was submitted)
 * @property {GpuCounts} [gpu] with countGpuWork: the device's work since the request began
 */

/**
 * @typedef {object} PreviewEvent an image as far as it is drawn (the rest of its grid a neutral fill)
 * @property {number} index @property {number} step @property {number} total
 * @property {number} width @property {number} height @property {Uint8ClampedArray} rgba
 */

/**
 * @typedef {object} GeneratedImage
 * @property {number} index
 * @property {number} width
 * @property {number} height
 * @property {Uint8ClampedArray} rgba
 * @property {Float32Array} decoded [3,H,W] in [-1,1], the VQ decoder's output
 * @property {number[]} tokens the image tokens
 */

/**
 * @typedef {object} ImagesResult
 * @property {GeneratedImage[]} images
 * @property {number|null} seed the draws' seed (null: the request gave its draws)
 * @property {number} seconds
 * @property {number} decodeSeconds the VQ decoder's time
 * @property {number} previews previews decoded
 * @property {number} previewSeconds their time (part of seconds)
 * @property {GpuCounts} [gpu] with countGpuWork
 */

/** A macrotask turn (so that an abort, a message or a click is seen between steps), then whether `signal` fired. */
function aborted(/** @type {AbortSignal|undefined} */ signal) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve(!!signal?.aborted);
    channel.port2.postMessage(null);
  });
}

/** The error a request aborted through `signal` rejects with. @param {AbortSignal|undefined} signal */
function abortReason(signal) {
  return signal?.reason ?? new DOMException('The operation was aborted.', 'AbortError');
}

export class LocalJanus {
  /**
   * @param {string} base the bundle's URL
   * @param {import('./options.js').LoadOptions & {backend: 'auto'|'webgpu'|'wasm', engine: string,
   *   dtype: string|null, assets: URL}} options checked (options.js)
   */
  static async load(base, options) {
    const { signal } = options;
    signal?.throwIfAborted();
    const onProgress = (/** @type {Progress} */ p) => {
      signal?.throwIfAborted(); // a download in progress stops here
      options.onProgress?.(p);
    };
    return new LocalJanus(await loadModel(base, options, options.assets, onProgress).catch((e) => {
      throw fromOrt(e);
    }));
  }

  /** @param {import('./model.js').Model} model */
  constructor(model) {
    /** @type {import('./model.js').Model|null} */
    this.model = model;
    /** @type {Conversation|null} */
    this.conversation = null;
    this.conversations = 0; // ids handed out
    this.busy = false;
  }

  /** The facts (info.js), the engine's memory as it is now. */
  get info() {
    return this.loaded().info();
  }

  loaded() {
    if (!this.model) throw new InputError('this instance was released');
    return this.model;
  }

  /**
   * One request at a time; ORT's errors as ours.
   * @template T @param {() => Promise<T>} work @returns {Promise<T>}
   */
  async task(work) {
    if (this.busy) throw new BusyError();
    this.busy = true;
    try {
      return await work();
    } catch (e) {
      throw fromOrt(e); // while running: the WASM heap filled up with activations
    } finally {
      this.busy = false;
    }
  }

  endConversation() {
    this.conversation?.release();
    this.conversation = null;
  }

  /** The device's work since `start`, when counted. @param {GpuCounts} start */
  gpuSince(start) {
    const live = this.model?.gpuCounts;
    return live ? { gpu: countsSince(live, start) } : {};
  }

  /** @param {ChatRequest} req @returns {Promise<ChatResult>} */
  chat(req) {
    return this.task(async () => {
      const m = this.loaded();
      const signal = req.signal;
      signal?.throwIfAborted();
      const start = performance.now(); // the request's clock: its phases and tokens, the image's preparation included
      const { maxNewTokens, temperature, seed } = chatNumbers(req);
      const conv = await this.conversationFor(m, req);
      const onPhase = phaseEvents(req.onProgress, start);
      if (req.image) onPhase(PHASES.encode);
      const pixels = req.image ? await pixelValues(req.image, m.pre) : null;
      const turn = m.tokenizer.userTurn(req.question, m.dims.num_image_tokens, !!pixels, !conv?.turns);
      const prompt = { ...(conv ? conv.prompt(turn) : turn), pixels };
      const reused = conv?.length ?? 0;
      const counts0 = { ...(m.gpuCounts ?? zeroCounts()) };
      let first = 0;
      /** @type {number[]} */
      const tokens = [];
      const speed = () => (tokens.length > 1 ? (tokens.length - 1) / ((performance.now() - first) / 1000) : 0);
      const eos = m.tokenizer.ids.eos;
      try {
        await generateText(m.graphs, m.dims, prompt, {
          maxNewTokens, eosId: req.stopAtEos === false ? -1 : eos, cancelled: () => aborted(signal), onPhase,
          temperature, draws: temperature > 0 ? uniforms(seed, maxNewTokens) : undefined,
          cache: conv?.reserve(prompt.inputIds.length, maxNewTokens),
          onToken: (token) => {
            if (!tokens.length) first = performance.now();
            tokens.push(token);
            req.onToken?.({ token, index: tokens.length - 1, text: m.tokenizer.decode(tokens),
              ms: performance.now() - start, tokensPerSecond: speed(), ...this.gpuSince(counts0) });
          },
        });
      } catch (e) {
        if (e instanceof Cancelled) {
          conv?.answered(prompt.inputIds.length, tokens); // the conversation goes on from the partial answer
          throw abortReason(signal);
        }
        if (conv) this.endConversation(); // its cache holds a half-fed turn
        throw e;
      }
      conv?.answered(prompt.inputIds.length, tokens);
      return { tokens, text: m.tokenizer.decode(tokens), finishReason: tokens.at(-1) === eos ? 'stop' : 'length',
        prefillTokens: prompt.inputIds.length, reusedTokens: reused,
        firstTokenSeconds: tokens.length ? (first - start) / 1000 : null, tokensPerSecond: speed(),
        seconds: (performance.now() - start) / 1000, conversation: conv ? conv.id : null,
        seed: temperature > 0 ? seed : null, ...this.gpuSince(counts0) };
    });
  }

  /**
   * The conversation a chat request continues or starts (its history fed); null for a single question.
   * @param {import('./model.js').Model} m @param {ChatRequest} req
   */
  async conversationFor(m, req) {
    if (req.history?.length && req.conversation !== 'new') throw new InputError("history needs conversation: 'new'");
    if (req.conversation === 'continue') {
      if (!this.conversation) throw new InputError('no conversation to continue: start a new chat');
      return this.conversation;
    }
    if (req.conversation === undefined) return null;
    if (req.conversation !== 'new') throw new InputError("conversation must be 'new' or 'continue'");
    this.endConversation();
    const conv = new Conversation(m.graphs, m.tokenizer.ids.eos, ++this.conversations);
    this.conversation = conv;
    try {
      for (const h of req.history ?? []) {
        const pixels = h.image ? await pixelValues(h.image, m.pre) : null;
        const turn = m.tokenizer.userTurn(h.question, m.dims.num_image_tokens, !!pixels, !conv.turns);
        const prompt = { ...conv.prompt(turn), pixels };
        await feed(m.graphs, m.dims, prompt, conv.reserve(prompt.inputIds.length, 0));
        conv.answered(prompt.inputIds.length, [], m.tokenizer.answerIds(h.answer));
      }
    } catch (e) {
      this.endConversation();
      throw e;
    }
    return conv;
  }

  /** @param {ImagesRequest} req @returns {Promise<ImagesResult>} */
  generateImages(req) {
    return this.task(async () => {
      const m = this.loaded();
      const signal = req.signal;
      signal?.throwIfAborted();
      const T = m.dims.num_image_tokens, size = m.dims.decoded_image_size;
      const { n, seed, draws, preview, guidance, temperature } = imageNumbers(req, T);
      const promptIds = m.tokenizer.generationPrompt(req.prompt);
      const counts0 = { ...(m.gpuCounts ?? zeroCounts()) };
      const start = performance.now();
      const pixels = 3 * size * size;
      const previews = { count: 0, ms: 0 };
      const show = (/** @type {Float32Array} */ images, /** @type {number} */ step, /** @type {number} */ ms) => {
        previews.count++;
        previews.ms += ms;
        for (let i = 0; i < n; i++) {
          const rgba = toRgba(images.subarray(i * pixels, (i + 1) * pixels), size);
          req.onPreview?.({ index: i, step, total: T, width: size, height: size, rgba });
        }
      };
      const onPhase = phaseEvents(req.onProgress, start);
      let result;
      try {
        result = await generateImages(m.graphs, m.dims, {
          promptIds, uncondIds: m.tokenizer.unconditional(promptIds), n,
          draws: draws ?? imageDraws(/** @type {number} */ (seed), n, T),
          guidance, temperature, steps: req.steps,
        }, {
          onStep: (done, total) => {
            req.onStep?.({ step: done, total, ms: performance.now() - start, ...this.gpuSince(counts0) });
            req.onProgress?.({ what: 'step', name: 'image', done, total });
          },
          cancelled: () => aborted(signal), onPhase,
          preview: { every: preview, budget: req.previewBudget, show },
        });
      } catch (e) {
        throw e instanceof Cancelled ? abortReason(signal) : e;
      }
      const images = Array.from({ length: n }, (_, i) => {
        const decoded = result.images.slice(i * pixels, (i + 1) * pixels);
        return { index: i, width: size, height: size, rgba: toRgba(decoded, size), decoded,
          tokens: Array.from(result.tokens.subarray(i * T, (i + 1) * T), Number) };
      });
      return { images, seed, seconds: (performance.now() - start) / 1000, decodeSeconds: result.decodeMs / 1000,
        previews: previews.count, previewSeconds: previews.ms / 1000, ...this.gpuSince(counts0) };
    });
  }

  /** Free the sessions, the engine and the conversation; the instance cannot be used after. */
  async release() {
    const m = this.model;
    if (!m) return;
    if (this.busy) throw new BusyError();
    this.endConversation();
    this.model = null;
    await m.release();
  }
}

/**
 * A phase callback that reports each phase once (the image is encoded before the prompt exists, so chat names
 * that phase itself and generateText names it again).
 * @param {((p: Progress) => void)|undefined} onProgress @param {number} start the request's performance.now()
 */
function phaseEvents(onProgress, start) {
  let last = '';
  return (/** @type {string} */ name) => {
    if (name !== last) onProgress?.({ what: 'phase', name, ms: performance.now() - start });
    last = name;
  };
}
