// planJanus (index.js) on a served bundle, for tests/test_formats.py: node plan_bundle.mjs IN.json, IN = {url,
// options} -> {files: [...]} (the plan's downloads) or {error: {name, kind, message}} on stdout.
import fs from 'node:fs';

import { errorKind, planJanus } from '../../web/lib/index.js';

// the browser's globals that the plan reads: a page not cross-origin isolated (1 thread), no deviceMemory
globalThis.self ??= globalThis;
globalThis.navigator ??= /** @type {any} */ ({});
const { url, options } = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
try {
  const plan = await planJanus(url, { assets: new URL('../../web/lib/', import.meta.url), ...options });
  console.log(JSON.stringify({ files: plan.files }));
} catch (e) {
  console.log(JSON.stringify({ error: { name: /** @type {Error} */ (e).name, kind: errorKind(e),
    message: /** @type {Error} */ (e).message } }));
}
