// The page's chat sampler (sampleToken) for [logits, temperature, draws] cases, for tests/test_web_units.py (which
// compares with janusweb.sampling.sample): node sample_token_cases.mjs IN.json -> [[token per draw...], ...].
import fs from 'node:fs';

import { sampleToken } from '../../web/lib/sampling.js';

const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
console.log(JSON.stringify(cases.map((/** @type {[number[], number, number[]]} */ [l, t, us]) =>
  us.map((u) => sampleToken(Float32Array.from(l), u, t)))));
