// Manifests for the page's unit tests, written as `janusweb export` / `quantize` write them (not a test file).

/** The dtype table the export writes into manifest.json: dtype -> file suffix, page label, bits, adapter need. */
export const DTYPES = {
  fp32: { suffix: '', label: 'fp32', bits: 32, requires: null },
  int8: { suffix: '_int8', label: 'int8', bits: 8, requires: null },
  q4: { suffix: '_q4', label: '4-bit', bits: 4, requires: null },
  fp16: { suffix: '_fp16', label: 'fp16', bits: 16, requires: 'shader-f16' },
};

/**
 * A manifest entry: the base (fp32) file and one variant per dtype, named as the export names them.
 * @param {string} name
 * @param {string[]} dtypes
 * @param {{external?: boolean}} [opts]
 */
export function graph(name, dtypes, { external = false } = {}) {
  const files = (/** @type {string} */ suffix) => ({
    [`onnx/${name}${suffix}.onnx`]: { bytes: 10, sha256: '0'.repeat(64) },
    ...(external ? { [`onnx/${name}${suffix}.onnx_data`]: { bytes: 90, sha256: '1'.repeat(64) } } : {}),
  });
  const variants = Object.fromEntries(dtypes.map((d) => [d, { dtype: d, files: files(DTYPES[d].suffix),
    quantization: { bits: DTYPES[d].bits } }]));
  return { dtype: 'fp32', files: files(''), variants };
}

/**
 * Resolve an engine for each [requested, ep, dtype] case: the engine's name, its graphs and note, or the error.
 * @param {object} manifest
 * @param {[string, string, string][]} cases
 */
export async function resolveCases(manifest, cases) {
  const { resolveEngine } = await import('../../web/lib/engines/engine.js');
  const errors = await import('../../web/lib/errors.js');
  return Object.fromEntries(cases.map(([requested, ep, dtype]) => {
    let out;
    try {
      const r = resolveEngine(requested, manifest, { ep }, dtype);
      out = { engine: r.spec.name, graphs: r.plan.graphs, note: r.note };
    } catch (e) {
      out = { error: e.message, kind: e.kind, input: e instanceof errors.InputError };
    }
    return [`${requested} ${ep} ${dtype}`, out];
  }));
}
