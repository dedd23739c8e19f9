// The library's format refusals as errors (web/lib/formats.js): one line, kind 'bundle', and the class kept across
// a worker (errorData / reviveError). Their sentences are compared with janusweb/formats.py's in tests/test_formats.py.
import assert from 'node:assert/strict';
import { test } from 'node:test';

/** What `f` throws (undefined if it returns). @param {() => unknown} f @returns {any} */
function thrown(f) {
  try {
    f();
  } catch (x) {
    return x;
  }
  return undefined;
}

test('a manifest or pack of another format is a BundleFormatError, also across a worker', async () => {
  const f = await import('../../web/lib/formats.js');
  const e = await import('../../web/lib/errors.js');
  const refusals = [() => f.checkManifest({ format: 'janusweb-bundle/2' }, 'http://h/m/manifest.json'),
    () => f.checkPack('cpu', { format: 'janusweb-cpu/1' }, 'http://h/m/cpu/decoder.json', 'int8'),
    () => f.checkPack('wgsl', null, 'http://h/m/wgsl/decoder.json', 'q4')];
  for (const refuse of refusals) {
    const error = thrown(refuse);
    assert.ok(error instanceof e.BundleFormatError, String(error));
    assert.equal(e.errorKind(error), 'bundle');
    assert.ok(!error.message.includes('\n'), error.message);
    const revived = e.reviveError(e.errorData(error));
    assert.ok(revived instanceof e.BundleFormatError && revived.message === error.message);
    assert.equal(e.errorKind(revived), 'bundle');
  }
  const manifest = { files: {} };
  assert.equal(f.checkManifest(manifest, 'm'), manifest); // no `format`: the current version
});
