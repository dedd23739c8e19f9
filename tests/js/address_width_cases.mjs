// The CPU engine's address width at load for [[bytes, shared, force64], ...], for tests/test_web_units.py (run with
// and without Node's --experimental-wasm-memory64): node address_width_cases.mjs IN.json -> [width, ...].
import fs from 'node:fs';

import { addressWidth } from '../../web/lib/engines/cpu/memory64.js';

const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
console.log(JSON.stringify(cases.map((/** @type {[number, boolean, boolean]} */ [b, s, f]) => addressWidth(b, s, f))));
