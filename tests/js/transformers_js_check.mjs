// Greedy generation with transformers.js (MultiModalityCausalLM, Node CPU backend = onnxruntime-node) on a
// janusweb bundle. Reads a JSON request on stdin, writes {"tokens": [...]} (the new token ids,
// stopping after EOS as janusweb.generate.generate_text does with eos_id) on stdout.
//
// request: {bundle, dtype (a string or {graph: dtype}), max_new_tokens, input_ids [[...]],
//           images_seq_mask [[...]] (bools), images_emb_mask {dims, data}, pixel_values {dims, data} | null}
//
// guidance_scale is passed as null: the bundle's generation_config.json carries Janus's guidance_scale 5 for
// image generation, and transformers.js applies it to any generate() (it doubles the batch with a pad-token
// unconditional row and mixes the logits), which is not greedy text decoding.
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { env, MultiModalityCausalLM, Tensor } from '@huggingface/transformers';

const request = JSON.parse(readFileSync(0, 'utf8'));
const bundle = path.resolve(request.bundle);

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = path.dirname(bundle) + path.sep;

const model = await MultiModalityCausalLM.from_pretrained(path.basename(bundle), { dtype: request.dtype });

const ids = request.input_ids;
const seq = ids[0].length;
const inputs = {
  input_ids: new Tensor('int64', BigInt64Array.from(ids.flat().map(BigInt)), [ids.length, seq]),
  attention_mask: new Tensor('int64', new BigInt64Array(ids.length * seq).fill(1n), [ids.length, seq]),
  images_seq_mask: new Tensor('bool', Uint8Array.from(request.images_seq_mask.flat().map(Number)), [ids.length, seq]),
  images_emb_mask: new Tensor('bool', Uint8Array.from(request.images_emb_mask.data.map(Number)),
                              request.images_emb_mask.dims),
};
if (request.pixel_values) {
  inputs.pixel_values = new Tensor('float32', Float32Array.from(request.pixel_values.data), request.pixel_values.dims);
}

const out = await model.generate({
  ...inputs,
  max_new_tokens: request.max_new_tokens,
  do_sample: false,
  guidance_scale: null,
});
const tokens = Array.from(out.slice(0, [seq, null]).data, Number);
process.stdout.write(JSON.stringify({ tokens }) + '\n');
await model.dispose();
