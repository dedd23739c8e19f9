// What a loaded instance is, as structured facts (Janus.info): backend, adapter, engine, the dtype of every graph,
// files and bytes, the engine's own memory, threads, cross-origin isolation. The sentences beside them (why, notes,
// kvCache) are for people; nothing here needs parsing.

import { describeDtypes } from './dtypes.js';
import { modelName } from './plan.js';

/**
 * @typedef {object} EngineInfo
 * @property {string} name the engine (`engine` option): 'ort-gqa', 'ort-grow', 'wgsl', 'cpu'
 * @property {string} label the engine in words
 * @property {number|null} memoryBytes the memory the engine holds itself, outside ONNX Runtime (the CPU engine's
 *   WebAssembly memory), now; null where it holds none of its own or does not measure it
 * @property {Record<string, string|number|boolean>} details engine-specific facts (the CPU engine: kernels file,
 *   relaxed SIMD)
 */

/**
 * @typedef {object} JanusInfo
 * @property {string} model the model's name
 * @property {'webgpu'|'wasm'} backend where every session runs (the execution provider)
 * @property {'webgpu'|'wasm'} ep the same (the name the page used)
 * @property {string} adapter what runs the graphs, in words
 * @property {boolean} software WebGPU on a software adapter (SwiftShader, a fallback adapter)
 * @property {string} engine the decoder engine's name
 * @property {EngineInfo} engineInfo
 * @property {string} dtype the dtypes in words, e.g. "int8 (prepare_inputs_embeds: fp32)"
 * @property {Record<string, string>} dtypes graph -> the dtype it runs at
 * @property {Record<string, number>} files every bundle file the instance loaded -> bytes
 * @property {number} bytes their total
 * @property {number} threads WASM threads
 * @property {boolean} crossOriginIsolated whether the page is (WASM threads need it)
 * @property {Record<string, string>} cpuNodes WebGPU: graphs with some nodes on the CPU EP, and why
 * @property {string} kvCache which decoder runs and how it holds the KV cache, in words
 * @property {string} why the backend choice in one sentence
 * @property {string[]} notes fallbacks and their reasons, in words
 */

/**
 * @param {{manifest: import('./loader.js').Manifest, backend: import('./backend.js').Backend,
 *   used: Record<string, string>, main: string, files: string[], missing: string[],
 *   created: {cpuNodes: Record<string, string>, notes: string[]},
 *   chosen: {engine: {spec: import('./engines/engine.js').EngineSpec}, notes: string[]},
 *   engine: import('./engines/engine.js').Engine}} f
 * @returns {JanusInfo}
 */
export function describeInfo(f) {
  const { manifest, backend, engine, chosen } = f;
  const files = Object.fromEntries(f.files.map((name) => [name, manifest.files[name].bytes]));
  return {
    model: modelName(manifest),
    backend: backend.ep, ep: backend.ep, adapter: backend.adapter,
    software: !!backend.software,
    engine: chosen.engine.spec.name,
    engineInfo: { name: chosen.engine.spec.name, label: chosen.engine.spec.label,
      memoryBytes: engine.memoryBytes?.() ?? null, details: engine.details ?? {} },
    dtype: describeDtypes(manifest, f.used, f.main), dtypes: f.used,
    files, bytes: Object.values(files).reduce((a, b) => a + b, 0),
    threads: backend.threads, crossOriginIsolated: !!self.crossOriginIsolated,
    cpuNodes: f.created.cpuNodes, kvCache: engine.kvCache, why: backend.why,
    notes: [...backend.notes, ...f.missing, ...f.created.notes, ...chosen.notes],
  };
}
