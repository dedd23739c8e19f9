// transformers.js used on a janusweb bundle the way its own Janus example uses it: a conversation through
// AutoProcessor (the bundle's named chat templates), then model.generate (greedy text) and
// model.generate_images (CFG, greedy: do_sample false). Reads a JSON request on stdin, writes JSON on stdout.
//
// request: {bundle, dtype, question, prompt, max_new_tokens, image: {width, height, data: [r,g,b,...]} | null}
// answer: {understanding: {input_ids, images_seq_mask, pixel_values: {dims, data} | null, tokens},
//          text_to_image: {input_ids, tokens, image: {width, height, channels, data}}}
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { env, AutoProcessor, MultiModalityCausalLM, RawImage } from '@huggingface/transformers';

const request = JSON.parse(readFileSync(0, 'utf8'));
const bundle = path.resolve(request.bundle);
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = path.dirname(bundle) + path.sep;
const name = path.basename(bundle);

const processor = await AutoProcessor.from_pretrained(name);
const model = await MultiModalityCausalLM.from_pretrained(name, { dtype: request.dtype });
const numbers = (tensor) => Array.from(tensor.data, Number);

// understanding: the example's conversation, the image tag in the content
const image = request.image
  ? new RawImage(Uint8ClampedArray.from(request.image.data), request.image.width, request.image.height, 3)
  : null;
const content = image ? `<image_placeholder>\n${request.question}` : request.question;
const inputs = await processor([{ role: '<|User|>', content }], image ? { images: [image] } : {});
const seq = inputs.input_ids.dims[1];
const text = await model.generate({ ...inputs, max_new_tokens: request.max_new_tokens, do_sample: false,
                                    guidance_scale: null });
const understanding = {
  input_ids: numbers(inputs.input_ids),
  images_seq_mask: numbers(inputs.images_seq_mask),
  pixel_values: inputs.pixel_values ? { dims: inputs.pixel_values.dims, data: numbers(inputs.pixel_values) } : null,
  tokens: numbers(text.slice(0, [seq, null])),
};

// text to image: the example's call (min_new_tokens = max_new_tokens = the image's token count)
const t2i = await processor([{ role: '<|User|>', content: request.prompt }], { chat_template: 'text_to_image' });
const steps = [];
const streamer = { put: (ids) => steps.push(ids), end: () => undefined };
const count = model.config.janusweb.num_image_tokens;
const images = await model.generate_images({ ...t2i, min_new_tokens: count, max_new_tokens: count, do_sample: false,
                                             streamer });
const tokens = steps.slice(1).map((ids) => Number(ids.flat(Infinity)[0])); // the first put is the prompt
const img = images[0];
process.stdout.write(JSON.stringify({
  understanding,
  text_to_image: { input_ids: numbers(t2i.input_ids), tokens,
                   image: { width: img.width, height: img.height, channels: img.channels, data: Array.from(img.data) } },
}) + '\n');
await model.dispose();
