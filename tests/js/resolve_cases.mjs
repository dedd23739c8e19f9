// The engine resolver's answers for {manifest, cases: [[requested, ep, dtype], ...]}, for tests/test_web_units.py
// (run with and without Node's --experimental-wasm-memory64): node resolve_cases.mjs IN.json -> [answer, ...].
import fs from 'node:fs';

import { resolveCases } from './fixtures.mjs';

const { manifest, cases } = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const by = await resolveCases(manifest, cases);
console.log(JSON.stringify(cases.map((/** @type {string[]} */ c) => by[c.join(' ')])));
