// The chat: a conversation whose KV cache the worker keeps between turns (the next question is the only new
// prefill), its transcript on screen, an image attachable to any user turn, and "New chat". The answer streams in
// with its phases, time to the first token and decode speed.

import { $, fail, phase, running, send, state, worker, workEnded } from './page.js';

/** @type {Blob|null} */
let image = null;
let started = false; // whether the worker holds this transcript's conversation
/** @param {Blob|null} blob */
function setImage(blob) {
  image = blob;
  $('preview').hidden = $('clear-image').hidden = !blob;
  if (blob) $('preview').src = URL.createObjectURL(blob);
  if (!blob) $('image-input').value = '';
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

/** A transcript entry. @param {'user'|'assistant'|'note'} role @param {string} text @param {Blob|null} [picture] */
function entry(role, text, picture = null) {
  const div = Object.assign(document.createElement('div'), { className: `turn ${role}` });
  if (picture) {
    div.append(Object.assign(document.createElement('img'), { src: URL.createObjectURL(picture), alt: 'attached image' }));
  }
  div.append(Object.assign(document.createElement('p'), { textContent: text }));
  $('transcript').append(div);
  state.transcript.push({ role, text, image: !!picture });
  return /** @type {HTMLElement} */ (div.querySelector('p'));
}

$('new-chat').onclick = () => {
  started = false;
  $('transcript').replaceChildren();
  state.transcript = [];
  $('speed').textContent = '';
  setImage(null);
};

$('chat-form').onsubmit = (/** @type {Event} */ e) => {
  e.preventDefault();
  const question = $('question').value;
  state.chat = { tokens: [], text: '', done: false, tokensPerSecond: 0 };
  document.getElementById('answer')?.removeAttribute('id');
  entry('user', question, image);
  const answer = entry('assistant', '');
  answer.id = 'answer';
  $('speed').textContent = '';
  running(true, 'ask', 'chat-cancel');
  const id = send({ type: 'generate', task: 'chat', question, image, maxNewTokens: Number($('max-tokens').value),
    conversation: started ? 'continue' : 'new' }, (msg) => {
    if (msg.type === 'progress' && msg.what === 'phase') phase(`${msg.name}…`, 'speed');
    else if (msg.type === 'token') {
      state.chat.tokens.push(msg.token);
      answer.textContent = state.chat.text = msg.text;
      $('speed').textContent = `writing the answer… ${state.chat.tokens.length} tokens · ` +
        `${msg.tokensPerSecond.toFixed(1)} tokens/s`;
    } else if (msg.type === 'done') {
      started = true;
      state.transcript[state.transcript.length - 1].text = msg.text ?? '';
      Object.assign(state.chat, { done: true, tokensPerSecond: msg.tokensPerSecond, gpuReads: msg.gpuReads,
        firstTokenSeconds: msg.firstTokenSeconds, prefillTokens: msg.prefillTokens, reusedTokens: msg.reusedTokens });
      const first = msg.firstTokenSeconds == null ? '' : `first token after ${msg.firstTokenSeconds.toFixed(2)} s · `;
      const reused = msg.reusedTokens ? ` · ${msg.reusedTokens} earlier positions reused` : '';
      $('speed').textContent = `${first}${msg.tokens?.length} tokens in ${msg.seconds?.toFixed(2)} s · ` +
        `decoding ${msg.tokensPerSecond?.toFixed(1)} tokens/s${reused}${msg.cancelled ? ' · cancelled' : ''}`;
      running(false, 'ask', 'chat-cancel');
      workEnded();
    } else if (msg.type === 'error') {
      fail(msg);
      running(false, 'ask', 'chat-cancel');
      if (msg.kind !== 'busy' && started) {
        started = false; // the worker ended the conversation
        entry('note', 'The conversation could not go on; the next question starts a new chat.');
      }
    }
  });
  setImage(null); // the image belongs to this turn
  $('chat-cancel').onclick = () => worker.postMessage({ type: 'cancel', id });
};
