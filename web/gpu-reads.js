// GPU->CPU reads (GPUBuffer.mapAsync), counted so that each request can report how many it needed.

let reads = 0;
if (typeof GPUBuffer !== 'undefined') {
  const mapAsync = GPUBuffer.prototype.mapAsync;
  GPUBuffer.prototype.mapAsync = function (...args) {
    reads++;
    return mapAsync.apply(this, args);
  };
}

/** The buffer maps so far. */
export const gpuReads = () => reads;
