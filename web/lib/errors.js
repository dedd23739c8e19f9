// The library's errors, one class per kind, recognised by class (never by their text); every one is exported
// by index.js. `kind` is what an app shows (and what crosses a worker with the class's name: reviveError).
// ONNX Runtime's own errors are turned into these once, where a session is made or run (fromOrt).

/** @typedef {'checksum'|'backend'|'input'|'busy'|'bundle'|'other'} ErrorKind */

/** An error the library knows how to explain. */
export class JanuswebError extends Error {
  /** @returns {ErrorKind} */
  get kind() {
    return 'other';
  }
}

/** Bad input: a request, a URL parameter, or a bundle that lacks what was asked for. */
export class InputError extends JanuswebError {
  get kind() {
    return /** @type {const} */ ('input');
  }
}

/** The backend asked for cannot run here, or failed. */
export class BackendError extends JanuswebError {
  get kind() {
    return /** @type {const} */ ('backend');
  }
}

export const WASM_HEAP = 'ONNX Runtime Web keeps weights and activations in a WASM heap of at most 4 GB; use '
  + 'WebGPU, or a smaller dtype where the bundle has one';

/** The WASM heap (or the device) ran out of memory. */
export class OutOfMemoryError extends BackendError {
  /** @param {string} [what] where it ran out, in words */
  constructor(what = 'out of memory while running') {
    super(`${what}: ${WASM_HEAP}`);
  }
}

/** ONNX Runtime has no kernel on this backend for an operator of the graph (e.g. a quantized one). */
export class MissingKernelError extends BackendError {
  /** @param {string} op @param {string} message */
  constructor(op, message) {
    super(message);
    this.op = op;
  }
}

/** A WebGPU session that ORT could only place with some nodes on the CPU EP, made with that forbidden. */
export class CpuFallbackError extends BackendError {}

/** A downloaded (or cached) file whose sha256 is not the manifest's. */
export class ChecksumError extends JanuswebError {
  /** @param {string} file @param {string} expected @param {string} actual */
  constructor(file, expected, actual) {
    super(`checksum mismatch for ${file}: manifest sha256 ${expected}, downloaded file ${actual}`);
  }

  get kind() {
    return /** @type {const} */ ('checksum');
  }
}

/** A request made while another runs on the same instance (nothing was started). */
export class BusyError extends JanuswebError {
  constructor() {
    super('busy: wait for the current request or cancel it');
  }

  get kind() {
    return /** @type {const} */ ('busy');
  }
}

/** A bundle whose manifest or pack is of a format version this library does not read. */
export class BundleFormatError extends JanuswebError {
  get kind() {
    return /** @type {const} */ ('bundle');
  }
}

/** A file that could not be downloaded whole: HTTP error, wrong size or range, or a connection that kept breaking. */
export class DownloadError extends JanuswebError {}

/** A request cancelled through its AbortSignal inside the generation loops (callers see the signal's reason). */
export class Cancelled extends Error {
  constructor() {
    super('cancelled');
  }
}

// Each class by its name as a property key, which a minifier keeps (the page's and its worker's bundles rename the
// classes themselves, each its own way: a name read from the class would not cross the worker).
const CLASSES = { JanuswebError, InputError, BackendError, OutOfMemoryError, MissingKernelError, CpuFallbackError,
  ChecksumError, BusyError, BundleFormatError, DownloadError, Cancelled };
for (const [name, c] of Object.entries(CLASSES)) Object.defineProperty(c.prototype, 'name', { value: name });

/**
 * A thrown value as plain data that crosses a worker (structured clone keeps neither class nor getters).
 * @param {unknown} e
 * @returns {{name: string, message: string}}
 */
export function errorData(e) {
  if (e instanceof DOMException && e.name === 'AbortError') return { name: 'AbortError', message: e.message };
  return { name: e instanceof Error ? e.name : 'Error', message: e instanceof Error ? e.message : String(e) };
}

/**
 * The error errorData described, as its class again (an AbortError as a DOMException; an unknown name as Error).
 * @param {{name: string, message: string}} d
 */
export function reviveError(d) {
  if (d.name === 'AbortError') return new DOMException(d.message, 'AbortError');
  const e = new Error(d.message);
  const name = /** @type {keyof typeof CLASSES} */ (d.name);
  if (Object.hasOwn(CLASSES, name)) Object.setPrototypeOf(e, CLASSES[name].prototype);
  return e;
}

/**
 * ONNX Runtime's error as one of ours where its message says which (ORT throws plain Errors): std::bad_alloc,
 * a missing kernel, a CPU node in a session made with session.disable_cpu_ep_fallback. Others pass unchanged.
 * @param {unknown} e
 * @param {string} [what] for out of memory: where
 */
export function fromOrt(e, what) {
  const text = String(e);
  if (text.includes('bad_alloc')) return new OutOfMemoryError(what);
  const missing = text.match(/Could not find an implementation for (\w+)/);
  if (missing) return new MissingKernelError(missing[1], text);
  if (text.includes('fallback to CPU EP has been explicitly disabled')) return new CpuFallbackError(text);
  return e;
}

/** The kind of any thrown value. @param {unknown} e @returns {ErrorKind} */
export function errorKind(e) {
  return e instanceof JanuswebError ? e.kind : 'other';
}
