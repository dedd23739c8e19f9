// The public interface of an instance, the same over a model on this thread (janus.js) and one in a worker
// (worker-client.js): info, chat, generateImages, release, and on top the convention web apps know,
// chat.completions.create (OpenAI-style messages and streaming chunks; the KV cache reused when the new messages
// extend the last ones) and images.generate.

import { InputError } from './errors.js';

/** @typedef {import('./janus.js').ChatRequest} ChatRequest */
/** @typedef {import('./janus.js').ChatResult} ChatResult */
/** @typedef {import('./janus.js').ImagesRequest} ImagesRequest */
/** @typedef {import('./janus.js').ImagesResult} ImagesResult */
/** @typedef {import('./requests.js').ImageInput} ImageInput */

/**
 * What api.js needs of an instance, local or in a worker.
 * @typedef {object} JanusCore
 * @property {() => import('./info.js').JanusInfo} info
 * @property {(req: ChatRequest) => Promise<ChatResult>} chat
 * @property {(req: ImagesRequest) => Promise<ImagesResult>} generateImages
 * @property {() => Promise<void>} release
 */

/**
 * A content part of a user message: text, an image by URL (a data:, blob: or http(s): URL), or an image object.
 * @typedef {{type: 'text', text: string}
 *   | {type: 'image_url', image_url: {url: string}|string}
 *   | {type: 'image', image: ImageInput}} ContentPart
 */

/**
 * @typedef {{role: 'user', content: string|ContentPart[]} | {role: 'assistant', content: string}} ChatMessage
 *   (system messages are refused: Janus-Pro's chat format here has none)
 */

/**
 * @typedef {object} CompletionRequest
 * @property {ChatMessage[]} messages user and assistant turns, alternating, the last a user's
 * @property {boolean} [stream] true: an async iterable of chunks
 * @property {number} [max_tokens] default 256 (max_completion_tokens is the same)
 * @property {number} [max_completion_tokens]
 * @property {number} [temperature] 0 or absent: the model's greedy answer; above 0: each token drawn from
 *   softmax(logits / temperature) (top_p and other samplers are not offered)
 * @property {number} [seed] an integer: the same seed, messages and temperature give the same answer; default
 *   random (the completion's `seed` says which)
 * @property {{include_usage?: boolean}} [stream_options]
 * @property {AbortSignal} [signal]
 */

/**
 * @typedef {object} Usage
 * @property {number} prompt_tokens the positions this request fed (earlier turns already in the cache excluded)
 * @property {number} completion_tokens
 * @property {number} total_tokens
 * @property {number} cached_tokens the positions reused from the cache (prefix reuse)
 */

/**
 * @typedef {object} Completion
 * @property {string} id @property {'chat.completion'} object @property {number} created @property {string} model
 * @property {{index: number, message: {role: 'assistant', content: string}, finish_reason: 'stop'|'length'}[]} choices
 * @property {Usage} usage
 * @property {number|null} seed the draws' seed (null: greedy)
 */

/**
 * @typedef {object} CompletionChunk
 * @property {string} id @property {'chat.completion.chunk'} object @property {number} created @property {string} model
 * @property {{index: number, delta: {role?: 'assistant', content?: string}, finish_reason: 'stop'|'length'|null}[]} choices
 * @property {Usage} [usage] the last chunk, with stream_options.include_usage
 * @property {number|null} [seed] the last chunk: the draws' seed (null: greedy)
 */

/**
 * @typedef {object} ImageGenerateRequest
 * @property {string} prompt
 * @property {number} [n] 1 to 4 (default 1)
 * @property {number} [guidance_scale] default 5
 * @property {number} [temperature] default 1
 * @property {number} [seed] default random; the images of one request share it (image i is row i of the draws)
 * @property {'blob'|'b64_json'} [response_format] default 'blob'; every item has `image` (ImageData) too
 * @property {AbortSignal} [signal]
 * @property {(s: import('./janus.js').StepEvent) => void} [onStep]
 */

/**
 * @typedef {object} ImageGenerateResponse
 * @property {number} created
 * @property {number} seed
 * @property {{image: ImageData, blob?: Blob, b64_json?: string, seed: number, index: number, tokens: number[]}[]} data
 *   each image with its image tokens
 */

/**
 * The public instance (loadJanus, createJanusWorker's loadJanus).
 * @typedef {object} Janus
 * @property {import('./info.js').JanusInfo} info structured facts: backend, adapter, engine, dtypes, files, memory...
 * @property {((req: ChatRequest) => Promise<ChatResult>) & {completions: {create: CreateCompletion}}} chat
 *   one user turn, tokens streamed through onToken; chat.completions.create: the OpenAI-style call
 * @property {(req: ImagesRequest) => Promise<ImagesResult>} generateImages text to image, steps and previews through
 *   callbacks
 * @property {{generate: (req: ImageGenerateRequest) => Promise<ImageGenerateResponse>}} images
 * @property {() => Promise<void>} release free the model (sessions, engine, caches)
 */

/**
 * @typedef {{(req: CompletionRequest & {stream: true}): Promise<AsyncIterable<CompletionChunk>>,
 *   (req: CompletionRequest & {stream?: false}): Promise<Completion>,
 *   (req: CompletionRequest): Promise<Completion|AsyncIterable<CompletionChunk>>}} CreateCompletion
 */

/**
 * One user turn of a request's messages.
 * @typedef {{question: string, image: ImageInput|string|null, answer?: string}} Turn image: an object or a URL
 */

/** @param {ChatMessage[]} messages @returns {Turn[]} */
function turnsOf(messages) {
  if (!Array.isArray(messages) || !messages.length) throw new InputError('messages must be a non-empty array');
  /** @type {Turn[]} */
  const turns = [];
  for (const [i, m] of messages.entries()) {
    const role = /** @type {string} */ (m?.role);
    if (role === 'system') throw new InputError("system messages are not part of Janus-Pro's chat format here");
    if (role !== (i % 2 ? 'assistant' : 'user')) {
      throw new InputError(`messages[${i}] should be a ${i % 2 ? 'assistant' : 'user'} message: user and assistant `
        + 'turns alternate, from a user turn');
    }
    if (role === 'assistant') {
      if (typeof m.content !== 'string') throw new InputError(`messages[${i}].content must be a string`);
      turns[turns.length - 1].answer = m.content;
      continue;
    }
    turns.push(userTurn(m.content, i));
  }
  if (turns.at(-1)?.answer !== undefined) throw new InputError('the last message must be a user message');
  return turns;
}

/** @param {string|ContentPart[]} content @param {number} i @returns {Turn} */
function userTurn(content, i) {
  if (typeof content === 'string') return { question: content, image: null };
  if (!Array.isArray(content)) throw new InputError(`messages[${i}].content must be a string or an array of parts`);
  const text = [], images = [];
  for (const part of content) {
    if (part?.type === 'text') text.push(part.text);
    else if (part?.type === 'image_url') images.push(typeof part.image_url === 'string' ? part.image_url : part.image_url?.url);
    else if (part?.type === 'image') images.push(part.image);
    else throw new InputError(`messages[${i}]: a content part is text, image_url or image`);
  }
  if (images.length > 1) throw new InputError(`messages[${i}] has ${images.length} images: one per user turn`);
  if (images.length && !images[0]) throw new InputError(`messages[${i}]: an image part without its image`);
  return { question: text.join('\n'), image: images[0] ?? null };
}

/** An image part as an image object (a URL fetched). @param {ImageInput|string|null} image */
async function imageOf(image) {
  if (typeof image !== 'string') return image;
  const response = await fetch(image);
  if (!response.ok) throw new InputError(`${image.slice(0, 80)}: HTTP ${response.status}`);
  return response.blob();
}

/** Whether `turns` is `last` plus one new user turn (the same questions, images and answers). @param {Turn[]} last @param {Turn[]} turns */
function extendsTurns(last, turns) {
  return turns.length === last.length + 1 && last.every((t, i) => t.question === turns[i].question
    && t.image === turns[i].image && t.answer === turns[i].answer);
}

/** @param {ImageData} image */
async function pngBlob(image) {
  const canvas = new OffscreenCanvas(image.width, image.height);
  /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext('2d')).putImageData(image, 0, 0);
  return canvas.convertToBlob({ type: 'image/png' });
}

/** @param {Blob} blob */
async function base64(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/**
 * The public instance over `core`.
 * @param {JanusCore} core
 * @returns {Janus}
 */
export function janusApi(core) {
  /** @type {{turns: Turn[]}|null} the conversation chat.completions left in the instance's cache */
  let record = null;
  let made = 0;
  const model = () => core.info().model;

  /** One completion: the turn through core.chat, reusing the cache when the messages extend the last ones. @param {CompletionRequest} body @param {(t: import('./janus.js').TokenEvent) => void} [onToken] */
  async function complete(body, onToken) {
    const turns = turnsOf(body.messages);
    const last = /** @type {Turn} */ (turns.at(-1));
    const reuse = record !== null && extendsTurns(record.turns, turns);
    const history = reuse ? [] : await Promise.all(turns.slice(0, -1).map(async (t) =>
      ({ question: t.question, image: await imageOf(t.image), answer: /** @type {string} */ (t.answer) })));
    record = null;
    const result = await core.chat({ question: last.question, image: await imageOf(last.image),
      maxNewTokens: body.max_completion_tokens ?? body.max_tokens ?? 256, temperature: body.temperature ?? 0,
      seed: body.seed, signal: body.signal, onToken,
      conversation: reuse ? 'continue' : 'new', ...(history.length ? { history } : {}) });
    record = { turns: [...turns.slice(0, -1), { ...last, answer: result.text }] };
    const usage = { prompt_tokens: result.prefillTokens, completion_tokens: result.tokens.length,
      total_tokens: result.prefillTokens + result.tokens.length, cached_tokens: result.reusedTokens };
    return { result, usage };
  }

  /** @param {CompletionRequest} body */
  async function create(body) {
    const id = `chatcmpl-${++made}`, created = Math.floor(Date.now() / 1000);
    if (!body.stream) {
      const { result, usage } = await complete(body);
      return { id, object: 'chat.completion', created, model: model(), usage, seed: result.seed,
        choices: [{ index: 0, message: { role: 'assistant', content: result.text }, finish_reason: result.finishReason }] };
    }
    return streamChunks(body, { id, object: 'chat.completion.chunk', created, model: model() });
  }

  /**
   * The chunks of a streamed completion, as the tokens come.
   * @param {CompletionRequest} body @param {{id: string, object: 'chat.completion.chunk', created: number, model: string}} head
   * @returns {AsyncIterable<CompletionChunk>}
   */
  function streamChunks(body, head) {
    /** @type {CompletionChunk[]} */
    const queue = [];
    /** @type {() => void} */
    let wake = () => {};
    let sent = '';
    /** @param {string} text */
    const push = (text) => { // only whole characters: a token may end inside a multi-byte character
      if (!text.startsWith(sent) || text.endsWith('\uFFFD') || text === sent) return;
      queue.push({ ...head, choices: [{ index: 0, delta: { content: text.slice(sent.length) }, finish_reason: null }] });
      sent = text;
      wake();
    };
    queue.push({ ...head, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    const done = complete(body, (t) => push(t.text)).then(({ result, usage }) => {
      push(result.text);
      queue.push({ ...head, choices: [{ index: 0, delta: {}, finish_reason: result.finishReason }], seed: result.seed,
        ...(body.stream_options?.include_usage ? { usage } : {}) });
      return true;
    });
    return {
      async* [Symbol.asyncIterator]() {
        let finished = false;
        while (!finished || queue.length) {
          if (!queue.length) {
            const next = new Promise((resolve) => { wake = () => resolve(false); });
            finished = await Promise.race([done, next]);
          }
          while (queue.length) yield /** @type {CompletionChunk} */ (queue.shift());
        }
      },
    };
  }

  /** @param {ImageGenerateRequest} body @returns {Promise<ImageGenerateResponse>} */
  async function generate(body) {
    const r = await core.generateImages({ prompt: body.prompt, count: body.n ?? 1, guidance: body.guidance_scale,
      temperature: body.temperature, seed: body.seed, signal: body.signal, onStep: body.onStep });
    const seed = /** @type {number} */ (r.seed); // a seed's draws: this request gives none of its own
    const data = await Promise.all(r.images.map(async (im) => {
      const image = new ImageData(/** @type {Uint8ClampedArray<ArrayBuffer>} */ (im.rgba), im.width, im.height);
      const blob = await pngBlob(image);
      return { image, seed, index: im.index, tokens: im.tokens,
        ...(body.response_format === 'b64_json' ? { b64_json: await base64(blob) } : { blob }) };
    }));
    return { created: Math.floor(Date.now() / 1000), seed, data };
  }

  const chat = Object.assign((/** @type {ChatRequest} */ req) => {
    record = null; // a turn outside chat.completions: the next completion starts its conversation anew
    return core.chat(req);
  }, { completions: { create: /** @type {CreateCompletion} */ (/** @type {unknown} */ (create)) } });
  return {
    get info() {
      return core.info();
    },
    chat,
    generateImages: (req) => core.generateImages(req),
    images: { generate },
    release: () => core.release(),
  };
}
