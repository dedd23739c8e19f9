// The page's image preprocessing of raw RGBA bytes, for tests/test_web_units.py (which compares with
// janusweb.image.preprocess): node preprocess_rgba.mjs IN.json, IN.json = {file, w, h, cfg, out}; writes float32.
import fs from 'node:fs';

import { preprocess } from '../../web/lib/preprocess.js';

const { file, w, h, cfg, out } = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
fs.writeFileSync(out, preprocess(new Uint8Array(fs.readFileSync(file)), w, h, cfg));
console.log('{}');
