import { loadJanus, createJanusWorker } from 'janusweb';

// Chat about an image, then draw one: on this thread, or in a worker (worker.js) with the same calls.
export async function demo(modelUrl, image, { inWorker = false, backend = 'auto' } = {}) {
  const api = inWorker ? createJanusWorker(new Worker(new URL('./worker.js', import.meta.url), { type: 'module' }))
    : { loadJanus };
  const janus = await api.loadJanus(modelUrl, { backend, onProgress: (p) => console.log(p.what, p.name) });
  const reply = await janus.chat.completions.create({ max_tokens: 8, messages: [{ role: 'user', content: [
    { type: 'image', image }, { type: 'text', text: 'Describe this image.' }] }] });
  const { data } = await janus.images.generate({ prompt: 'A watercolor painting of mountains at sunset.', seed: 7 });
  const info = janus.info;
  await janus.release();
  return { answer: reply.choices[0].message.content, image: data[0].image, tokens: data[0].tokens, info };
}
