// The CPU engine's memory is one 32-bit WebAssembly memory (runtime.js: at most 65535 pages of 64 KiB, the
// kernels' --max-memory): a pack whose weights alone exceed it cannot load, whatever the KV cache. There is no
// Memory64 build of the kernels; the engine's plan refuses such a bundle from its manifest, before downloading.

import { packBytes } from '../engines/packs.js';
import { MAX_PAGES, PAGE } from './runtime.js';

export const WASM32_MAX_BYTES = MAX_PAGES * PAGE;

/**
 * Why the CPU engine cannot hold this pack, in one line naming the memory needed against the maximum, or null.
 * @param {any} manifest @param {{json: string, parts: string[]}} pack @param {string} dtype
 */
export function wasm32Refusal(manifest, pack, dtype) {
  const bytes = packBytes(manifest, pack);
  if (bytes <= WASM32_MAX_BYTES) return null;
  const gb = (/** @type {number} */ n) => `${(n / 1e9).toFixed(2)} GB`;
  return `the CPU engine needs more than ${gb(bytes)} of WebAssembly memory for this bundle's ${dtype} weights `
    + `(${pack.json}'s ${pack.parts.length} part${pack.parts.length > 1 ? 's' : ''}), over the ${gb(WASM32_MAX_BYTES)} a 32-bit WebAssembly memory holds (its kernels have no `
    + 'Memory64 build)';
}
