// The chat: a conversation whose KV cache the worker keeps between turns (the next question is the only new
// prefill), its transcript on screen, an image attachable to any user turn, and "New chat". The answer streams in
// with its phases, time to the first token and decode speed.

import { $, fail, failure, isAbort, janus, phase, running, state, workEnded } from './page.js';

/** @type {Blob|null} */
let image = null;
let started = false; // whether the model holds this transcript's conversation
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

$('chat-form').onsubmit = async (/** @type {Event} */ e) => {
  e.preventDefault();
  const question = $('question').value;
  state.chat = { tokens: [], text: '', done: false, tokensPerSecond: 0 };
  document.getElementById('answer')?.removeAttribute('id');
  entry('user', question, image);
  const answer = entry('assistant', '');
  answer.id = 'answer';
  $('speed').textContent = '';
  running(true, 'ask', 'chat-cancel');
  const controller = new AbortController();
  $('chat-cancel').onclick = () => controller.abort();
  const turn = image;
  setImage(null); // the image belongs to this turn
  try {
    const r = await janus().chat({ question, image: turn, maxNewTokens: Number($('max-tokens').value),
      conversation: started ? 'continue' : 'new', signal: controller.signal,
      onProgress: (p) => { if (p.what === 'phase') phase(`${p.name}…`, 'speed'); },
      onToken: (t) => {
        state.chat.tokens.push(t.token);
        answer.textContent = state.chat.text = t.text;
        $('speed').textContent = `writing the answer… ${state.chat.tokens.length} tokens · `
          + `${t.tokensPerSecond.toFixed(1)} tokens/s`;
      } });
    started = true;
    state.transcript[state.transcript.length - 1].text = r.text;
    Object.assign(state.chat, { done: true, tokensPerSecond: r.tokensPerSecond, gpuReads: r.gpu?.reads,
      firstTokenSeconds: r.firstTokenSeconds, prefillTokens: r.prefillTokens, reusedTokens: r.reusedTokens });
    const first = r.firstTokenSeconds == null ? '' : `first token after ${r.firstTokenSeconds.toFixed(2)} s · `;
    const reused = r.reusedTokens ? ` · ${r.reusedTokens} earlier positions reused` : '';
    $('speed').textContent = `${first}${r.tokens.length} tokens in ${r.seconds.toFixed(2)} s · `
      + `decoding ${r.tokensPerSecond.toFixed(1)} tokens/s${reused}`;
    workEnded();
  } catch (thrown) {
    if (isAbort(thrown)) { // the conversation goes on from the answer so far
      started = true;
      state.transcript[state.transcript.length - 1].text = state.chat.text;
      state.chat.done = true;
      $('speed').textContent = `${state.chat.tokens.length} tokens · cancelled`;
      workEnded();
    } else {
      const err = failure(thrown);
      fail(err);
      if (err.kind !== 'busy' && started) {
        started = false; // the model ended the conversation
        entry('note', 'The conversation could not go on; the next question starts a new chat.');
      }
    }
  } finally {
    running(false, 'ask', 'chat-cancel');
  }
};
