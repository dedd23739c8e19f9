// One helper thread of the CPU engine (runtime.js): instantiates the kernels over the shared memory with a stack
// of its own, says so, then stays in thread_loop (returns on the exit job). In a browser a module Web Worker; in
// Node a worker_threads Worker (the tests). In the Memory64 build the stack pointer and the plan's address are
// i64 (BigInt here).

/** @param {{module: WebAssembly.Module, memory: WebAssembly.Memory, plan: number, tid: number, stack: number}} m */
async function start(m, /** @type {(msg: any) => void} */ post) {
  const instance = await WebAssembly.instantiate(m.module, { env: { memory: m.memory } });
  const exports = /** @type {any} */ (instance.exports);
  const address = typeof exports.__stack_pointer.value === 'bigint' ? BigInt : Number;
  exports.__stack_pointer.value = address(m.stack);
  post({ ready: m.tid });
  exports.thread_loop(address(m.plan), m.tid, 0);
}

const node = typeof /** @type {any} */ (globalThis).process?.versions?.node === 'string' && typeof self === 'undefined';
if (node) {
  const name = 'node:worker_threads';
  const { parentPort } = await import(/* @vite-ignore */ name);
  parentPort.once('message', (/** @type {any} */ m) => start(m, (msg) => parentPort.postMessage(msg)));
} else {
  self.onmessage = (e) => start(e.data, (msg) => self.postMessage(msg));
}

export {}; // a module (top-level await): loaded as a module worker
