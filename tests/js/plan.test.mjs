// The load plan's checks (web/lib/plan.js) made before anything large is fetched.
import assert from 'node:assert/strict';
import { test } from 'node:test';

test('the total download against the memory the page can know, and files too large to verify', async () => {
  // WebGPU exposes no memory size; navigator.deviceMemory (GB) is the one the page has: a plan whose files exceed
  // it gets a note on the first screen; within it, or where the browser does not say, none. A file larger than
  // crypto.subtle.digest takes (a one-file 7B q4 WGSL pack, as packs were before parts) is refused, in one line,
  // before any download.
  const { memoryNote, unverifiable } = await import('../../web/lib/plan.js');
  assert.equal(memoryNote(9.5e9, 8), 'this bundle loads 9.5 GB of files; this device reports 8 GB of memory '
    + '(navigator.deviceMemory, which browsers cap at 8): it may not fit');
  assert.equal(memoryNote(5e9, 8), null);
  assert.equal(memoryNote(9.5e9, undefined), null);
  const manifest = { files: { 'wgsl/decoder_q4.bin': { bytes: 3.8e9 }, 'onnx/lm_head_q4.onnx': { bytes: 2.6e8 } } };
  assert.equal(unverifiable(manifest, ['onnx/lm_head_q4.onnx', 'wgsl/decoder_q4.bin']), 'wgsl/decoder_q4.bin is '
    + '3.80 GB: the page verifies each file whole with crypto.subtle.digest, which takes at most 2.1 GB in this browser');
  assert.equal(unverifiable(manifest, ['onnx/lm_head_q4.onnx']), null);
});
