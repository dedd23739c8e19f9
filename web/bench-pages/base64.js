// Float32 results as base64 text, the form a bench page hands its arrays back to Python in.

/** @param {Float32Array} x */
export function base64(x) {
  const bytes = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
