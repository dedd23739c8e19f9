// Small tensor helpers shared by the generation loop and the KV cache.

import * as ort from 'onnxruntime-web/webgpu';

/** @param {number[]|BigInt64Array} values @param {number[]} dims */
export const int64 = (values, dims) =>
  new ort.Tensor('int64', BigInt64Array.from(/** @type {ArrayLike<number|bigint>} */ (values), (v) => BigInt(v)), dims);

// What ONNX Runtime's own tensor buffers allow: bind as storage, copy in and out.
const BUFFER_USAGE = typeof GPUBufferUsage === 'undefined' ? 0
  : GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Release a GPU tensor (CPU tensors are left to the garbage collector). @param {ort.Tensor|undefined} t */
export function dispose(t) {
  if (t && t.location === 'gpu-buffer') t.dispose();
}

/**
 * A GPU buffer as a tensor that destroys the buffer when disposed; zero-filled, or holding `data`.
 * @param {GPUDevice} device
 * @param {'float32'|'int64'} type
 * @param {number[]} dims
 * @param {Float32Array<ArrayBuffer>|BigInt64Array<ArrayBuffer>} [data]
 */
export function gpuTensor(device, type, dims, data) {
  const bytes = dims.reduce((a, b) => a * b, 1) * (type === 'int64' ? 8 : 4);
  const buffer = device.createBuffer({ size: Math.max(16, bytes), usage: BUFFER_USAGE });
  if (data) device.queue.writeBuffer(buffer, 0, data);
  return ort.Tensor.fromGpuBuffer(buffer, { dataType: type, dims, dispose: () => buffer.destroy() });
}

/**
 * Positions [start, start+count) of a GPU tensor [B,S,H] as a new GPU tensor [B,count,H]: buffer-to-buffer
 * copies, never a read.
 * @param {GPUDevice} device
 * @param {ort.Tensor} t
 * @param {number} start
 * @param {number} count
 */
export function slicePositions(device, t, start, count) {
  const [B, S, H] = t.dims;
  const out = gpuTensor(device, 'float32', [B, count, H]);
  const encoder = device.createCommandEncoder();
  for (let b = 0; b < B; b++) {
    encoder.copyBufferToBuffer(t.gpuBuffer, (b * S + start) * H * 4, out.gpuBuffer, b * count * H * 4, count * H * 4);
  }
  device.queue.submit([encoder.finish()]);
  return out;
}

/** @param {{num_layers: number}} d @returns {string[]} the KV cache's tensor names, {layer}.{key,value} */
export function kvNames(d) {
  const names = [];
  for (let i = 0; i < d.num_layers; i++) for (const k of ['key', 'value']) names.push(`${i}.${k}`);
  return names;
}
