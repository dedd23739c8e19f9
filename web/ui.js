// The page's entry: the first screen (the model, where it runs, the download size, a Start button; a model
// already in the Cache API, or ?autostart=1, loads without asking), the loading with every file's progress, and
// the details panel (per-graph dtypes, EP placement, KV cache and engine, the file list, the settings).

import { $, fail, phase, send, size, state, status } from './page.js';
import './ui-chat.js';
import './ui-image.js';

/** @typedef {import('./protocol.js').BackendInfo} BackendInfo */

const params = new URLSearchParams(location.search);
const base = new URL(params.get('model') ?? 'model/', location.href).href;
// ?kv= is the old name of ?engine=; ?preview= the image preview interval (ui-image.js)
const KNOWN = ['backend', 'dtype', 'model', 'engine', 'kv', 'autostart', 'preview', 'threads'];
const BACKENDS = ['auto', 'webgpu', 'wasm'];

/**
 * The URL's choices, with a one-line notice for each parameter or value the page does not know (an unknown
 * backend or a dtype the bundle lacks is left to the default, never a blank menu).
 * @param {import('./loader.js').Manifest} manifest
 */
function choices(manifest) {
  const notices = [...params.keys()].filter((k) => !KNOWN.includes(k))
    .map((k) => `Unknown URL parameter ?${k} (ignored; the page knows ${KNOWN.join(', ')}).`);
  let backend = params.get('backend') ?? 'auto';
  if (!BACKENDS.includes(backend)) {
    notices.push(`Unknown backend ?backend=${backend} (one of ${BACKENDS.join(', ')}): choosing automatically.`);
    backend = 'auto';
  }
  const dtypes = bundleDtypes(manifest);
  let dtype = params.get('dtype') || null;
  if (dtype && !dtypes.includes(dtype)) {
    notices.push(`This bundle has no ${dtype} variant (it has ${dtypes.join(', ')}): using its default.`);
    dtype = null;
  }
  return { notices, backend: /** @type {'auto'|'webgpu'|'wasm'} */ (backend), dtype, dtypes,
    engine: params.get('engine') ?? params.get('kv') ?? 'auto' };
}

/** The dtypes the bundle has (any graph), fp32 first. @param {import('./loader.js').Manifest} manifest */
function bundleDtypes(manifest) {
  const variants = Object.values(manifest.graphs).flatMap((g) => Object.keys(g.variants ?? {}));
  return [...new Set(['fp32', ...variants])];
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
    state.downloads.push(p.name);
  }
  /** @type {HTMLProgressElement} */ (row.querySelector('progress')).value = p.done / p.total;
  /** @type {HTMLElement} */ (row.querySelector('span')).textContent =
    `${p.name} ${size(p.done)} / ${size(p.total)}${p.cached ? ' (cache)' : ''}`;
}

/** @param {string} id @param {string[]} lines */
function list(id, lines) {
  $(id).replaceChildren(...lines.map((n) => Object.assign(document.createElement('li'), { textContent: n })));
}

/** @param {BackendInfo} b */
function showBackend(b) {
  $('ep').textContent = b.ep === 'webgpu' ? 'WebGPU' : `WASM (${b.threads} thread${b.threads > 1 ? 's' : ''})`;
  $('adapter').textContent = b.adapter;
  $('dtype').textContent = b.dtype;
  $('graph-dtypes').textContent = Object.entries(b.dtypes).map(([g, d]) => `${g}: ${d}`).join(', ');
  $('kv-cache').textContent = b.kvCache;
  $('engine').textContent = b.engine;
  $('why').textContent = b.why;
  const notes = [...b.notes];
  const cpu = Object.entries(b.cpuNodes).map(([graph, why]) => `${graph} (${why})`);
  if (b.ep === 'webgpu' && cpu.length) notes.push(`some nodes on the CPU EP: ${cpu.join(', ')}`);
  list('notes', notes);
}

/** @param {ReturnType<typeof choices>} c */
function load(c) {
  $('start').disabled = true;
  status('Loading the model…');
  send({ type: 'load', base, dtype: c.dtype, backend: c.backend, engine: c.engine,
    threads: Number(params.get('threads')) || undefined }, (msg) => {
    if (msg.type === 'progress' && msg.what === 'download') {
      phase('downloading');
      showDownload(msg);
      status(`Downloading ${msg.name}… ${Math.floor((100 * msg.done) / msg.total)} %`);
    } else if (msg.type === 'progress' && msg.what === 'session') {
      phase('creating sessions');
      status(msg.name === 'all' ? 'Preparing the decoder…'
        : `Creating sessions… ${msg.name} (${msg.done + 1}/${msg.total})`);
    } else if (msg.type === 'error') {
      fail(msg);
    } else if (msg.type === 'done' && msg.backend) {
      state.backend = msg.backend;
      showBackend(msg.backend);
      state.ready = true;
      $('intro').hidden = true;
      status(`Ready on ${msg.backend.ep === 'webgpu' ? 'WebGPU' : 'WASM'}`);
      $('ask').disabled = $('generate').disabled = false;
    }
  });
}

/** The first screen: what a load would do, then Start (or straight on when cached or ?autostart=1). */
async function init() {
  const response = await fetch(base + 'manifest.json', { cache: 'no-store' }).catch(() => null);
  if (!response?.ok) {
    fail({ kind: 'input', message: `${base}manifest.json: ${response ? `HTTP ${response.status}` : 'unreachable'} `
      + '(is this a janusweb bundle?)' });
    return;
  }
  const c = choices(await response.json());
  state.notices = c.notices;
  list('notices', c.notices);
  $('backend-choice').value = c.backend;
  for (const d of c.dtypes) $('dtype-choice').append(new Option(d, d));
  $('dtype-choice').value = c.dtype ?? '';
  status('Checking this browser…');
  send({ type: 'plan', base, dtype: c.dtype, backend: c.backend, engine: c.engine }, (msg) => {
    if (msg.type === 'error') fail(msg);
    if (msg.type !== 'done' || !msg.plan) return;
    const p = state.plan = msg.plan;
    $('model-name').textContent = p.model;
    $('where').textContent = p.where;
    $('why').textContent = p.why;
    const left = p.bytes - p.cachedBytes;
    $('size').textContent = left === 0 ? `Its ${size(p.bytes)} of model files are already in this browser.`
      : `Download: ${size(left)} of model files${p.cachedBytes ? ` (${size(p.cachedBytes)} more already here)` : ''}`
        + ` and ${size(p.runtimeBytes)} of runtime.`;
    list('notes', p.notes);
    if (left === 0 || params.get('autostart') === '1') {
      load(c);
    } else {
      status('');
      $('start').disabled = false;
      $('start').onclick = () => load(c);
    }
  });
}

$('settings').onsubmit = (/** @type {Event} */ e) => {
  e.preventDefault();
  const p = new URLSearchParams(location.search);
  for (const [key, id] of [['backend', 'backend-choice'], ['dtype', 'dtype-choice']]) {
    if ($(id).value && $(id).value !== 'auto') p.set(key, $(id).value); else p.delete(key);
  }
  location.search = p.toString();
};

init();
