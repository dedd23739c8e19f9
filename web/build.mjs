// Builds the static page: bundles ui.js (page) and worker.js (inference worker) with esbuild, and copies the
// HTML/CSS and ONNX Runtime's wasm files for its WebGPU build (served from the site, never from a CDN), with their
// sizes in ort/files.json (the page shows the download before it starts). With --bench, the benchmark pages too
// (bench.html, kernels.html, tjs-bench.html with transformers.js's own ORT in ort-tjs/, wllama-bench.html with
// llama.cpp's wasm in wllama/): `janusweb bench` builds them, the demo site (`janusweb build-web`) does not carry them.
//   node web/build.mjs [--outdir DIR] [--bench]     (default web/dist)

import { build } from 'esbuild';
import { copyFile, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const outIndex = args.indexOf('--outdir');
const outdir = path.resolve(outIndex >= 0 ? args[outIndex + 1] : path.join(here, 'dist'));
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
const pages = ['ui.js', 'worker.js', ...(withBench ? ['bench.js', 'kernels.js'] : []),
  ...(tjsOrtDist ? ['tjs-bench.js'] : []), ...(wllamaWasm ? ['wllama-bench.js'] : [])];
// The CPU engine's kernels (web/cpu/build.py, run by make setup), its helper thread's script and (with --bench)
// its kernel benchmark page.
const CPU_KERNELS = ['kernels.wasm', 'kernels-relaxed.wasm', 'kernels-mt.wasm', 'kernels-mt-relaxed.wasm'];
const cpuDist = path.join(here, 'cpu', 'dist');
const cpuPages = ['cpu/thread.js', ...(withBench ? ['cpu/bench.js'] : [])];

await rm(outdir, { recursive: true, force: true });
await mkdir(path.join(outdir, 'ort'), { recursive: true });
await build({
  entryPoints: [...pages, ...cpuPages].map((f) => path.join(here, f)),
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
const html = [...pages.filter((f) => !['ui.js', 'worker.js'].includes(f)).map((f) => f.replace('.js', '.html')),
  'index.html'];
for (const f of [...html, 'style.css']) await copyFile(path.join(here, f), path.join(outdir, f));
for (const f of ORT_FILES) await copyFile(path.join(ortDist, f), path.join(outdir, 'ort', f));
if (withBench) await copyFile(path.join(here, 'cpu', 'bench.html'), path.join(outdir, 'cpu', 'bench.html'));
for (const f of CPU_KERNELS) {
  await copyFile(path.join(cpuDist, f), path.join(outdir, 'cpu', f)).catch(() => {
    throw new Error(`web/cpu/dist/${f} is missing: build the CPU engine's kernels (make setup, or python web/cpu/build.py)`);
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
