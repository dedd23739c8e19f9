// The engine resolver (web/lib/engines/engine.js): by backend, bundle and request.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { graph, resolveCases } from './fixtures.mjs';

test('the resolver picks by backend, bundle and request', async () => {
  // ?engine=auto: the fused graph on WebGPU where the bundle has it at the decoder's dtype, else the growing cache
  // (with the reason); an engine asked for that cannot run on this backend gives way, with a note; one whose files
  // the bundle lacks is an InputError; the library knows engine names only (?kv=grow is the page's URL parser's).
  const manifest = { graphs: { language_model: graph('language_model', ['int8', 'q4']),
    language_model_gqa: graph('language_model_gqa', ['int8']) },
  wgsl: { fp32: { json: 'wgsl/decoder.json', parts: ['wgsl/decoder.0.bin'] },
    q4: { bin: 'wgsl/decoder_q4.bin', json: 'wgsl/decoder_q4.json' } } }; // q4: a pack from before parts
  const by = await resolveCases(manifest, [['auto', 'webgpu', 'fp32'], ['auto', 'webgpu', 'q4'],
    ['auto', 'wasm', 'int8'], ['grow', 'webgpu', 'fp32'], ['ort-grow', 'wasm', 'fp32'], ['wgsl', 'webgpu', 'fp32'],
    ['wgsl', 'webgpu', 'int8'], ['wgsl', 'wasm', 'fp32'], ['wgsl', 'webgpu', 'q4'], ['ort-gqa', 'wasm', 'fp32'],
    ['ort-gqa', 'webgpu', 'q4'], ['turbo', 'webgpu', 'fp32']]);
  assert.deepEqual(by['auto webgpu fp32'], { engine: 'ort-gqa', graphs: { language_model_gqa: 'fp32' }, note: null });
  assert.equal(by['auto webgpu q4'].engine, 'ort-grow');
  assert.deepEqual(by['auto webgpu q4'].graphs, { language_model: 'q4' });
  assert.match(by['auto webgpu q4'].note, /no q4 variant of language_model_gqa/);
  assert.deepEqual(by['auto wasm int8'], { engine: 'ort-grow', graphs: { language_model: 'int8' },
    note: 'KV cache grown per step (language_model): the bundle has no int8 CPU pack: run janusweb pack cpu BUNDLE '
      + '--dtype int8' });
  assert.ok(by['grow webgpu fp32'].input);
  assert.match(by['grow webgpu fp32'].error, /unknown engine grow/);
  assert.deepEqual(by['ort-grow wasm fp32'], { engine: 'ort-grow', graphs: { language_model: 'fp32' }, note: null });
  assert.equal(by['wgsl webgpu fp32'].engine, 'wgsl');
  assert.deepEqual(by['wgsl webgpu fp32'].graphs, {});
  assert.deepEqual(by['wgsl webgpu int8'], { kind: 'input', input: true,
    error: 'the bundle has no int8 WGSL pack: run janusweb pack wgsl BUNDLE --dtype int8' });
  assert.deepEqual(by['wgsl webgpu q4'], { kind: 'input', input: true,
    error: "the bundle's q4 WGSL pack is one .bin, not parts: run janusweb pack wgsl BUNDLE --dtype q4 again" });
  assert.equal(by['wgsl wasm fp32'].engine, 'ort-grow');
  assert.match(by['wgsl wasm fp32'].note, /needs WebGPU/);
  assert.equal(by['ort-gqa wasm fp32'].engine, 'ort-grow');
  assert.ok(by['ort-gqa webgpu q4'].input);
  assert.match(by['ort-gqa webgpu q4'].error, /no q4 variant/);
  assert.ok(by['turbo webgpu fp32'].input);
  assert.match(by['turbo webgpu fp32'].error, /ort-gqa/);
});

test('on WASM the resolver prefers the CPU engine', async () => {
  // With a CPU pack at the decoder's dtype, WASM's auto is the CPU engine (lm_head replaced); ort-grow when asked
  // for (said so); ?engine=cpu without the pack at that dtype is an InputError; WebGPU never picks it.
  const manifest = { graphs: { language_model: graph('language_model', ['int8']) },
    cpu: { int8: { json: 'cpu/decoder_int8.json', parts: ['cpu/decoder_int8.0.bin'] } } };
  const got = await resolveCases(manifest, [['auto', 'wasm', 'int8'], ['ort-grow', 'wasm', 'int8'],
    ['cpu', 'wasm', 'fp32'], ['cpu', 'webgpu', 'int8']]);
  assert.deepEqual(got['auto wasm int8'], { engine: 'cpu', graphs: {}, note: null });
  assert.equal(got['ort-grow wasm int8'].engine, 'ort-grow');
  assert.match(got['ort-grow wasm int8'].note, /requested/);
  assert.deepEqual(got['cpu wasm fp32'], { kind: 'input', input: true,
    error: 'the bundle has no fp32 CPU pack: run janusweb pack cpu BUNDLE --dtype fp32' });
  assert.equal(got['cpu webgpu int8'].engine, 'ort-grow');
  assert.match(got['cpu webgpu int8'].note, /runs on WASM/);
});
