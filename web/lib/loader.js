// Bundle files: fetched with per-file progress, kept in the Cache API when it is available, and verified
// against the manifest's sha256 before use. A mismatch is an error (ChecksumError); a cached copy that fails
// verification is dropped and fetched once more from the network, never in a loop.

import { graphFiles } from './dtypes.js';
import { ChecksumError, DownloadError } from './errors.js';
import { checkManifest } from './formats.js';

const CACHE_NAME = 'janusweb-bundle-v1';

/** @typedef {{bytes: number, sha256: string, sri?: string}} FileEntry */
/**
 * @typedef {object} Manifest
 * @property {Record<string, FileEntry>} files
 * @property {Record<string, any>} graphs
 * @property {Record<string, import('./dtypes.js').DtypeInfo>} [dtypes] dtype -> label, bits, adapter requirement
 */

/** @param {ArrayBuffer|Uint8Array<ArrayBuffer>} data */
async function sha256Hex(data) {
  if (!crypto.subtle) throw new Error('crypto.subtle is unavailable (not a secure context): cannot verify files');
  const digest = await crypto.subtle.digest('SHA-256', data);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The Cache API, or null where it is unavailable (insecure context, disabled storage). */
async function openCache() {
  if (typeof caches === 'undefined') return null;
  try {
    return await caches.open(CACHE_NAME);
  } catch {
    return null; // storage disabled (e.g. private mode): downloads still work, uncached
  }
}

const RESUME_TRIES = 5; // consecutive attempts without progress before a download gives up

/** @param {number} failures */
const backoff = (failures) => new Promise((resolve) => setTimeout(resolve, 250 * 2 ** failures));

/**
 * One file into a buffer of the manifest's size. A connection that breaks (or ends early) is resumed from the
 * bytes already received with a Range request (If-Range: the file's ETag, so a file changed in between is
 * fetched whole); a server that answers 200 instead of 206 sends the whole file again. What `onProgress` throws
 * (an aborted load) ends the download at once and is thrown as it is.
 * @param {string} url
 * @param {number} expected bytes
 * @param {(loaded: number) => void} onProgress
 */
export async function download(url, expected, onProgress) {
  const out = new Uint8Array(expected);
  /** @type {{error: unknown}|null} */
  let stopped = null;
  const progress = (/** @type {number} */ n) => {
    try {
      onProgress(n);
    } catch (e) {
      stopped = { error: e };
      throw e;
    }
  };
  let loaded = 0;
  let failures = 0;
  /** @type {string|null} */
  let etag = null;
  /** @type {unknown} */
  let lastError = null;
  for (;;) {
    const start = loaded;
    /** @type {Record<string, string>} */
    const headers = start > 0 ? { Range: `bytes=${start}-`, ...(etag ? { 'If-Range': etag } : {}) } : {};
    /** @type {ReadableStreamDefaultReader<Uint8Array>|null} */
    let reader = null;
    try {
      const response = await fetch(url, { headers, cache: start > 0 ? 'no-store' : 'default' });
      if (response.status === 416) throw new DownloadError(`${url}: ${start} bytes, the manifest says ${expected}`);
      if (!response.ok) throw new DownloadError(`${url}: HTTP ${response.status}`);
      if (response.status === 206) {
        const from = Number(/^bytes (\d+)-/.exec(response.headers.get('Content-Range') ?? '')?.[1]);
        if (from !== start) throw new DownloadError(`${url}: asked for bytes from ${start}, got ${from}`);
      } else {
        loaded = 0; // 200: the whole file
      }
      etag = response.headers.get('ETag') ?? etag;
      reader = /** @type {ReadableStream<Uint8Array>} */ (response.body).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (loaded + value.length > expected) {
          throw new DownloadError(`${url}: larger than the manifest's ${expected} bytes`);
        }
        out.set(value, loaded);
        loaded += value.length;
        progress(loaded);
      }
      if (loaded === expected) return out;
    } catch (e) {
      if (stopped) {
        reader?.cancel().catch(() => undefined);
        throw stopped.error;
      }
      if (e instanceof DownloadError) throw e; // another attempt cannot fix it
      lastError = e; // the connection broke: resume below
    }
    failures = loaded > start ? 0 : failures + 1;
    if (failures >= RESUME_TRIES) {
      throw new DownloadError(`${url}: ${loaded} of the manifest's ${expected} bytes after ${RESUME_TRIES} tries`
        + (lastError ? ` (${lastError})` : ''));
    }
    await backoff(failures);
  }
}

export class BundleLoader {
  /**
   * @param {string} base URL of the bundle folder, ending with '/'
   * @param {(file: string, loaded: number, total: number, cached: boolean) => void} onProgress
   * @param {boolean} [useCache] keep files in the Cache API and read them from it (default true)
   */
  constructor(base, onProgress, useCache = true) {
    this.base = base;
    this.onProgress = onProgress;
    /** @type {Manifest|null} */
    this.manifest = null;
    this.cachePromise = useCache ? openCache() : Promise.resolve(null);
  }

  /** manifest.json, the root of trust: fetched fresh every time, its format checked (formats.js). */
  async loadManifest() {
    const response = await fetch(this.base + 'manifest.json', { cache: 'no-store' });
    if (!response.ok) throw new Error(`${this.base}manifest.json: HTTP ${response.status} (is this a janusweb bundle?)`);
    this.manifest = checkManifest(await response.json(), `${this.base}manifest.json`);
    return /** @type {Manifest} */ (this.manifest);
  }

  /**
   * One file of the manifest, verified.
   * @param {string} rel path relative to the bundle
   * @returns {Promise<Uint8Array>}
   */
  async file(rel) {
    const entry = this.manifest?.files[rel];
    if (!entry) throw new Error(`${rel} is not in the bundle's manifest`);
    const cache = await this.cachePromise;
    const key = `${this.base}${rel}?sha256=${entry.sha256}`;
    const cached = cache ? await cache.match(key) : undefined;
    if (cached) {
      const data = new Uint8Array(await cached.arrayBuffer());
      if ((await sha256Hex(data)) === entry.sha256) {
        this.onProgress(rel, entry.bytes, entry.bytes, true);
        return data;
      }
      await /** @type {Cache} */ (cache).delete(key); // a corrupted cache entry: fetch it once from the network
    }
    const data = await download(this.base + rel, entry.bytes, (n) => this.onProgress(rel, n, entry.bytes, false));
    const actual = await sha256Hex(data);
    if (actual !== entry.sha256) throw new ChecksumError(rel, entry.sha256, actual);
    if (cache) {
      await cache.put(key, new Response(data)).catch(() => undefined); // quota exceeded: keep going uncached
    }
    return data;
  }

  /** The files of `rels` already in the Cache API at their manifest's checksum (not verified here). @param {string[]} rels */
  async cachedFiles(rels) {
    const cache = await this.cachePromise;
    if (!cache) return [];
    const hits = await Promise.all(rels.map((rel) =>
      cache.match(`${this.base}${rel}?sha256=${this.manifest?.files[rel]?.sha256}`).then((r) => !!r)));
    return rels.filter((_, i) => hits[i]);
  }

  /**
   * The tensors of an engine pack (pack/parts.py: a JSON and its .bin parts, each a file of the manifest),
   * fetched and verified part by part, in order: `use` gets each tensor's bytes from the part that holds it, and
   * the part is let go before the next is fetched (the whole pack is never one buffer).
   * @param {{json: string, parts: string[]}} pack the manifest's entry
   * @param {{tensors: Record<string, {part: number, offset: number, bytes: number}>}} desc the pack's JSON
   * @param {(name: string, bytes: Uint8Array) => void} use
   */
  async packTensors(pack, desc, use) {
    const byPart = pack.parts.map(() => /** @type {string[]} */ ([]));
    for (const [name, t] of Object.entries(desc.tensors)) {
      if (!byPart[t.part]) throw new Error(`${pack.json}: ${name} is in part ${t.part}, which the manifest does not list`);
      byPart[t.part].push(name);
    }
    for (const [i, rel] of pack.parts.entries()) {
      const data = await this.file(rel);
      for (const name of byPart[i]) {
        const t = desc.tensors[name];
        if (t.offset + t.bytes > data.length) throw new Error(`${rel} is truncated at ${name}`);
        use(name, data.subarray(t.offset, t.offset + t.bytes));
      }
    }
  }

  /** @param {string} rel */
  async json(rel) {
    return JSON.parse(new TextDecoder().decode(await this.file(rel)));
  }

  /**
   * The files of one graph at one dtype (dtypes.js names them): the .onnx and its external data files.
   * @param {string} graph
   * @param {string} dtype
   * @returns {Promise<{model: Uint8Array, externalData: {path: string, data: Uint8Array}[]}>}
   */
  async graph(graph, dtype) {
    const { file: main, external } = graphFiles(/** @type {Manifest} */ (this.manifest), graph, dtype);
    const model = await this.file(main);
    const externalData = [];
    for (const rel of external) {
      externalData.push({ path: rel.split('/').pop() ?? rel, data: await this.file(rel) });
    }
    return { model, externalData };
  }
}
