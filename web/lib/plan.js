// The load plan, decided before anything large is fetched: the backend, each graph's dtype, the decoder engine,
// the sessions to make and the files they need (with sizes, and which are already in the Cache API). The page
// shows it on its first screen; model.js loads by it.

import { bundleNeeds, chooseBackend } from './backend.js';
import { dtypeTable, graphFiles, requestedDtypes, resolveGraphs } from './dtypes.js';
import { resolveEngine } from './engines/engine.js';
import { readPack } from './engines/packs.js';
import { IMAGE_EMBEDS } from './heads.js';
import { graphOf } from './sessions.js';

/** @typedef {import('./backend.js').Backend} Backend */
/** @typedef {import('./loader.js').Manifest} Manifest */
/**
 * What a plan is made from (loadJanus's options, checked: options.js).
 * @typedef {{backend: 'auto'|'webgpu'|'wasm', engine?: string, dtype: string|null}} LoadRequest
 */

/**
 * What a load would do, before anything large is fetched (planJanus; the demo page's first screen).
 * @typedef {object} LoadPlan
 * @property {string} model the model's name
 * @property {'webgpu'|'wasm'} ep
 * @property {string} where plain words: "on your GPU (…)", "on your CPU, 2 threads"
 * @property {string} why the backend choice in one sentence
 * @property {string[]} files the bundle files a load downloads
 * @property {number} bytes their size
 * @property {number} cachedBytes the part already in the Cache API
 * @property {number} runtimeBytes ONNX Runtime's files (ort/)
 * @property {string[]} notes
 */

// The graphs the page runs besides the decoder engine's; language_model stands for the decoder (its dtype is the
// engine's).
export const GRAPHS = ['prepare_inputs_embeds', 'language_model', 'lm_head', 'gen_step', 'image_decode'];

/**
 * The sessions to make on `backend`, in creation order (session name -> dtype), and the engine with its notes.
 * @param {Manifest} manifest
 * @param {Backend} backend
 * @param {Record<string, string>} dtypes the dtypes of GRAPHS
 * @param {LoadRequest} req
 */
export function sessionPlan(manifest, backend, dtypes, req) {
  const placed = resolveGraphs(manifest, dtypes, req.dtype, backend);
  const d = Object.fromEntries(Object.entries(placed.graphs).map(([g, p]) => [g, p.dtype]));
  const engine = resolveEngine(req.engine ?? 'auto', manifest, backend, d.language_model);
  const { prepare_inputs_embeds: embeds, language_model: lm, ...rest } = d;
  const replaced = engine.plan.replaces ?? [];
  /** @type {Record<string, string>} */
  const sessions = { ...(replaced.includes('prepare_inputs_embeds') ? {} : { prepare_inputs_embeds: embeds,
    ...(backend.ep === 'webgpu' ? { [IMAGE_EMBEDS]: embeds } : {}) }),
  ...engine.plan.graphs, ...Object.fromEntries(Object.entries(rest).filter(([g]) => !replaced.includes(g))) };
  return { sessions, engine, dtype: lm, notes: [placed.note, engine.note].filter((n) => n !== null) };
}

/**
 * What the bundle needs of a WebGPU adapter: the largest buffer of what the page would load there (the sessions
 * and the engine's pack of the WebGPU plan; the graphs at their dtypes where that plan cannot be made).
 * @param {Manifest} manifest @param {any} config @param {Record<string, string>} dtypes @param {LoadRequest} req
 */
export function webgpuNeeds(manifest, config, dtypes, req) {
  const table = dtypeTable(manifest);
  const gpu = /** @type {Backend} */ ({ ep: 'webgpu', adapter: '', threads: 1, notes: [], why: '' });
  let chosen;
  try {
    chosen = sessionPlan(manifest, gpu, dtypes, req);
  } catch {
    return bundleNeeds(manifest, config, table, dtypes); // the error itself is raised by the plan on the backend chosen
  }
  const graphs = Object.fromEntries(Object.entries(chosen.sessions).map(([name, d]) => [graphOf(name), d]));
  const packs = chosen.engine.plan.data?.json ? [{ engine: chosen.engine.spec.name, dtype: chosen.dtype }] : [];
  return bundleNeeds(manifest, config, table, graphs, packs);
}

/**
 * Everything decided from the bundle's small files: config, backend, dtypes, sessions, and the engine's pack JSON
 * (format checked: a pack of another format is refused here, before anything large is fetched).
 * @param {import('./loader.js').BundleLoader} loader with its manifest loaded
 * @param {LoadRequest} req
 */
export async function planLoad(loader, req) {
  const manifest = /** @type {Manifest} */ (loader.manifest);
  const config = await loader.json('config.json');
  const { dtypes, notes: missing } = requestedDtypes(manifest, config, GRAPHS, req.dtype);
  const backend = await chooseBackend(req.backend, webgpuNeeds(manifest, config, dtypes, req));
  const chosen = sessionPlan(manifest, backend, dtypes, req);
  return { manifest, config, dtypes, missing, backend, chosen, pack: await readPack(loader, chosen) };
}

/**
 * The bundle files a plan downloads: each session's graph files, and the manifest files the engine's plan names
 * (a pack: its JSON and its parts).
 * @param {Manifest} manifest
 * @param {ReturnType<typeof sessionPlan>} chosen
 */
export function planFiles(manifest, chosen) {
  const files = new Set();
  for (const [name, dtype] of Object.entries(chosen.sessions)) {
    const { file, external } = graphFiles(manifest, graphOf(name), dtype);
    for (const f of [file, ...external]) files.add(f);
  }
  for (const v of Object.values(chosen.engine.plan.data ?? {}).flat()) {
    if (typeof v === 'string' && v in manifest.files) files.add(v); // a pack's JSON and each of its parts
  }
  return [...files];
}

/** The model's name in words, from the manifest's source. @param {Manifest} manifest */
export function modelName(manifest) {
  const src = /** @type {any} */ (manifest).source ?? {};
  const name = src.name ?? String(src.path ?? '').split('/').filter(Boolean).pop();
  return name ? `Janus-Pro (${name})` : 'Janus-Pro';
}

// The largest file the loader can verify: crypto.subtle.digest takes one buffer, and Chromium 156 refuses one of
// 2147483646 bytes ("exceeds the supported range") while 2.1e9 passes.
export const DIGEST_MAX_BYTES = 2.1e9;

/**
 * Why the plan's files cannot be verified (one line naming the first file over DIGEST_MAX_BYTES), or null.
 * @param {Manifest} manifest @param {string[]} files
 */
export function unverifiable(manifest, files) {
  const big = files.find((f) => manifest.files[f].bytes > DIGEST_MAX_BYTES);
  if (!big) return null;
  return `${big} is ${(manifest.files[big].bytes / 1e9).toFixed(2)} GB: the page verifies each file whole with `
    + `crypto.subtle.digest, which takes at most ${DIGEST_MAX_BYTES / 1e9} GB in this browser`;
}

/**
 * The total a plan downloads against the one memory size a page can know, navigator.deviceMemory (GB, rounded
 * down and capped at 8 by the browser; GPU memory is not exposed): a note when the files alone are larger, or null.
 * @param {number} bytes @param {number|undefined} deviceMemory
 */
export function memoryNote(bytes, deviceMemory) {
  if (!deviceMemory || bytes <= deviceMemory * 2 ** 30) return null;
  return `this bundle loads ${(bytes / 1e9).toFixed(1)} GB of files; this device reports ${deviceMemory} GB of `
    + 'memory (navigator.deviceMemory, which browsers cap at 8): it may not fit';
}

/** Plain words for where the model runs. @param {Backend} b */
export function where(b) {
  return b.ep === 'webgpu' ? `on your GPU (${b.adapter})` : `on your CPU, ${b.threads} thread${b.threads > 1 ? 's' : ''}`;
}

/**
 * The first screen's facts: nothing but the small JSON files is fetched.
 * @param {import('./loader.js').BundleLoader} loader
 * @param {LoadRequest} req
 * @param {URL} assets where ort/ is served
 * @returns {Promise<LoadPlan>}
 */
export async function describePlan(loader, req, assets) {
  const manifest = await loader.loadManifest();
  const { backend, chosen, missing } = await planLoad(loader, req);
  const files = planFiles(manifest, chosen);
  const ortSizes = await (await fetch(new URL('ort/files.json', assets))).json();
  const bytes = files.reduce((n, f) => n + manifest.files[f].bytes, 0);
  const cached = await loader.cachedFiles(files);
  return { model: modelName(manifest), ep: backend.ep, where: where(backend), why: backend.why, files, bytes,
    cachedBytes: cached.reduce((n, f) => n + manifest.files[f].bytes, 0),
    runtimeBytes: Object.values(ortSizes).reduce((a, b) => a + Number(b), 0),
    notes: [...backend.notes, ...missing, ...chosen.notes,
      ...[memoryNote(bytes, /** @type {any} */ (navigator).deviceMemory)].filter((n) => n !== null)] };
}
