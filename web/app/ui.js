// The page's entry: the first screen (the model, where it runs, the download size, a Start button; a model
// already in the Cache API, or ?autostart=1, loads without asking), the loading with every file's progress, and
// the details panel (per-graph dtypes, EP placement, KV cache and engine, the file list, the settings).

import { $, fail, failure, janusWorker, model, phase, size, state, status } from './page.js';
import './ui-chat.js';
import './ui-image.js';

/** @typedef {import('../lib/index.js').JanusInfo} BackendInfo */

const params = new URLSearchParams(location.search);
const base = new URL(params.get('model') ?? 'model/', location.href).href;
// ?kv= is the old name of ?engine= (kept here only, with a notice); ?preview= the image preview interval (ui-image.js); ?memory64=1 the CPU engine's Memory64 build
const KNOWN = ['backend', 'dtype', 'model', 'engine', 'kv', 'autostart', 'preview', 'threads', 'memory64'];
const BACKENDS = ['auto', 'webgpu', 'wasm'];
/** @type {Record<string, string>} the old ?kv= values and other names of an engine */
const ENGINE_ALIASES = { grow: 'ort-grow', ort: 'ort-grow' };

/**
 * The URL's choices, with a one-line notice for each parameter or value the page does not know (an unknown
 * backend or a dtype the bundle lacks is left to the default, never a blank menu).
 * @param {import('../lib/loader.js').Manifest} manifest
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
  const asked = params.get('engine') ?? params.get('kv') ?? 'auto';
  const engine = ENGINE_ALIASES[asked] ?? asked;
  if (params.has('kv') || engine !== asked) {
    notices.push(`?${params.has('engine') ? 'engine' : 'kv'}=${asked} is an old name: this is ?engine=${engine}.`);
  }
  return { notices, backend: /** @type {'auto'|'webgpu'|'wasm'} */ (backend), dtype, dtypes, engine };
}

/** The dtypes the bundle has (any graph), fp32 first. @param {import('../lib/loader.js').Manifest} manifest */
function bundleDtypes(manifest) {
  const variants = Object.values(manifest.graphs).flatMap((g) => Object.keys(g.variants ?? {}));
  return [...new Set(['fp32', ...variants])];
}

/** @type {Map<string, HTMLElement>} */
const bars = new Map();
/** @param {{name: string, done: number, total: number, cached?: boolean}} p */
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
async function load(c) {
  $('start').disabled = true;
  status('Loading the model…');
  try {
    const janus = await janusWorker.loadJanus(base, { dtype: c.dtype, backend: c.backend, engine: c.engine,
      threads: Number(params.get('threads')) || undefined, memory64: params.get('memory64') === '1', countGpuWork: true, onProgress: (p) => {
        if (p.what === 'download') {
          phase('downloading');
          showDownload(p);
          status(`Downloading ${p.name}… ${Math.floor((100 * p.done) / p.total)} %`);
        } else if (p.what === 'session') {
          phase('creating sessions');
          status(p.name === 'all' ? 'Preparing the decoder…' : `Creating sessions… ${p.name} (${p.done + 1}/${p.total})`);
        }
      } });
    model.instance = janus;
    state.backend = janus.info;
    showBackend(janus.info);
    state.ready = true;
    $('intro').hidden = true;
    status(`Ready on ${janus.info.ep === 'webgpu' ? 'WebGPU' : 'WASM'}`);
    $('ask').disabled = $('generate').disabled = false;
  } catch (e) {
    fail(failure(e));
  }
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
  let p;
  try {
    p = state.plan = await janusWorker.planJanus(base, { dtype: c.dtype, backend: c.backend, engine: c.engine });
  } catch (e) {
    fail(failure(e));
    return;
  }
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
