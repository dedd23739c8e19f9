// ONNX Runtime sessions: one per graph, where its nodes run, the fp32 fallback for a kernel the backend lacks,
// and out-of-memory in words.

import * as ort from 'onnxruntime-web/webgpu';
import { sessionOptions } from './backend.js';
import { graphFiles } from './dtypes.js';
import { CpuFallbackError, MissingKernelError, OutOfMemoryError, InputError, fromOrt } from './errors.js';
import { IMAGE_EMBEDS } from './heads.js';
import { independentOf, onnxNodes } from './onnx-nodes.js';

/** @typedef {import('./backend.js').Backend} Backend */
/** @typedef {import('./loader.js').BundleLoader} BundleLoader */

// The outputs each graph keeps on the GPU (WebGPU only); a graph not listed keeps all of them there.
/** @type {Record<string, (outs: string[]) => string[]>} */
const GPU_OUTPUTS = {
  prepare_inputs_embeds: () => ['inputs_embeds'],
  lm_head: () => [],
  gen_step: () => ['image_ids', 'inputs_embeds', 'tokens_out', 'image_tokens'],
  image_decode: () => [],
};
// On WebGPU, the nodes that do not depend on this input run on the CPU EP (see createSession).
/** @type {Record<string, string>} */
const CPU_SIDE = { prepare_inputs_embeds: 'input_ids', language_model_gqa: 'inputs_embeds' };
// onnxruntime-web's limit on one provider option's value: forceCpuNodeNames, joined with newlines.
const OPTION_LIMIT = 8192;

/** The graph a session runs (IMAGE_EMBEDS is a second session of prepare_inputs_embeds). @param {string} name */
export const graphOf = (name) => (name === IMAGE_EMBEDS ? 'prepare_inputs_embeds' : name);

/**
 * One graph's session on `backend` at `dtype`. On WebGPU every node runs on the GPU unless named here:
 * - graphs with CPU_SIDE nodes place the nodes that do not depend on that input on the CPU EP by name
 *   (forceCpuNodeNames), and ORT's check session.disable_cpu_ep_fallback cannot be on (it rejects any CPU node,
 *   named or not): prepare_inputs_embeds runs its vision tower and mask arithmetic on the CPU (a text-only call
 *   feeds the vision tower zero-size tensors, which the WebGPU kernels reject), so prompts with an image go
 *   through a second session of the same graph, IMAGE_EMBEDS, all on the GPU; language_model_gqa its three
 *   attention-mask nodes (so GroupQueryAttention gets its sequence lengths without a GPU->CPU read);
 * - every other graph is created with session.disable_cpu_ep_fallback; one that ORT can only place with some
 *   nodes on the CPU EP is created again without it.
 * `cpu` says which case applied: 'named nodes', 'ORT fallback', or null (all on the GPU).
 * @param {BundleLoader} loader
 * @param {Backend} backend
 * @param {string} name
 * @param {string} dtype
 */
async function createSession(loader, backend, name, dtype) {
  const graph = graphOf(name);
  const { model: bytes, externalData } = await loader.graph(graph, dtype);
  const outputs = /** @type {any} */ (loader.manifest).graphs[graph].outputs.map((/** @type {any} */ o) => o.name);
  const onGpu = (GPU_OUTPUTS[graph] ?? ((outs) => outs))(outputs);
  const forceCpu = backend.ep === 'webgpu' && name in CPU_SIDE ? independentOf(onnxNodes(bytes), CPU_SIDE[name]) : [];
  if (forceCpu.join('\n').length > OPTION_LIMIT) {
    throw new InputError(`${name}: the names of its ${forceCpu.length} CPU-side nodes exceed onnxruntime-web's `
      + `${OPTION_LIMIT}-character option (a bundle exported before node names were compacted: export it again)`);
  }
  const create = (/** @type {boolean} */ strict) => ort.InferenceSession.create(bytes,
    sessionOptions(backend, { onGpu, forceCpu, strict, externalData })).catch((e) => { throw fromOrt(e); });
  if (forceCpu.length) return { session: await create(false), cpu: 'named nodes' };
  try {
    return { session: await create(true), cpu: null };
  } catch (e) {
    if (backend.ep !== 'webgpu' || !(e instanceof CpuFallbackError)) throw e;
    return { session: await create(false), cpu: 'ORT fallback' };
  }
}

/**
 * Sessions for every graph. A quantized graph whose kernels this backend lacks (e.g. GatherBlockQuantized
 * on WASM) runs at fp32, and `dtypes` and `notes` say so. Out of memory says how much was being loaded. When
 * anything throws (onProgress too: an aborted load), the sessions made so far are released.
 * @param {BundleLoader} loader
 * @param {Backend} backend
 * @param {Record<string, string>} wanted session name -> dtype, in creation order
 * @param {(name: string, done: number, total: number) => void} onProgress
 */
export async function createSessions(loader, backend, wanted, onProgress) {
  /** @type {Record<string, ort.InferenceSession>} */
  const sessions = {};
  const dtypes = { ...wanted };
  const names = Object.keys(wanted);
  /** @type {Record<string, string>} */
  const cpuNodes = {};
  const notes = [];
  try {
    for (const [k, name] of names.entries()) {
      onProgress(name, k, names.length);
      let created;
      try {
        created = await createSession(loader, backend, name, dtypes[name]);
      } catch (e) {
        if (!(e instanceof MissingKernelError) || dtypes[name] === 'fp32') throw e;
        notes.push(`${name} runs at fp32: ${backend.ep} has no ${e.op} kernel for its ${dtypes[name]} variant`);
        dtypes[name] = 'fp32';
        created = await createSession(loader, backend, name, 'fp32');
      }
      sessions[name] = created.session;
      if (created.cpu) cpuNodes[name] = created.cpu;
    }
    onProgress('all', names.length, names.length); // may throw (a load aborted): the sessions are released
  } catch (e) {
    await Promise.all(Object.values(sessions).map((s) => s.release()));
    if (!(e instanceof OutOfMemoryError)) throw e;
    const manifest = /** @type {import('./loader.js').Manifest} */ (loader.manifest);
    const n = Object.keys(sessions).length + 1;
    const bytes = names.slice(0, n).flatMap((s) => {
      const { file, external } = graphFiles(manifest, graphOf(s), dtypes[s]);
      return [file, ...external].map((f) => manifest.files[f].bytes);
    }).reduce((a, b) => a + b, 0);
    throw new OutOfMemoryError(`out of memory while creating ${n} of ${names.length} sessions on ${backend.ep} `
      + `(${Math.round(bytes / 2 ** 20)} MiB of graphs at ${[...new Set(Object.values(dtypes))].join('/')})`);
  }
  return { sessions, cpuNodes, dtypes, notes };
}
