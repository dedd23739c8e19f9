// Builds the static page: bundles app/ui.js (page) and lib/worker.js (inference worker) with esbuild, and copies the
// HTML/CSS and ONNX Runtime's wasm files for its WebGPU build (served from the site, never from a CDN), with their
// sizes in ort/files.json (the page shows the download before it starts). With --bench, the benchmark pages too
// (bench.html, quality.html, kernels.html, tjs-bench.html with transformers.js's own ORT in ort-tjs/, wllama-bench.html with
// llama.cpp's wasm in wllama/): `janusweb bench` builds them, the demo site (`janusweb build-web`) does not carry them.
//   node web/build.mjs [--outdir DIR] [--bench]     (default web/dist)
// With --assets, only the library's own files (ort/: ONNX Runtime's wasm and its sizes; cpu/: the CPU engine's
// kernels and helper thread), which the npm package ships and an app serves beside its bundle:
//   node web/build.mjs --assets DIR                 (npm pack runs it: DIR = web/assets)

import { build } from 'esbuild';
import { copyFile, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const outIndex = args.indexOf('--outdir'), assetsIndex = args.indexOf('--assets');
const assetsOnly = assetsIndex >= 0;
const outdir = path.resolve(assetsOnly ? args[assetsIndex + 1]
  : outIndex >= 0 ? args[outIndex + 1] : path.join(here, 'dist'));
const withBench = args.includes('--bench');

// onnxruntime-web/webgpu with external wasm: ort.webgpu.min.mjs loads these two files from env.wasm.wasmPaths.
const ORT_FILES = ['ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm'];
const require = createRequire(import.meta.url);
const ortDist = path.dirname(require.resolve('onnxruntime-web/webgpu'));

// transformers.js, the benchmark's comparison backend (tjs-bench.html, a devDependency), brings its own
// onnxruntime-web build; its wasm files go to ort-tjs/. Without it the comparison page is left out.
let tjsOrtDist = null;
if (withBench) try {
  const tjsRequire = createRequire(require.resolve('@huggingface/transformers'));
  tjsOrtDist = path.dirname(tjsRequire.resolve('onnxruntime-web/webgpu'));
} catch {
  console.warn('@huggingface/transformers is not installed: building without tjs-bench.html');
}
// llama.cpp's WebAssembly build (@wllama/wllama, a devDependency): the peer row's page, its one .wasm to wllama/.
let wllamaWasm = null;
if (withBench) try {
  wllamaWasm = path.join(path.dirname(require.resolve('@wllama/wllama/package.json')), 'esm', 'wasm', 'wllama.wasm');
} catch {
  console.warn('@wllama/wllama is not installed: building without wllama-bench.html');
}
// The site's flat layout: each output path (without .js) -> its source. The demo page and its worker (app/), the
// CPU engine's helper thread (lib/), and with --bench the benchmark pages (bench-pages/).
/** @type {Record<string, string>} */
const entries = assetsOnly ? {} : {
  ui: 'app/ui.js', worker: 'app/worker.js',
  ...(withBench ? { bench: 'bench-pages/bench.js', kernels: 'bench-pages/kernels.js',
    'cpu/bench': 'bench-pages/cpu-kernels.js', quality: 'bench-pages/quality.js' } : {}),
  ...(tjsOrtDist ? { 'tjs-bench': 'bench-pages/tjs-bench.js' } : {}),
  ...(wllamaWasm ? { 'wllama-bench': 'bench-pages/wllama-bench.js' } : {}),
};
// Static files: output path -> source.
const statics = {
  'cpu/thread.js': 'lib/engines/cpu/thread.js', // no imports: served as it is
  ...(assetsOnly ? {} : { 'index.html': 'app/index.html', 'style.css': 'app/style.css' }),
  ...Object.fromEntries(Object.entries(entries).filter(([, src]) => src.startsWith('bench-pages/'))
    .map(([out, src]) => [`${out}.html`, src.replace(/\.js$/, '.html')])),
};
// The CPU engine's kernels (lib/engines/cpu/build.py, run by make setup) go to cpu/ beside its helper thread.
const CPU_KERNELS = [...['', '-m64'].flatMap((width) => ['kernels', 'kernels-relaxed', 'kernels-mt', 'kernels-mt-relaxed']
  .map((name) => `${name}${width}.wasm`)), ...(withBench ? ['peak.wasm', 'peak-relaxed.wasm'] : [])]; // + the benchmark's SIMD peak (cpu/peak.c)
const cpuDist = path.join(here, 'lib', 'engines', 'cpu', 'dist');

await rm(outdir, { recursive: true, force: true });
await mkdir(path.join(outdir, 'ort'), { recursive: true });
await mkdir(path.join(outdir, 'cpu'), { recursive: true });
if (Object.keys(entries).length) await build({
  entryPoints: Object.entries(entries).map(([out, src]) => ({ in: path.join(here, src), out })),
  outdir,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  conditions: ['onnxruntime-web-use-extern-wasm'],
  minify: true,
  sourcemap: true,
  logLevel: 'warning',
});
for (const [out, src] of Object.entries(statics)) await copyFile(path.join(here, src), path.join(outdir, out));
for (const f of ORT_FILES) await copyFile(path.join(ortDist, f), path.join(outdir, 'ort', f));
for (const f of CPU_KERNELS) {
  await copyFile(path.join(cpuDist, f), path.join(outdir, 'cpu', f)).catch(() => {
    throw new Error(`web/lib/engines/cpu/dist/${f} is missing: build the CPU engine's kernels (make setup, or python web/lib/engines/cpu/build.py)`);
  });
}
const sizes = Object.fromEntries(await Promise.all(ORT_FILES.map(async (f) =>
  [f, (await stat(path.join(outdir, 'ort', f))).size])));
await writeFile(path.join(outdir, 'ort', 'files.json'), JSON.stringify(sizes));
if (wllamaWasm) {
  await mkdir(path.join(outdir, 'wllama'));
  await copyFile(wllamaWasm, path.join(outdir, 'wllama', 'wllama.wasm'));
}
if (tjsOrtDist) {
  await mkdir(path.join(outdir, 'ort-tjs'));
  for (const f of ORT_FILES) await copyFile(path.join(tjsOrtDist, f), path.join(outdir, 'ort-tjs', f));
}
