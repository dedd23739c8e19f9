// The bundle's format versions, as janusweb/formats.py states them (tests/test_formats.py holds the two tables
// equal): manifest.json's and each engine pack's JSON. The library reads only the version it knows and refuses any
// other in one line (BundleFormatError, the same sentence as the Python readers'), before the files a manifest or
// pack lists are fetched. A file without a `format` field is read as the version below.

import { BundleFormatError } from './errors.js';

export const MANIFEST = 'janusweb-bundle/1';
/** engine -> its pack's version */
export const PACKS = Object.freeze({ wgsl: 'janusweb-wgsl/1', cpu: 'janusweb-cpu/4' });

/** A found value as Python's repr writes it (the refusal names it the way the Python readers do). @param {unknown} v */
function repr(v) {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'string') {
    const s = v.replaceAll('\\', '\\\\');
    return s.includes("'") && !s.includes('"') ? `"${s}"` : `'${s.replaceAll("'", "\\'")}'`;
  }
  return typeof v === 'number' ? String(v) : JSON.stringify(v);
}

/**
 * The one-line refusal: a newer version of the same name asks for a newer janusweb, anything else to write it again.
 * @param {string} where @param {string} what @param {unknown} found @param {string} known @param {string} again
 */
function refusal(where, what, found, known, again) {
  const cut = known.lastIndexOf('/');
  const name = known.slice(0, cut);
  const number = typeof found === 'string' && found.startsWith(`${name}/`) ? found.slice(cut + 1) : '';
  const newer = /^[0-9]+$/.test(number) && Number(number) > Number(known.slice(cut + 1));
  return `${where}: ${what} format ${repr(found)}, this janusweb reads ${known}; `
    + `${newer ? 'update janusweb to read it' : again}`;
}

/** The `format` of a parsed JSON file (the current version where it has none; null where it is not an object). */
const formatOf = (/** @type {unknown} */ json, /** @type {string} */ current) => {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return null;
  return 'format' in json ? /** @type {any} */ (json).format : current;
};

/**
 * The manifest, if its `format` is MANIFEST; BundleFormatError otherwise.
 * @template T @param {T} manifest @param {string} where its URL
 * @returns {T}
 */
export function checkManifest(manifest, where) {
  const found = formatOf(manifest, MANIFEST);
  if (found !== MANIFEST) {
    throw new BundleFormatError(refusal(where, 'manifest', found, MANIFEST, 'export the bundle again'));
  }
  return manifest;
}

/**
 * A pack's JSON, if its `format` is the engine's; BundleFormatError otherwise.
 * @template T @param {'cpu'|'wgsl'} engine @param {T} desc @param {string} where its URL @param {string} dtype
 * @returns {T}
 */
export function checkPack(engine, desc, where, dtype) {
  const found = formatOf(desc, PACKS[engine]);
  if (found !== PACKS[engine]) {
    throw new BundleFormatError(refusal(where, `${engine} pack`, found, PACKS[engine],
      `write it again: janusweb pack ${engine} BUNDLE --dtype ${dtype}`));
  }
  return desc;
}
