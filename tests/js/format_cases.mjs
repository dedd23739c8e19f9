// The library's format table and its answers for format cases, for tests/test_formats.py (which compares them with
// janusweb/formats.py): node format_cases.mjs IN.json, IN = [{what: 'manifest'|'cpu'|'wgsl', json, where, dtype?}]
// -> {MANIFEST, PACKS, answers: [{name, kind, message} | 'accepted', ...]} on stdout.
import fs from 'node:fs';

import { errorKind } from '../../web/lib/errors.js';
import { MANIFEST, PACKS, checkManifest, checkPack } from '../../web/lib/formats.js';

/** @param {{what: string, json: unknown, where: string, dtype?: string}} c */
function answer(c) {
  try {
    const back = c.what === 'manifest' ? checkManifest(c.json, c.where)
      : checkPack(/** @type {'cpu'|'wgsl'} */ (c.what), c.json, c.where, c.dtype ?? 'DTYPE');
    if (back !== c.json) throw new Error('the checked JSON is not the one given');
    return 'accepted';
  } catch (e) {
    return { name: /** @type {Error} */ (e).name, kind: errorKind(e), message: /** @type {Error} */ (e).message };
  }
}

const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
console.log(JSON.stringify({ MANIFEST, PACKS, answers: cases.map(answer) }));
