// What the engines share about their packs' manifest entries (pack/parts.py): {json, parts: [.bin, ...]}.

/** A pack listed the way packs were before parts ({bin, json}): the page asks for it to be made again. @param {any} pack */
export const staleFormat = (pack) => !Array.isArray(pack.parts);

/** "1 part" / "4 parts", for the status line. @param {{parts: string[]}} pack */
export const partsNote = (pack) => `${pack.parts.length} part${pack.parts.length > 1 ? 's' : ''}`;

/** The bytes of a pack's parts, from the manifest. @param {any} manifest @param {{parts: string[]}} pack */
export const packBytes = (manifest, pack) => pack.parts.reduce((n, rel) => n + (manifest.files?.[rel]?.bytes ?? 0), 0);
