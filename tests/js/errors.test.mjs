// The page's named error classes (web/lib/errors.js).
import assert from 'node:assert/strict';
import { test } from 'node:test';

test('each error class is its own kind; ORT messages become ours in one place', async () => {
  const e = await import('../../web/lib/errors.js');
  const cases = { input: new e.InputError('x'), backend: new e.BackendError('x'), oom: new e.OutOfMemoryError(),
    checksum: new e.ChecksumError('f', 'a', 'b'), plain: new Error('x'), cancelled: new e.Cancelled(),
    ortOom: e.fromOrt(new Error('failed: std::bad_alloc')),
    ortKernel: e.fromOrt(new Error('Could not find an implementation for GatherBlockQuantized(1) node')),
    ortFallback: e.fromOrt(new Error('... fallback to CPU EP has been explicitly disabled ...')),
    ortOther: e.fromOrt(new Error('something else')) };
  assert.deepEqual(Object.fromEntries(Object.entries(cases).map(([k, v]) => [k, e.errorKind(v)])), {
    input: 'input', backend: 'backend', oom: 'backend', checksum: 'checksum', plain: 'other', cancelled: 'other',
    ortOom: 'backend', ortKernel: 'backend', ortFallback: 'backend', ortOther: 'other' });
  assert.ok(cases.oom instanceof e.OutOfMemoryError && cases.oom instanceof e.BackendError);
  assert.match(cases.oom.message, /WASM heap of at most 4 GB/);
  assert.equal(cases.ortOom.name, 'OutOfMemoryError');
  assert.ok(cases.ortOom.message.startsWith('out of memory while running'));
  assert.equal(cases.ortKernel.name, 'MissingKernelError');
  assert.equal(/** @type {any} */ (cases.ortKernel).op, 'GatherBlockQuantized');
  assert.equal(cases.ortFallback.name, 'CpuFallbackError');
  assert.ok(!(cases.ortOther instanceof e.BackendError));
  assert.equal(cases.checksum.name, 'ChecksumError');
  assert.match(cases.checksum.message, /checksum mismatch for f/);
});
