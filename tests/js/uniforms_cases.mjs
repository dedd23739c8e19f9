// The page's seeded draws for [seed, count, offset] cases, for tests/test_web_units.py (which compares with
// janusweb.sampling.uniforms): node uniforms_cases.mjs IN.json -> [[draws...], ...] on stdout.
import fs from 'node:fs';

import { uniforms } from '../../web/lib/sampling.js';

const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
console.log(JSON.stringify(cases.map((/** @type {number[]} */ [s, n, o]) => Array.from(uniforms(s, n, o)))));
