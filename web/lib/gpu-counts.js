// Opt-in counts of one GPUDevice's work (loadJanus's `countGpuWork`): compute dispatches, queue submits, GPU->CPU
// reads (GPUBuffer.mapAsync) and the bytes they map. Only the instance's own device is wrapped (own properties
// on that device, its queue and the objects it creates); no prototype is touched, so other devices, other
// instances and the rest of the page are not affected.

/**
 * @typedef {object} GpuCounts
 * @property {number} dispatches compute passes' dispatchWorkgroups / dispatchWorkgroupsIndirect calls
 * @property {number} submits queue.submit calls
 * @property {number} reads mapAsync calls (GPU->CPU reads)
 * @property {number} readBytes bytes those calls map
 */

/** @returns {GpuCounts} */
export const zeroCounts = () => ({ dispatches: 0, submits: 0, reads: 0, readBytes: 0 });

/** b - a, field by field. @param {GpuCounts} b @param {GpuCounts} a @returns {GpuCounts} */
export function countsSince(b, a) {
  return { dispatches: b.dispatches - a.dispatches, submits: b.submits - a.submits, reads: b.reads - a.reads,
    readBytes: b.readBytes - a.readBytes };
}

/**
 * Wrap `object[name]` (an own property shadowing the prototype's method) so that `before` sees each call's
 * arguments and `after` its result.
 * @param {any} object @param {string} name @param {(args: any[]) => void} before @param {(result: any) => void} [after]
 */
function wrap(object, name, before, after) {
  const original = object[name];
  Object.defineProperty(object, name, {
    configurable: true, writable: true,
    value: (/** @type {any[]} */ ...args) => {
      before(args);
      const result = original.apply(object, args);
      after?.(result);
      return result;
    },
  });
}

/**
 * Count `device`'s work from now on; returns the live counts.
 * @param {GPUDevice} device
 * @returns {GpuCounts}
 */
export function countGpuWork(device) {
  const counts = zeroCounts();
  const none = () => undefined;
  wrap(device.queue, 'submit', () => { counts.submits++; });
  wrap(device, 'createBuffer', none, (/** @type {GPUBuffer} */ buffer) => {
    wrap(buffer, 'mapAsync', (args) => {
      counts.reads++;
      counts.readBytes += args[2] ?? buffer.size - (args[1] ?? 0);
    });
  });
  wrap(device, 'createCommandEncoder', none, (/** @type {GPUCommandEncoder} */ encoder) => {
    wrap(encoder, 'beginComputePass', none, (/** @type {GPUComputePassEncoder} */ pass) => {
      wrap(pass, 'dispatchWorkgroups', () => { counts.dispatches++; });
      wrap(pass, 'dispatchWorkgroupsIndirect', () => { counts.dispatches++; });
    });
  });
  return counts;
}
