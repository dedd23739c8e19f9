// The page: starts the inference worker, shows what it runs on, and wires the chat and text-to-image forms.
// `window.janusweb` mirrors the page's state (tests and curious users read it).

/** @typedef {import('./protocol.js').Reply} Reply */
/** @typedef {import('./protocol.js').BackendInfo} BackendInfo */

const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
const params = new URLSearchParams(location.search);
const base = new URL(params.get('model') ?? 'model/', location.href).href;

const state = {
  ready: false,
  /** @type {BackendInfo|null} */ backend: null,
  /** @type {{kind: string, message: string}|null} */ error: null,
  /** @type {{tokens: number[], text: string, done: boolean, tokensPerSecond: number, gpuReads?: number}} */
  chat: { tokens: [], text: '', done: false, tokensPerSecond: 0 },
  /** @type {{tokens: number[][], decoded: Float32Array[], done: boolean, seconds: number, gpuReads?: number}} */
  images: { tokens: [], decoded: [], done: false, seconds: 0 },
};
Object.assign(window, { janusweb: state });

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
let nextId = 1;
/** @type {Map<number, (msg: Reply) => void>} */
const handlers = new Map();
worker.onmessage = (/** @type {MessageEvent<Reply>} */ e) => handlers.get(e.data.id)?.(e.data);
worker.onerror = (e) => fail({ kind: 'other', message: `the worker failed to start: ${e.message}` });

/**
 * Send a request; `onReply` sees every reply to it until done or error.
 * @param {Omit<import('./protocol.js').Request, 'id'>} msg
 * @param {(msg: Reply) => void} onReply
 */
function send(msg, onReply) {
  const id = nextId++;
  handlers.set(id, (reply) => {
    if (reply.type === 'done' || reply.type === 'error') handlers.delete(id);
    onReply(reply);
  });
  worker.postMessage({ ...msg, id });
  return id;
}

/** @param {string} text @param {boolean} [error] */
function status(text, error = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
}

/** @param {{kind: string, message: string}} err */
function fail(err) {
  state.error = err;
  status(err.kind === 'checksum' ? `Checksum error: ${err.message}` : `Error: ${err.message}`, true);
}

// ---- loading ----------------------------------------------------------------------------------------------

/** @param {number} n bytes */
function size(n) {
  const [unit, scale] = n >= 2 ** 30 ? ['GiB', 2 ** 30] : n >= 2 ** 20 ? ['MiB', 2 ** 20] : ['KiB', 2 ** 10];
  return `${(n / scale).toFixed(1)} ${unit}`;
}

/** @type {Map<string, HTMLElement>} */
const bars = new Map();
/** @param {import('./protocol.js').ProgressMessage} p */
function showDownload(p) {
  let row = bars.get(p.name);
  if (!row) {
    row = document.createElement('div');
    row.innerHTML = '<progress max="1" value="0"></progress> <span></span>';
    $('downloads').append(row);
    bars.set(p.name, row);
  }
  /** @type {HTMLProgressElement} */ (row.querySelector('progress')).value = p.done / p.total;
  /** @type {HTMLElement} */ (row.querySelector('span')).textContent =
    `${p.name} ${size(p.done)} / ${size(p.total)}${p.cached ? ' (cache)' : ''}`;
}

/** @param {BackendInfo} b */
function showBackend(b) {
  $('ep').textContent = b.ep === 'webgpu' ? 'WebGPU' : `WASM (${b.threads} thread${b.threads > 1 ? 's' : ''})`;
  $('adapter').textContent = b.adapter;
  $('dtype').textContent = b.dtype;
  $('kv-cache').textContent = b.kvCache;
  $('why').textContent = b.why;
  const notes = [...b.notes];
  const cpu = Object.entries(b.cpuNodes).map(([graph, why]) => `${graph} (${why})`);
  if (b.ep === 'webgpu' && cpu.length) notes.push(`some nodes on the CPU EP: ${cpu.join(', ')}`);
  $('notes').replaceChildren(...notes.map((n) => Object.assign(document.createElement('li'), { textContent: n })));
}

function load() {
  $('backend-choice').value = params.get('backend') ?? 'auto';
  status('Loading the model…');
  send({ type: 'load', base, dtype: params.get('dtype') || null,
    backend: /** @type {any} */ (params.get('backend') ?? 'auto'),
    engine: params.get('engine') ?? params.get('kv') ?? 'auto' }, (msg) => { // ?kv=: the old name of ?engine=
    if (msg.type === 'progress' && msg.what === 'download') showDownload(msg);
    else if (msg.type === 'progress' && msg.what === 'session') status(`Creating sessions… ${msg.name}`);
    else if (msg.type === 'error') fail(msg);
    else if (msg.type === 'done' && msg.backend) {
      state.backend = msg.backend;
      showBackend(msg.backend);
      state.ready = true;
      status(`Ready on ${msg.backend.ep === 'webgpu' ? 'WebGPU' : 'WASM'}`);
      $('ask').disabled = $('generate').disabled = false;
    }
  });
  fetch(base + 'manifest.json').then((r) => r.json()).then((m) => {
    const dtypes = new Set(Object.values(m.graphs).flatMap((g) => Object.keys(/** @type {any} */ (g).variants ?? {})));
    for (const d of ['fp32', ...dtypes]) $('dtype-choice').append(new Option(m.dtypes?.[d]?.label ?? d, d));
    $('dtype-choice').value = params.get('dtype') ?? '';
  }).catch(() => undefined); // the worker reports a missing manifest
}

$('settings').onsubmit = (/** @type {Event} */ e) => {
  e.preventDefault();
  const p = new URLSearchParams(location.search);
  for (const [key, id] of [['backend', 'backend-choice'], ['dtype', 'dtype-choice']]) {
    if ($(id).value && $(id).value !== 'auto') p.set(key, $(id).value); else p.delete(key);
  }
  location.search = p.toString();
};

// ---- chat -------------------------------------------------------------------------------------------------

/** @type {Blob|null} */
let image = null;
/** @param {Blob|null} blob */
function setImage(blob) {
  image = blob;
  $('preview').hidden = $('clear-image').hidden = !blob;
  if (blob) $('preview').src = URL.createObjectURL(blob);
}
$('image-input').onchange = () => setImage($('image-input').files[0] ?? null);
$('clear-image').onclick = () => setImage(null);
$('drop').ondragover = (/** @type {DragEvent} */ e) => { e.preventDefault(); $('drop').classList.add('over'); };
$('drop').ondragleave = () => $('drop').classList.remove('over');
$('drop').ondrop = (/** @type {DragEvent} */ e) => {
  e.preventDefault();
  $('drop').classList.remove('over');
  const file = [...(e.dataTransfer?.files ?? [])].find((f) => f.type.startsWith('image/'));
  if (file) setImage(file);
};

/** @param {boolean} running @param {string} go @param {string} stop */
function running(running, go, stop) {
  $(go).disabled = running;
  $(stop).disabled = !running;
}

$('chat-form').onsubmit = (/** @type {Event} */ e) => {
  e.preventDefault();
  state.chat = { tokens: [], text: '', done: false, tokensPerSecond: 0 };
  $('answer').textContent = '';
  $('speed').textContent = image ? 'Reading the image…' : '';
  running(true, 'ask', 'chat-cancel');
  const id = send({ type: 'generate', task: 'chat', question: $('question').value, image,
    maxNewTokens: Number($('max-tokens').value) }, (msg) => {
    if (msg.type === 'token') {
      state.chat.tokens.push(msg.token);
      $('answer').textContent = state.chat.text = msg.text;
      $('speed').textContent = `${state.chat.tokens.length} tokens · ${msg.tokensPerSecond.toFixed(1)} tokens/s`;
    } else if (msg.type === 'done') {
      Object.assign(state.chat, { done: true, tokensPerSecond: msg.tokensPerSecond, gpuReads: msg.gpuReads });
      $('speed').textContent = `${msg.tokens?.length} tokens in ${msg.seconds?.toFixed(2)} s · ` +
        `${msg.tokensPerSecond?.toFixed(1)} tokens/s${msg.cancelled ? ' · cancelled' : ''}`;
      running(false, 'ask', 'chat-cancel');
    } else if (msg.type === 'error') {
      fail(msg);
      running(false, 'ask', 'chat-cancel');
    }
  });
  $('chat-cancel').onclick = () => worker.postMessage({ type: 'cancel', id });
};

// ---- text to image ----------------------------------------------------------------------------------------

/** @param {import('./protocol.js').ImageMessage} msg @param {number} seed */
function showImage(msg, seed) {
  const canvas = document.createElement('canvas');
  canvas.width = msg.width;
  canvas.height = msg.height;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
  ctx.putImageData(new ImageData(msg.rgba, msg.width, msg.height), 0, 0);
  const link = Object.assign(document.createElement('a'),
    { textContent: 'Download PNG', download: `janus-seed${seed}-${msg.index + 1}.png` });
  canvas.toBlob((blob) => { if (blob) link.href = URL.createObjectURL(blob); }, 'image/png');
  const figure = document.createElement('figure');
  figure.append(canvas, document.createElement('br'), link);
  $('gallery').append(figure);
}

$('image-form').onsubmit = (/** @type {Event} */ e) => {
  e.preventDefault();
  const seed = Number($('seed').value);
  state.images = { tokens: [], decoded: [], done: false, seconds: 0 };
  $('gallery').replaceChildren();
  $('image-bar').value = 0;
  $('image-progress').textContent = 'starting…';
  running(true, 'generate', 'image-cancel');
  const id = send({ type: 'generate', task: 'image', prompt: $('prompt').value, count: Number($('count').value),
    guidance: Number($('guidance').value), temperature: Number($('temperature').value), seed }, (msg) => {
    if (msg.type === 'progress' && msg.what === 'step') {
      $('image-bar').value = msg.done / msg.total;
      $('image-progress').textContent = `${msg.done}/${msg.total}`;
    } else if (msg.type === 'image') {
      state.images.tokens[msg.index] = msg.tokens;
      state.images.decoded[msg.index] = msg.decoded;
      showImage(msg, seed);
    } else if (msg.type === 'done') {
      Object.assign(state.images, { done: true, seconds: msg.seconds, gpuReads: msg.gpuReads });
      $('image-progress').textContent += msg.cancelled ? ' · cancelled' : ` · ${msg.seconds?.toFixed(2)} s`;
      running(false, 'generate', 'image-cancel');
    } else if (msg.type === 'error') {
      fail(msg);
      running(false, 'generate', 'image-cancel');
    }
  });
  $('image-cancel').onclick = () => worker.postMessage({ type: 'cancel', id });
};

load();
