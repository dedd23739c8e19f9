// The backend choice (web/lib/backend.js) and WASM's dtype preference (web/lib/dtypes.js).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DTYPES } from './fixtures.mjs';

const config = { janusweb: { vocab_size: 102400, hidden_size: 2048, num_key_value_heads: 16, head_dim: 128,
  num_image_tokens: 576 } };
const adapter = (/** @type {number} */ maxBufferSize, /** @type {boolean} */ f16) => ({
  info: { vendor: 'v', architecture: 'a' }, features: new Set(f16 ? ['shader-f16'] : []),
  limits: { maxBufferSize, maxStorageBufferBindingSize: maxBufferSize } });
/** navigator with this adapter (undefined: no navigator.gpu at all) */
const setAdapter = (/** @type {object|null|undefined} */ a) => Object.defineProperty(globalThis, 'navigator', {
  configurable: true, value: { hardwareConcurrency: 4, ...(a === undefined ? {} : { gpu: { requestAdapter: async () => a } }) } });

test('WebGPU only where an adapter holds the bundle, else WASM with the reason', async () => {
  // WebGPU only when an adapter exists, its buffer limits hold the largest buffer, and it has shader-f16 when a
  // graph is fp16; otherwise WASM, with the reason.
  globalThis.self = /** @type {any} */ ({ crossOriginIsolated: true });
  const { bundleNeeds, chooseBackend } = await import('../../web/lib/backend.js');
  const none = { graphs: {} }; // a manifest without `buffers`: the token matrix is estimated from config.json
  const fp32 = bundleNeeds(none, config, DTYPES, { lm_head: 'fp32', language_model: 'fp32' });
  const fp16 = bundleNeeds(none, config, DTYPES, { lm_head: 'fp16', language_model: 'fp16' });
  const q4 = bundleNeeds(none, config, DTYPES, { lm_head: 'q4', language_model: 'q4' });
  const recorded = { graphs: {}, buffers: { variants: {
    lm_head: { q4: { tensor: 'lm_head.weight_Q4', bytes: 211e6 } },
    language_model_gqa: { q4: { tensor: 'w', bytes: 50e6 } } },
  packs: { wgsl: { q4: { tensor: 'layers.0.gate', bytes: 120e6 } } } } };
  const big = bundleNeeds(recorded, config, DTYPES, { lm_head: 'q4', language_model_gqa: 'q4' },
    [{ engine: 'wgsl', dtype: 'q4' }]);
  const pack = bundleNeeds(recorded, config, DTYPES, { language_model_gqa: 'q4' }, [{ engine: 'wgsl', dtype: 'q4' }]);
  const choose = async (/** @type {object|null|undefined} */ a, /** @type {any} */ needs, wanted = 'auto') => {
    setAdapter(a);
    return chooseBackend(wanted, needs);
  };
  assert.equal(fp32.largest.bytes, 102400 * 2048 * 4); // the embedding table at fp32
  assert.equal(q4.largest.bytes, 102400 * 2048 / 2); // at the manifest's 4 bits
  const fits = await choose(adapter(2 ** 31, false), fp32);
  assert.equal(fits.ep, 'webgpu');
  assert.equal(fits.adapter, 'v a');
  const small = await choose(adapter(2 ** 28, false), fp32);
  assert.equal(small.ep, 'wasm');
  assert.ok(small.notes[0].endsWith("(lm_head fp32 token matrix, estimated), exceeds this adapter's "
    + 'maxStorageBufferBindingSize 268 MB (v a)'), small.notes[0]);
  const nof16 = await choose(adapter(2 ** 31, false), fp16);
  assert.equal(nof16.ep, 'wasm');
  assert.match(nof16.notes[0], /shader-f16/);
  assert.equal((await choose(adapter(2 ** 31, true), fp16)).ep, 'webgpu');
  const none2 = await choose(null, fp32);
  assert.equal(none2.ep, 'wasm');
  assert.match(none2.notes[0], /no adapter/);
  const nogpu = await choose(undefined, fp32);
  assert.equal(nogpu.ep, 'wasm');
  assert.match(nogpu.notes[0], /no WebGPU/);
  const forced = await choose(adapter(2 ** 31, false), fp32, 'wasm');
  assert.equal(forced.ep, 'wasm');
  assert.equal(forced.threads, 4);
  // the manifest's record of the largest buffer (janusweb/buffers.py), named, against the limit it exceeds
  const binding = await choose({ ...adapter(2 ** 31, false), limits: { maxBufferSize: 2 ** 28,
    maxStorageBufferBindingSize: 2 ** 27 } }, big);
  assert.equal(binding.ep, 'wasm');
  assert.equal(binding.notes[0], "WebGPU not used: this bundle's largest buffer, 211 MB (lm_head q4 "
    + "lm_head.weight_Q4), exceeds this adapter's maxStorageBufferBindingSize 134 MB (v a)");
  assert.deepEqual(pack.largest, { bytes: 120e6, what: 'wgsl q4 pack layers.0.gate' });
  assert.equal((await choose(adapter(2 ** 27, false), pack)).ep, 'webgpu');
});

test('on WASM a default int8 becomes q4 where the bundle has it', async () => {
  // (same speed there, half the memory: bench/results/2026-11-23-cpu-2core-matmul-formats); an asked-for dtype is kept.
  const manifest = { graphs: { language_model: { variants: { int8: { files: {} }, q4: { files: {} } } },
    lm_head: { variants: { int8: { files: {} } } }, image_decode: {} } };
  const { wasmDtypes } = await import('../../web/lib/dtypes.js');
  const dtypes = { language_model: 'int8', lm_head: 'int8', image_decode: 'fp32' };
  const auto = wasmDtypes(dtypes, manifest, null);
  assert.deepEqual(auto.dtypes, { language_model: 'q4', lm_head: 'int8', image_decode: 'fp32' });
  assert.match(auto.note, /language_model/);
  assert.doesNotMatch(auto.note, /lm_head/);
  assert.deepEqual(wasmDtypes(dtypes, manifest, 'int8'), { dtypes, note: null });
});
