// Runs the CPU engine's kernels (web/lib/engines/cpu) under Node for tests/test_cpu_kernels.py:
//   node cpu_check.mjs DIR    DIR/spec.json says what to run on DIR's .bin inputs; outputs go to DIR/out.bin.
// spec: {wasm, threads, op: 'matmul'|'gate_up'|'rmsnorm', ...shapes} on x.bin, w*.bin, s*.bin, y.bin (the
// starting output, for mode add), or {op: 'decoder', pack, calls: [S, ...], rows, capacity} on embeds.bin (head: true gives
// lm_head's logits of each call's positions instead of its hidden states; interleave: true runs another state
// between the calls, released each time); the heads (heads.c / heads.js):
// {op: 'embed_rows', dtype, M, H} on table.bin, s.bin, ids.bin (uint32); {op: 'bias_act', M, N, gelu} on y.bin,
// b.bin; {op: 'cfg_sample', n, V, guidance, temperature} on logits.bin, u.bin (the tokens, as floats); and
// {op: 'heads', pack, threads, n, guidance, temperature} on a cpu-pack's pack: ids.bin's token embeddings, then
// image steps, one per [2n, H] block of hidden.bin with u.bin's [steps, n] draws (out: the embeddings, then for
// each step its n tokens (as floats) and their [n, H] next embeddings); {op: 'vision', pack, threads} on a
// cpu-pack's pack: the vision tower's features [T, H] of pixels.bin [3, S, S]; {op: 'vq', pack, threads, n}: the VQ
// decoder's pixels [n, 3, S, S] of tokens.bin (uint32 [n, T]).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { CpuRuntime, DTYPE } from '../../web/lib/engines/cpu/runtime.js';
import { CpuModel, memoryNeeded } from '../../web/lib/engines/cpu/model.js';
import { CpuVision, visionBuffers, visionTableBytes } from '../../web/lib/engines/cpu/vision.js';
import { CpuVq, vqAllocations, vqBuffers } from '../../web/lib/engines/cpu/vq.js';

const dir = process.argv[2];
const spec = JSON.parse(readFileSync(path.join(dir, 'spec.json'), 'utf8'));
const file = (/** @type {string} */ name) => new Uint8Array(readFileSync(path.join(dir, name)));
const kernels = readFileSync(spec.wasm);
const thread = new URL('../../web/lib/engines/cpu/thread.js', import.meta.url);
const spawn = (/** @type {number} */ _t, /** @type {any} */ init) => new Promise((resolve) => {
  const w = new Worker(thread);
  w.once('message', () => resolve(w));
  w.postMessage(init);
});

/**
 * What fills each of a pack's tensors for CpuModel, from the part that holds it (pack/parts.py: PACK.0.bin, ...),
 * read once.
 * @param {string} pack @param {any} desc
 */
const packBytes = (pack, desc) => {
  const parts = new Map();
  return (/** @type {string} */ name, /** @type {Uint8Array} */ into) => {
    const t = desc.tensors[name];
    if (!parts.has(t.part)) parts.set(t.part, new Uint8Array(readFileSync(`${pack}.${t.part}.bin`)));
    into.set(parts.get(t.part).subarray(t.offset, t.offset + t.bytes));
  };
};

/**
 * What memoryNeeded() counts for a part against what the part's constructor takes from the allocator (a second
 * instance, made after the first): a buffer left out of the plan would make the engine reserve too little.
 * @param {CpuRuntime} rt @param {() => unknown} make @param {number[]} plan bytes of each buffer @param {string} what
 */
function withinPlan(rt, make, plan, what) {
  const before = rt.top;
  make();
  const took = rt.top - before, planned = plan.reduce((s, n) => s + n + 64, 0);
  if (took > planned || took < planned - 64 * plan.length) {
    throw new Error(`the ${what} took ${took} bytes of the engine's memory where memoryNeeded() plans ${planned}`);
  }
}

let out;
if (spec.op === 'decoder') {
  const desc = JSON.parse(readFileSync(spec.pack + '.json', 'utf8'));
  const rt = await CpuRuntime.create(kernels, spec.threads, memoryNeeded(desc, spec.rows, spec.capacity), spawn);
  const model = new CpuModel(rt, desc, packBytes(spec.pack, desc));
  const state = model.newState(spec.rows, spec.capacity);
  const embeds = new Float32Array(file('embeds.bin').buffer);
  const parts = [];
  let used = 0, top = 0;
  const H = desc.hidden_size;
  for (const S of spec.calls) {
    // embeds.bin holds each call's [rows, S, H] one after the other
    const { hidden } = state.forward(embeds.subarray(used, used + spec.rows * S * H), S);
    used += spec.rows * S * H;
    parts.push(spec.head ? model.logits(hidden, hidden.length / H) : hidden);
    if (spec.interleave) { // another request's state between the calls, released each time: its block is reused
      const other = model.newState(1, 8);
      other.forward(embeds.subarray(0, 3 * H).map((v) => -v), 3);
      other.release();
      if (top && rt.top !== top) throw new Error(`memory grew from ${top} to ${rt.top}: a freed block was not reused`);
      top = rt.top;
    }
  }
  state.release();
  rt.release();
  out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
} else if (spec.op === 'heads') {
  const desc = JSON.parse(readFileSync(spec.pack + '.json', 'utf8'));
  const rt = await CpuRuntime.create(kernels, spec.threads, memoryNeeded(desc, 1, 8), spawn);
  const model = new CpuModel(rt, desc, packBytes(spec.pack, desc));
  const heads = /** @type {any} */ (model.heads);
  const H = desc.hidden_size, n = spec.n;
  const hidden = new Float32Array(file('hidden.bin').buffer), u = new Float32Array(file('u.bin').buffer);
  const parts = [heads.embed(Array.from(new Uint32Array(file('ids.bin').buffer)))];
  for (let s = 0; s < u.length / n; s++) {
    const { tokens, embeds } = heads.imageStep(hidden.subarray(s * 2 * n * H), n, spec.guidance, spec.temperature,
      u.subarray(s * n));
    parts.push(Float32Array.from(tokens), embeds);
  }
  rt.release();
  out = new Float32Array(parts.reduce((k, p) => k + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
} else if (spec.op === 'vision') {
  const desc = JSON.parse(readFileSync(spec.pack + '.json', 'utf8'));
  const rt = await CpuRuntime.create(kernels, spec.threads, memoryNeeded(desc, 1, 8), spawn);
  const model = new CpuModel(rt, desc, packBytes(spec.pack, desc));
  out = /** @type {any} */ (model.vision).features(new Float32Array(file('pixels.bin').buffer));
  withinPlan(rt, () => new CpuVision(model), [...Object.values(visionBuffers(desc.vision, rt.threads)),
    visionTableBytes(desc.vision, rt.stride)], 'vision tower');
  rt.release();
} else if (spec.op === 'vq') {
  const desc = JSON.parse(readFileSync(spec.pack + '.json', 'utf8'));
  const rt = await CpuRuntime.create(kernels, spec.threads, memoryNeeded(desc, 1, 8), spawn);
  const model = new CpuModel(rt, desc, packBytes(spec.pack, desc));
  out = /** @type {any} */ (model.vq).decode(new Uint32Array(file('tokens.bin').buffer), spec.n);
  withinPlan(rt, () => new CpuVq(model), vqAllocations(vqBuffers(desc.vq, rt.threads, rt.stride)), 'VQ decoder');
  rt.release();
} else if (['embed_rows', 'bias_act', 'cfg_sample'].includes(spec.op)) {
  const rt = await CpuRuntime.create(kernels, 1, 1 << 24, null);
  const e = rt.exports;
  const put = (/** @type {string} */ name) => (spec.files.includes(name) ? rt.put(file(name)) : 0);
  if (spec.op === 'embed_rows') {
    const y = rt.alloc(4 * spec.M * spec.H);
    e.embed_rows(/** @type {any} */ (DTYPE)[spec.dtype], put('table.bin'), put('s.bin'), put('ids.bin'), spec.M, spec.H, y);
    out = rt.f32(y, spec.M * spec.H);
  } else if (spec.op === 'bias_act') {
    const y = put('y.bin');
    e.bias_act(y, put('b.bin'), spec.M, spec.N, spec.gelu);
    out = rt.f32(y, spec.M * spec.N);
  } else {
    const tokens = rt.alloc(4 * spec.n), z = rt.alloc(4 * spec.V), p = rt.alloc(8 * spec.V, 8);
    e.cfg_sample(put('logits.bin'), spec.n, spec.V, spec.guidance, spec.temperature, put('u.bin'), tokens, z, p);
    out = Float32Array.from(rt.u32(tokens, spec.n));
  }
} else {
  const rt = await CpuRuntime.create(kernels, 1, 1 << 24, null);
  const e = rt.exports;
  const put = (/** @type {string} */ name) => (spec.files.includes(name) ? rt.put(file(name)) : 0);
  const x = put('x.bin'), n = spec.N ?? spec.H;
  const y = spec.files.includes('y.bin') ? put('y.bin') : rt.alloc(4 * spec.M * n);
  const dtype = /** @type {any} */ (DTYPE)[spec.dtype ?? 'fp32'];
  // a MatMulNBits matrix into the kernels' order (qlayout.c), as the model does at load
  const matrix = (/** @type {string} */ name) => {
    const at = put(name);
    if (dtype !== DTYPE.fp32) e.repack(dtype, at, spec.K, 0, n);
    return at;
  };
  const [w, wg, wu] = spec.op === 'matmul' ? [matrix('w.bin'), 0, 0]
    : spec.op === 'gate_up' ? [0, matrix('wg.bin'), matrix('wu.bin')] : [put('w.bin'), 0, 0];
  for (const [a, b] of spec.splits) { // column ranges, as threads would share them
    if (spec.op === 'matmul') e.matmul(dtype, x, spec.M, spec.K, w, put('s.bin'), y, n, a, b, spec.mode);
    else if (spec.op === 'gate_up') {
      e.gate_up(dtype, x, spec.M, spec.K, wg, put('sg.bin'), wu, put('su.bin'), y, n, a, b);
    } else e.rmsnorm(x, w, y, spec.M, spec.H, spec.eps, a, b);
  }
  out = rt.f32(y, spec.M * n);
}
writeFileSync(path.join(dir, 'out.bin'), new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
