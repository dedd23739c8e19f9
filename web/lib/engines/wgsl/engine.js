// WGSL: the decoder layers on the page's own WGSL kernels (wgsl/decoder.js), WebGPU, from the bundle's WGSL pack
// (janusweb pack wgsl: the fused graph's weights); no language model session is made.

import { InputError } from '../../errors.js';
import { partsNote, staleFormat } from '../packs.js';
import { WgslDecoder } from './decoder.js';

/** @type {import('../engine.js').EngineSpec} */
export const engine = {
  name: 'wgsl',
  label: 'WGSL decoder',
  unsupported: (backend) => (backend.ep === 'webgpu' ? null : 'the WGSL decoder needs WebGPU'),
  plan: (manifest, dtype) => {
    const pack = /** @type {any} */ (manifest).wgsl?.[dtype];
    if (!pack) return `the bundle has no ${dtype} WGSL pack: run janusweb pack wgsl BUNDLE --dtype ${dtype}`;
    if (staleFormat(pack)) return `the bundle's ${dtype} WGSL pack is one .bin, not parts: run janusweb pack wgsl BUNDLE --dtype ${dtype} again`;
    return { graphs: {}, data: pack };
  },
  create: async ({ loader, device, dtype, plan, pack: desc }) => {
    const pack = plan.data;
    const source = /** @type {any} */ (loader.manifest).files[`onnx/${desc.source}`]?.sha256;
    if (source !== desc.source_sha256) {
      throw new InputError(`the ${dtype} WGSL pack was made from another ${desc.source}: run janusweb pack wgsl `
        + `BUNDLE --dtype ${dtype} again`);
    }
    const dec = new WgslDecoder(/** @type {GPUDevice} */ (device), desc);
    await loader.packTensors(pack, desc, (name, bytes) => dec.upload(name, bytes))
      .catch((e) => { dec.release(); throw e; });
    return { kvCache: `WGSL decoder (${pack.json}, ${partsNote(pack)}): KV cache bound in place`, dtypes: { language_model: dtype },
      newCache: (rows, capacity) => dec.newCache(rows, capacity), maxPositions: desc.max_positions,
      release: () => dec.release() };
  },
};
