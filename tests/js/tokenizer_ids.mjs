// The page's tokenizer on a corpus, for tests/test_web_units.py (which compares with Python's tokenizers):
// node tokenizer_ids.mjs IN.json -> {ids, special, understanding, textOnly, prompt, uncond} on stdout.
import fs from 'node:fs';

import { JanusTokenizer } from '../../web/lib/tokenizer.js';

const { dir, corpus } = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const read = (/** @type {string} */ f) => JSON.parse(fs.readFileSync(`${dir}/${f}`, 'utf8'));
const t = new JanusTokenizer(read('tokenizer.json'), read('tokenizer_config.json'));
const prompt = t.generationPrompt('  A red cube  ');
console.log(JSON.stringify({
  ids: corpus.map((/** @type {string} */ s) => t.encode(s)), special: t.ids,
  understanding: corpus.map((/** @type {string} */ q) => t.understandingInputs(q, 16, true)),
  textOnly: t.understandingInputs(' Why? ', 16, false), prompt, uncond: t.unconditional(prompt),
}));
