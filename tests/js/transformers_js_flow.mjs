// transformers.js used on a janusweb bundle with the calls of its own Janus-Pro example (janus-pro-webgpu's
// worker): a chat turn with an image (the image in the message, TextStreamer, InterruptableStoppingCriteria,
// model.generate with do_sample false) and a text-to-image turn (the text_to_image template, a progress streamer,
// model.generate_images with min_new_tokens = max_new_tokens = processor.num_image_tokens and do_sample true).
// The one argument added to the example's calls: guidance_scale null on the chat's generate (the bundle's
// generation_config.json carries guidance_scale 5 for images, and transformers.js applies it to every generate).
// transformers.js's global random generator is seeded first (random.seed: MT19937, as Python's random.seed), so
// the sampled image can be checked against a reference. Reads a JSON request on stdin, writes JSON on stdout.
//
// request: {bundle, dtype, question, prompt, max_new_tokens, seed, image: {width, height, data: [r,g,b,...]}}
// answer: {understanding: {input_ids, images_seq_mask, pixel_values: {dims, data}, tokens, text},
//          text_to_image: {input_ids, tokens, progress: [count...], image: {width, height, channels, data}}}
import path from 'node:path';
import { readFileSync } from 'node:fs';
import {
  env, random, AutoProcessor, BaseStreamer, InterruptableStoppingCriteria, MultiModalityCausalLM, RawImage,
  TextStreamer,
} from '@huggingface/transformers';

const request = JSON.parse(readFileSync(0, 'utf8'));
const bundle = path.resolve(request.bundle);
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = path.dirname(bundle) + path.sep;
const name = path.basename(bundle);

const processor = await AutoProcessor.from_pretrained(name);
const model = await MultiModalityCausalLM.from_pretrained(name, { dtype: request.dtype });
const numbers = (tensor) => Array.from(tensor.data, Number);

// chat with an image, as the example sends it
const image = new RawImage(Uint8ClampedArray.from(request.image.data), request.image.width, request.image.height, 3);
const inputs = await processor([
  { role: '<|User|>', content: '<image_placeholder>\n' + request.question, images: [image] },
]);
let text = '';
const tokenIds = [];
const streamer = new TextStreamer(processor.tokenizer, {
  skip_prompt: true,
  skip_special_tokens: true,
  callback_function: (output) => { text += output; },
  token_callback_function: (ids) => { tokenIds.push(...ids.map(Number)); },
});
const stopping_criteria = new InterruptableStoppingCriteria();
await model.generate({
  ...inputs,
  max_new_tokens: request.max_new_tokens,
  do_sample: false,
  streamer,
  stopping_criteria,
  guidance_scale: null,
});
const understanding = {
  input_ids: numbers(inputs.input_ids),
  images_seq_mask: numbers(inputs.images_seq_mask),
  pixel_values: { dims: inputs.pixel_values.dims, data: numbers(inputs.pixel_values) },
  tokens: tokenIds,
  text,
};

// text to image, as the example draws it
class ProgressStreamer extends BaseStreamer {
  constructor(total, onProgress) {
    super();
    this.total = total;
    this.onProgress = onProgress;
    this.count = null;
  }

  put(value) {
    if (this.count === null) { // the first put is the prompt
      this.count = 0;
      return;
    }
    this.count++;
    this.onProgress({ count: this.count, total: this.total, token: Number(value.flat(Infinity)[0]) });
  }

  end() {}
}
random.seed(request.seed);
const t2i = await processor([{ role: '<|User|>', content: request.prompt }], { chat_template: 'text_to_image' });
const num_image_tokens = processor.num_image_tokens;
const steps = [];
const outputs = await model.generate_images({
  ...t2i,
  min_new_tokens: num_image_tokens,
  max_new_tokens: num_image_tokens,
  do_sample: true,
  streamer: new ProgressStreamer(num_image_tokens, (p) => steps.push(p)),
});
const img = outputs[0];
process.stdout.write(JSON.stringify({
  understanding,
  text_to_image: { input_ids: numbers(t2i.input_ids), tokens: steps.map((s) => s.token),
                   progress: steps.map((s) => s.count),
                   image: { width: img.width, height: img.height, channels: img.channels, data: Array.from(img.data) } },
}) + '\n');
await model.dispose();
