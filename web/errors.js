// The page's errors, one class per kind, recognised by class (never by their text). `kind` is what the worker's
// error reply carries and the page shows (protocol.js's ErrorMessage). ONNX Runtime's own errors are turned into
// these once, where a session is made or run (fromOrt).

/** An error the page knows how to explain. */
export class JanuswebError extends Error {
  /** @returns {'checksum'|'backend'|'input'|'other'} */
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

/** A request cancelled by the page (not an error: the reply says `cancelled`). */
export class Cancelled extends Error {
  constructor() {
    super('cancelled');
  }
}

for (const c of [JanuswebError, InputError, BackendError, OutOfMemoryError, MissingKernelError, CpuFallbackError,
  ChecksumError, Cancelled]) {
  Object.defineProperty(c.prototype, 'name', { value: c.name });
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

/** The reply's kind for any thrown value. @param {unknown} e */
export function errorKind(e) {
  return e instanceof JanuswebError ? e.kind : 'other';
}
