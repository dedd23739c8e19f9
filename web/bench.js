// The benchmark page: runs `janusweb bench`'s workload through the same worker and message protocol as the
// demo page, timing what the worker reports. `window.runBench(config)` resolves to the raw runs; the Python
// side (bench/browser.py) aggregates them. Nothing here re-implements generation.

/** @typedef {import('./protocol.js').Reply} Reply */

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
let nextId = 1;
/** @type {Map<number, (msg: Reply) => void>} */
const handlers = new Map();
worker.onmessage = (/** @type {MessageEvent<Reply>} */ e) => handlers.get(e.data.id)?.(e.data);

/**
 * Send one request; resolve with every reply (and its arrival time) once it is done, reject on error.
 * @param {object} msg
 * @returns {Promise<{t0: number, replies: {t: number, msg: Reply}[]}>}
 */
function request(msg) {
  const id = nextId++;
  const replies = [];
  return new Promise((resolve, reject) => {
    handlers.set(id, (reply) => {
      replies.push({ t: performance.now(), msg: reply });
      if (reply.type === 'error') reject(new Error(`${reply.kind}: ${reply.message}`));
      if (reply.type === 'done') resolve({ t0, replies });
      if (reply.type === 'done' || reply.type === 'error') handlers.delete(id);
    });
    const t0 = performance.now();
    worker.postMessage({ ...msg, id });
  });
}

/** @param {Float32Array} x */
function base64(x) {
  const bytes = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** @param {{question: string, image: Blob|null, tokens: number}} c null image: text-only chat */
async function understanding(c) {
  const { t0, replies } = await request({ type: 'generate', task: 'chat', question: c.question, image: c.image,
    maxNewTokens: c.tokens, stopAtEos: false });
  const tokens = replies.filter((r) => r.msg.type === 'token');
  const done = replies.at(-1).msg;
  return { token_times_ms: tokens.map((r) => r.t - t0), tokens: done.tokens, gpu_reads: done.gpuReads ?? null };
}

/**
 * @param {{prompt: string, count: number, guidance: number, temperature: number, seed: number, steps?: number}} c
 *   steps: only the first this many image tokens (protocol.js's ImageRequest.steps)
 */
async function generation(c) {
  const { t0, replies } = await request({ type: 'generate', task: 'image', prompt: c.prompt, count: c.count,
    guidance: c.guidance, temperature: c.temperature, seed: c.seed, steps: c.steps });
  const steps = replies.filter((r) => r.msg.type === 'progress' && r.msg.what === 'step').map((r) => r.t - t0);
  const images = replies.filter((r) => r.msg.type === 'image');
  const done = replies.at(-1);
  return { step_times_ms: steps, first_image_ms: images[0]?.t - t0, total_ms: done.t - t0,
    tokens: images.map((r) => r.msg.tokens), decoded: images.map((r) => base64(r.msg.decoded)),
    gpu_reads: done.msg.gpuReads ?? null };
}

/**
 * @param {{backend: string, dtype: string|null, question: string, imagePng: string, textTokens: number,
 *   prompt: string, counts: number[], guidance: number, temperature: number, seed: number, repeats: number,
 *   kvCache: string, threads?: number, steps?: number, warmup?: boolean}} c kvCache: the ?engine= value
 *   (protocol.js's LoadRequest.engine; 'grow' for ort-grow); threads: at most this many WASM threads; imagePng '':
 *   text-only chat; steps: image tokens drawn per image (default all); warmup false: no warm-up calls (one long
 *   run: janusweb.bench.cpu_page; first-call times then include shader compilation)
 */
async function runBench(c) {
  const image = c.imagePng ? await (await fetch(`data:image/png;base64,${c.imagePng}`)).blob() : null;
  const load = await request({ type: 'load', base: new URL('model/', location.href).href, dtype: c.dtype,
    backend: c.backend, engine: c.kvCache, threads: c.threads });
  const sessions = load.replies.filter((r) => r.msg.type === 'progress' && r.msg.what === 'session')
    .map((r) => ({ name: r.msg.name, ms: r.t - load.t0 }));
  const out = { backend: load.replies.at(-1).msg.backend, load_ms: load.replies.at(-1).t - load.t0, sessions,
    understanding: [], generation: {}, userAgent: navigator.userAgent };
  const u = { question: c.question, image, tokens: c.textTokens };
  if (c.warmup !== false) {
    await understanding({ ...u, tokens: 2 }); // warm-up: shader compilation
    await generation({ prompt: c.prompt, count: c.counts[0], guidance: c.guidance, temperature: c.temperature,
      seed: c.seed, steps: c.steps });
  }
  for (let r = 0; r < c.repeats; r++) out.understanding.push(await understanding(u));
  for (const count of c.counts) {
    out.generation[count] = [];
    for (let r = 0; r < c.repeats; r++) {
      out.generation[count].push(await generation({ prompt: c.prompt, count, guidance: c.guidance,
        temperature: c.temperature, seed: c.seed, steps: c.steps }));
    }
  }
  out.memory = performance.memory ? { js_heap_used_bytes: performance.memory.usedJSHeapSize } : null;
  return out;
}

Object.assign(window, { runBench });
document.getElementById('status').textContent = 'ready';
