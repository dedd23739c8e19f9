// Builds the static page: bundles ui.js (page) and worker.js (inference worker) with esbuild, copies the
// HTML/CSS and ONNX Runtime's wasm files for its WebGPU build (served from the site, never from a CDN).
//   node web/build.mjs [--outdir DIR]     (default web/dist)

import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const outIndex = args.indexOf('--outdir');
const outdir = path.resolve(outIndex >= 0 ? args[outIndex + 1] : path.join(here, 'dist'));

// onnxruntime-web/webgpu with external wasm: ort.webgpu.min.mjs loads these two files from env.wasm.wasmPaths.
const ORT_FILES = ['ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm'];
const ortDist = path.dirname(createRequire(import.meta.url).resolve('onnxruntime-web/webgpu'));

await rm(outdir, { recursive: true, force: true });
await mkdir(path.join(outdir, 'ort'), { recursive: true });
await build({
  entryPoints: ['ui.js', 'worker.js', 'bench.js', 'kernels.js'].map((f) => path.join(here, f)),
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
for (const f of ['index.html', 'bench.html', 'kernels.html', 'style.css']) await copyFile(path.join(here, f), path.join(outdir, f));
for (const f of ORT_FILES) await copyFile(path.join(ortDist, f), path.join(outdir, 'ort', f));
