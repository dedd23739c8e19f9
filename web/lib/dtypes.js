// The page's one owner of dtypes and variant files: which dtype each graph runs at, which file holds it, and what
// a dtype needs from the adapter, all from the manifest (its `dtypes` table and each graph's `files` and
// `variants.<dtype>.files`), never from file-name rules of the page's own.

import { InputError } from './errors.js';

/** @typedef {{label: string, bits: number|null, requires: string|null}} DtypeInfo */
/** @typedef {{dtype: string, file: string, external: string[], device: 'webgpu'|'wasm'}} GraphPlace */

/**
 * The manifest's dtype table. A bundle exported before the table existed gets one derived from its variants:
 * each dtype labelled by its name, bits from its quantization record (null where none), no adapter requirement.
 * @param {import('./loader.js').Manifest} manifest
 * @returns {Record<string, DtypeInfo>}
 */
export function dtypeTable(manifest) {
  if (manifest.dtypes) return manifest.dtypes;
  /** @type {Record<string, DtypeInfo>} */
  const table = {};
  for (const g of Object.values(manifest.graphs)) {
    const base = g.dtype ?? 'fp32';
    table[base] ??= { label: base, bits: base === 'fp32' ? 32 : null, requires: null };
    for (const [d, v] of Object.entries(g.variants ?? {})) {
      table[d] ??= { label: d, bits: /** @type {any} */ (v).quantization?.bits ?? null, requires: null };
    }
  }
  return table;
}

/** @param {import('./loader.js').Manifest} manifest @param {string} graph @param {string} dtype */
function filesOf(manifest, graph, dtype) {
  const entry = manifest.graphs[graph];
  if (!entry) return undefined;
  return (entry.dtype ?? 'fp32') === dtype ? entry.files : entry.variants?.[dtype]?.files;
}

/** Whether the bundle has `graph` at `dtype`. @param {import('./loader.js').Manifest} manifest @param {string} graph @param {string} dtype */
export function hasDtype(manifest, graph, dtype) {
  return filesOf(manifest, graph, dtype) !== undefined;
}

/**
 * The files of `graph` at `dtype`: its .onnx file and its external data files.
 * @param {import('./loader.js').Manifest} manifest
 * @param {string} graph
 * @param {string} dtype
 */
export function graphFiles(manifest, graph, dtype) {
  if (!manifest.graphs[graph]) throw new InputError(`the bundle has no graph ${graph}`);
  const files = filesOf(manifest, graph, dtype);
  if (!files) throw new InputError(`the bundle has no ${dtype} variant of ${graph} (run janusweb quantize)`);
  const models = Object.keys(files).filter((f) => f.endsWith('.onnx'));
  if (models.length !== 1) throw new InputError(`the manifest's ${dtype} files of ${graph} hold ${models.length} .onnx files`);
  return { file: models[0], external: Object.keys(files).filter((f) => f !== models[0]) };
}

/**
 * The dtype each of `graphs` asks for: the URL/UI choice when given, else config.json's
 * transformers.js_config.dtype (a string or a per-graph map), else fp32; fp32 where the bundle lacks that variant.
 * @param {import('./loader.js').Manifest} manifest
 * @param {any} config config.json
 * @param {string[]} graphs
 * @param {string|null} requested
 * @returns {{dtypes: Record<string, string>, notes: string[]}}
 */
export function requestedDtypes(manifest, config, graphs, requested) {
  const configured = config['transformers.js_config']?.dtype ?? 'fp32';
  /** @type {Record<string, string>} */
  const dtypes = {};
  const notes = [];
  for (const g of graphs) {
    const wanted = requested ?? (typeof configured === 'string' ? configured : configured[g] ?? 'fp32');
    dtypes[g] = hasDtype(manifest, g, wanted) ? wanted : 'fp32';
    if (dtypes[g] !== wanted) notes.push(`${g} runs at fp32: the bundle has no ${wanted} variant of it`);
  }
  return { dtypes, notes };
}

/**
 * On WASM, q4 in place of a default int8: onnxruntime-web's WASM MatMulNBits runs 4- and 8-bit weights at the
 * same speed (about 12x slower than fp32: bench/results/2026-11-23-cpu-2core-matmul-formats) and q4 halves the
 * download and the memory, which a 1B model needs to fit in WASM's 4 GB. Only when no dtype was asked for and
 * the bundle has the q4 variant.
 * @param {Record<string, string>} dtypes graph -> dtype
 * @param {import('./loader.js').Manifest} manifest
 * @param {string|null} requested the dtype the user asked for
 * @returns {{dtypes: Record<string, string>, note: string|null}}
 */
export function wasmDtypes(dtypes, manifest, requested) {
  const swap = requested ? [] : Object.keys(dtypes).filter((g) => dtypes[g] === 'int8' && hasDtype(manifest, g, 'q4'));
  if (!swap.length) return { dtypes, note: null };
  return { dtypes: { ...dtypes, ...Object.fromEntries(swap.map((g) => [g, 'q4'])) },
    note: `WASM: q4 instead of the default int8 for ${swap.join(', ')} (the same speed there, half the memory)` };
}

// Operators onnxruntime-web has no kernel for on a backend (its WASM build has no GatherBlockQuantized): a variant
// that uses one runs at fp32 there, decided from the manifest's per-variant op list before anything is downloaded.
/** @type {Record<string, string[]>} */
const MISSING_KERNELS = { wasm: ['GatherBlockQuantized'], webgpu: [] };

/**
 * fp32 for the graphs whose variant uses an operator `ep` has no kernel for (MISSING_KERNELS).
 * @param {Record<string, string>} dtypes graph -> dtype
 * @param {import('./loader.js').Manifest} manifest
 * @param {'webgpu'|'wasm'} ep
 * @returns {{dtypes: Record<string, string>, notes: string[]}}
 */
export function runnableDtypes(dtypes, manifest, ep) {
  const out = { ...dtypes };
  const notes = [];
  for (const [g, d] of Object.entries(dtypes)) {
    const ops = Object.keys(manifest.graphs[g]?.variants?.[d]?.ops ?? {});
    const missing = ops.find((op) => MISSING_KERNELS[ep]?.includes(op));
    if (!missing) continue;
    out[g] = 'fp32';
    notes.push(`${g} runs at fp32: ${ep} has no ${missing} kernel for its ${d} variant`);
  }
  return { dtypes: out, notes };
}

/**
 * Where each graph runs: manifest + requested dtypes + backend -> {graph: {dtype, file, external, device}}.
 * @param {import('./loader.js').Manifest} manifest
 * @param {Record<string, string>} dtypes graph -> dtype (requestedDtypes)
 * @param {string|null} requested the dtype the user asked for
 * @param {{ep: 'webgpu'|'wasm'}} backend
 * @returns {{graphs: Record<string, GraphPlace>, note: string|null}}
 */
export function resolveGraphs(manifest, dtypes, requested, backend) {
  const chosen = backend.ep === 'wasm' ? wasmDtypes(dtypes, manifest, requested) : { dtypes, note: null };
  const runnable = runnableDtypes(chosen.dtypes, manifest, backend.ep);
  const note = [chosen.note, ...runnable.notes].filter((n) => n !== null).join('; ') || null;
  return { note, graphs: Object.fromEntries(Object.entries(runnable.dtypes).map(([g, dtype]) =>
    [g, { dtype, ...graphFiles(manifest, g, dtype), device: backend.ep }])) };
}

/**
 * The dtypes in words, as the page shows them: the main one, and the graphs that differ from it.
 * @param {import('./loader.js').Manifest} manifest
 * @param {Record<string, string>} used graph -> dtype
 * @param {string} main
 */
export function describeDtypes(manifest, used, main) {
  const table = dtypeTable(manifest);
  const label = (/** @type {string} */ d) => table[d]?.label ?? d;
  const odd = Object.keys(used).filter((g) => used[g] !== main).map((g) => `${g}: ${label(used[g])}`);
  return odd.length ? `${label(main)} (${odd.join(', ')})` : label(main);
}
