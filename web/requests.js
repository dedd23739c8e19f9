// The generate requests: chat about an image (or none) and text-to-image, replying as they go (protocol.js).

import { Conversation } from './conversation.js';
import { Cancelled, InputError } from './errors.js';
import { PHASES, generateImages, generateText } from './generate.js';
import { gpuReads } from './gpu-reads.js';
import { preprocess } from './preprocess.js';
import { imageDraws } from './sampling.js';

/** @typedef {import('./model.js').Model} Model */
/** @typedef {(msg: import('./protocol.js').Reply, transfer?: Transferable[]) => void} Reply */

/** Decode an uploaded image as PIL would (no colour management) and preprocess it. @param {Blob} blob @param {any} pre */
async function pixelValues(blob, pre) {
  const bitmap = await createImageBitmap(blob, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext('2d'));
  ctx.drawImage(bitmap, 0, 0);
  const { data } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  return preprocess(data, bitmap.width, bitmap.height, pre);
}

/** @type {Conversation|null} */
let conversation = null;

/** Release the conversation's cache (a new chat, a failed turn, or a new model). */
export function endConversation() {
  conversation?.release();
  conversation = null;
}

/**
 * The conversation a chat request continues or starts; null for a single question (ChatRequest.conversation).
 * @param {Model} m @param {'new'|'continue'|undefined} mode
 */
function conversationFor(m, mode) {
  if (mode === 'continue') {
    if (!conversation || conversation.g !== m.graphs) throw new InputError('no conversation to continue: start a new chat');
    return conversation;
  }
  if (mode !== 'new') return null;
  endConversation();
  conversation = new Conversation(m.graphs, m.tokenizer.ids.eos);
  return conversation;
}

/**
 * @param {Model} m
 * @param {import('./protocol.js').ChatRequest} req
 * @param {Reply} reply
 * @param {() => Promise<boolean>} cancelled
 */
export async function chat(m, req, reply, cancelled) {
  const conv = conversationFor(m, req.conversation);
  const onPhase = phaseReply(req.id, reply);
  if (req.image) onPhase(PHASES.encode);
  const pixels = req.image ? await pixelValues(req.image, m.pre) : null;
  const turn = m.tokenizer.userTurn(req.question, m.dims.num_image_tokens, !!pixels, !conv?.turns);
  const prompt = { ...(conv ? conv.prompt(turn) : turn), pixels };
  const reused = conv?.length ?? 0;
  const reads = gpuReads();
  const start = performance.now();
  let first = 0;
  /** @type {number[]} */
  const tokens = [];
  const speed = () => (tokens.length > 1 ? (tokens.length - 1) / ((performance.now() - first) / 1000) : 0);
  let wasCancelled = false;
  try {
    await generateText(m.graphs, m.dims, prompt, {
      maxNewTokens: req.maxNewTokens, eosId: req.stopAtEos === false ? -1 : m.tokenizer.ids.eos, cancelled, onPhase,
      cache: conv?.reserve(prompt.inputIds.length, req.maxNewTokens),
      onToken: (token) => {
        if (!tokens.length) first = performance.now();
        tokens.push(token);
        reply({ type: 'token', id: req.id, token, text: m.tokenizer.decode(tokens), tokensPerSecond: speed() });
      },
    });
  } catch (e) {
    if (!(e instanceof Cancelled)) {
      if (conv) endConversation(); // its cache holds a half-fed turn
      throw e;
    }
    wasCancelled = true;
  }
  conv?.answered(prompt.inputIds.length, tokens);
  reply({ type: 'done', id: req.id, cancelled: wasCancelled, tokens, text: m.tokenizer.decode(tokens),
    prefillTokens: prompt.inputIds.length, reusedTokens: reused,
    tokensPerSecond: speed(), seconds: (performance.now() - start) / 1000, gpuReads: gpuReads() - reads,
    firstTokenSeconds: tokens.length ? (first - start) / 1000 : null });
}

/**
 * A phase callback that replies a phase message once per phase (the image is encoded before the prompt exists,
 * so chat names that phase itself and generateText names it again).
 * @param {number} id @param {Reply} reply
 */
function phaseReply(id, reply) {
  let last = '';
  return (/** @type {string} */ name) => {
    if (name !== last) reply({ type: 'progress', id, what: 'phase', name, done: 0, total: 0 });
    last = name;
  };
}

/** decoded [3,H,W] in [-1,1] -> RGBA bytes, as janusweb.image.to_uint8. @param {Float32Array} x @param {number} size */
function toRgba(x, size) {
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

/**
 * @param {Model} m
 * @param {import('./protocol.js').ImageRequest} req
 * @param {Reply} reply
 * @param {() => Promise<boolean>} cancelled
 */
export async function image(m, req, reply, cancelled) {
  const n = req.count, T = m.dims.num_image_tokens, size = m.dims.decoded_image_size;
  if (!(Number.isInteger(n) && n >= 1 && n <= 4)) throw new InputError('count must be 1 to 4');
  if (!Number.isInteger(req.seed)) throw new InputError('the seed must be an integer');
  if (!(Number.isInteger(req.preview ?? 0) && (req.preview ?? 0) >= 0)) {
    throw new InputError('preview must be a whole number of steps (0: no previews)');
  }
  if (!(req.steps === undefined || (Number.isInteger(req.steps) && req.steps >= 1 && req.steps <= T))) {
    throw new InputError(`steps must be 1 to ${T}`);
  }
  const promptIds = m.tokenizer.generationPrompt(req.prompt);
  const reads = gpuReads();
  const start = performance.now();
  const pixels = 3 * size * size;
  const previews = { count: 0, ms: 0 };
  const show = (/** @type {Float32Array} */ images, /** @type {number} */ step, /** @type {number} */ ms) => {
    previews.count++;
    previews.ms += ms;
    for (let i = 0; i < n; i++) {
      const rgba = toRgba(images.subarray(i * pixels, (i + 1) * pixels), size);
      reply({ type: 'preview', id: req.id, index: i, step, total: T, width: size, height: size, rgba }, [rgba.buffer]);
    }
  };
  let result;
  try {
    result = await generateImages(m.graphs, m.dims, {
      promptIds, uncondIds: m.tokenizer.unconditional(promptIds), draws: imageDraws(req.seed, n, T), n,
      guidance: req.guidance, temperature: req.temperature, steps: req.steps,
    }, {
      onStep: (done, total) => reply({ type: 'progress', id: req.id, what: 'step', name: 'image', done, total }),
      cancelled, onPhase: phaseReply(req.id, reply), preview: { every: req.preview ?? 0, budget: req.previewBudget, show },
    });
  } catch (e) {
    if (!(e instanceof Cancelled)) throw e;
    reply({ type: 'done', id: req.id, cancelled: true, seconds: (performance.now() - start) / 1000 });
    return;
  }
  const seconds = (performance.now() - start) / 1000;
  const readsDuring = gpuReads() - reads;
  for (let i = 0; i < n; i++) {
    const decoded = result.images.slice(i * pixels, (i + 1) * pixels);
    const rgba = toRgba(decoded, size);
    const tokens = Array.from(result.tokens.subarray(i * T, (i + 1) * T), Number);
    reply({ type: 'image', id: req.id, index: i, width: size, height: size, rgba, decoded, tokens },
      [rgba.buffer, decoded.buffer]);
  }
  reply({ type: 'done', id: req.id, cancelled: false, seconds, gpuReads: readsDuring, previews: previews.count,
    previewSeconds: previews.ms / 1000 });
}
