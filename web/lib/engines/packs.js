// What the engines share about their packs: the manifest's entries (pack/parts.py: {json, parts: [.bin, ...]}) and
// the reading of a pack's JSON, its format checked (formats.js).

import { BundleFormatError } from '../errors.js';
import { PACKS, checkPack } from '../formats.js';

/** A pack listed the way packs were before parts ({bin, json}): the page asks for it to be made again. @param {any} pack */
export const staleFormat = (pack) => !Array.isArray(pack.parts);

/** "1 part" / "4 parts", for the status line. @param {{parts: string[]}} pack */
export const partsNote = (pack) => `${pack.parts.length} part${pack.parts.length > 1 ? 's' : ''}`;

/** The bytes of a pack's parts, from the manifest. @param {any} manifest @param {{parts: string[]}} pack */
export const packBytes = (manifest, pack) => pack.parts.reduce((n, rel) => n + (manifest.files?.[rel]?.bytes ?? 0), 0);

/**
 * The JSON of the pack the chosen engine's plan names (plan.data: the manifest's entry), its format checked, or null
 * for an engine that reads no pack. It is small and read with the plan, before any large file is fetched, so that a
 * pack of another format is refused before a download.
 * @param {import('../loader.js').BundleLoader} loader
 * @param {{engine: {spec: {name: string}, plan: {data?: any}}, dtype: string}} chosen the plan's (plan.js: sessionPlan)
 * @returns {Promise<any>}
 */
export async function readPack(loader, { engine, dtype }) {
  const name = engine.spec.name, rel = engine.plan.data?.json;
  if (!(name in PACKS) || typeof rel !== 'string') return null;
  const again = `write it again: janusweb pack ${name} BUNDLE --dtype ${dtype}`;
  let desc;
  try {
    desc = await loader.json(rel);
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e; // a download's or checksum's error is its own
    throw new BundleFormatError(`${loader.base}${rel}: cannot read the ${name} pack (SyntaxError); ${again}`);
  }
  return checkPack(/** @type {'cpu'|'wgsl'} */ (name), desc, loader.base + rel, dtype);
}
