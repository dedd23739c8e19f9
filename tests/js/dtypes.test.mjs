// The dtype resolver (web/lib/dtypes.js): files and labels from the manifest.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DTYPES, graph } from './fixtures.mjs';

test('the dtype resolver takes files and labels from the manifest', async () => {
  // manifest + request + backend -> {graph: {dtype, file, external, device}}: the files are the manifest's own (its
  // variants' .onnx and external data), labels its table's; a dtype the bundle lacks falls back to fp32 with a
  // note; on WASM a default int8 becomes q4 where there is one. A bundle without the table gets one derived from
  // its variants.
  const d = await import('../../web/lib/dtypes.js');
  const manifest = { graphs: { lm_head: graph('lm_head', ['int8', 'q4']),
    language_model: graph('language_model', ['int8'], { external: true }), image_decode: graph('image_decode', []) } };
  const withTable = { ...manifest, dtypes: DTYPES };
  const names = ['lm_head', 'language_model', 'image_decode'];
  const req = d.requestedDtypes(withTable, {}, names, 'int8');
  assert.deepEqual(req.dtypes, { lm_head: 'int8', language_model: 'int8', image_decode: 'fp32' });
  assert.deepEqual(req.notes, ['image_decode runs at fp32: the bundle has no int8 variant of it']);
  assert.deepEqual(d.resolveGraphs(withTable, req.dtypes, 'int8', { ep: 'webgpu' }).graphs, {
    lm_head: { dtype: 'int8', file: 'onnx/lm_head_int8.onnx', external: [], device: 'webgpu' },
    language_model: { dtype: 'int8', file: 'onnx/language_model_int8.onnx',
      external: ['onnx/language_model_int8.onnx_data'], device: 'webgpu' },
    image_decode: { dtype: 'fp32', file: 'onnx/image_decode.onnx', external: [], device: 'webgpu' } });
  const wasm = d.resolveGraphs(withTable, d.requestedDtypes(withTable,
    { 'transformers.js_config': { dtype: 'int8' } }, names, null).dtypes, null, { ep: 'wasm' });
  assert.deepEqual(Object.fromEntries(Object.entries(wasm.graphs).map(([g, p]) => [g, p.file])), {
    lm_head: 'onnx/lm_head_q4.onnx', language_model: 'onnx/language_model_int8.onnx',
    image_decode: 'onnx/image_decode.onnx' });
  assert.match(wasm.note, /lm_head/);
  const cfg = { 'transformers.js_config': { dtype: { lm_head: 'q4', language_model: 'int8' } } };
  assert.deepEqual(d.requestedDtypes(withTable, cfg, names, null).dtypes,
    { lm_head: 'q4', language_model: 'int8', image_decode: 'fp32' });
  // the manifest's label, not the dtype's name
  assert.equal(d.describeDtypes(withTable, { lm_head: 'q4', language_model: 'int8' }, 'int8'), 'int8 (lm_head: 4-bit)');
  assert.deepEqual(d.dtypeTable(manifest), { fp32: { label: 'fp32', bits: 32, requires: null },
    int8: { label: 'int8', bits: 8, requires: null }, q4: { label: 'q4', bits: 4, requires: null } });
  assert.throws(() => d.graphFiles(withTable, 'image_decode', 'q4'),
    (/** @type {any} */ e) => e.kind === 'input' && /no q4 variant of image_decode/.test(e.message));
});
