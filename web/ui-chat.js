// The chat form: an image (dropped or chosen) and a question; the answer streams in with its phases.

import { $, fail, phase, running, send, state, worker, workEnded } from './page.js';

/** @type {Blob|null} */
let image = null;
/** @param {Blob|null} blob */
function setImage(blob) {
  image = blob;
  $('preview').hidden = $('clear-image').hidden = !blob;
  if (blob) $('preview').src = URL.createObjectURL(blob);
}
$('image-input').onchange = () => setImage($('image-input').files[0] ?? null);
$('clear-image').onclick = () => setImage(null);
$('drop').ondragover = (/** @type {DragEvent} */ e) => { e.preventDefault(); $('drop').classList.add('over'); };
$('drop').ondragleave = () => $('drop').classList.remove('over');
$('drop').ondrop = (/** @type {DragEvent} */ e) => {
  e.preventDefault();
  $('drop').classList.remove('over');
  const file = [...(e.dataTransfer?.files ?? [])].find((f) => f.type.startsWith('image/'));
  if (file) setImage(file);
};

$('chat-form').onsubmit = (/** @type {Event} */ e) => {
  e.preventDefault();
  state.chat = { tokens: [], text: '', done: false, tokensPerSecond: 0 };
  $('answer').textContent = '';
  $('speed').textContent = '';
  running(true, 'ask', 'chat-cancel');
  const id = send({ type: 'generate', task: 'chat', question: $('question').value, image,
    maxNewTokens: Number($('max-tokens').value) }, (msg) => {
    if (msg.type === 'progress' && msg.what === 'phase') phase(`${msg.name}…`, 'speed');
    else if (msg.type === 'token') {
      state.chat.tokens.push(msg.token);
      $('answer').textContent = state.chat.text = msg.text;
      $('speed').textContent = `writing the answer… ${state.chat.tokens.length} tokens · ` +
        `${msg.tokensPerSecond.toFixed(1)} tokens/s`;
    } else if (msg.type === 'done') {
      Object.assign(state.chat, { done: true, tokensPerSecond: msg.tokensPerSecond, gpuReads: msg.gpuReads,
        firstTokenSeconds: msg.firstTokenSeconds });
      const first = msg.firstTokenSeconds == null ? '' : `first token after ${msg.firstTokenSeconds.toFixed(2)} s · `;
      $('speed').textContent = `${first}${msg.tokens?.length} tokens in ${msg.seconds?.toFixed(2)} s · ` +
        `decoding ${msg.tokensPerSecond?.toFixed(1)} tokens/s${msg.cancelled ? ' · cancelled' : ''}`;
      running(false, 'ask', 'chat-cancel');
      workEnded();
    } else if (msg.type === 'error') {
      fail(msg);
      running(false, 'ask', 'chat-cancel');
    }
  });
  $('chat-cancel').onclick = () => worker.postMessage({ type: 'cancel', id });
};

