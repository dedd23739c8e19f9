// The bundle's tokenizer.json through @huggingface/tokenizers, and Janus's prompt formats (janusweb/prompts.py).

import { Tokenizer } from '@huggingface/tokenizers';

const SPECIAL_NAMES = {
  bos: '<｜begin▁of▁sentence｜>',
  eos: '<｜end▁of▁sentence｜>',
  pad: '<｜▁pad▁｜>',
  image: '<image_placeholder>',
  boi: '<begin_of_image>',
  eoi: '<end_of_image>',
};

/** @typedef {{bos: number, eos: number, pad: number, image: number, boi: number, eoi: number}} SpecialIds */

// Python's str.isspace() set, so that strip() below matches Python's exactly (JS trim() differs slightly).
const PY_SPACE = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'gu');

/** @param {string} s */
export function pythonStrip(s) {
  return s.replace(STRIP, '');
}

export class JanusTokenizer {
  /**
   * @param {object} tokenizerJson tokenizer.json
   * @param {object} tokenizerConfig tokenizer_config.json
   */
  constructor(tokenizerJson, tokenizerConfig) {
    this.tok = new Tokenizer(tokenizerJson, tokenizerConfig);
    /** @type {SpecialIds} */
    this.ids = /** @type {SpecialIds} */ ({});
    for (const [key, name] of Object.entries(SPECIAL_NAMES)) {
      const id = this.tok.token_to_id(name);
      if (id === undefined) throw new Error(`tokenizer lacks the Janus special token ${name}`);
      this.ids[/** @type {keyof SpecialIds} */ (key)] = id;
    }
  }

  /** Token ids with the post-processor's special tokens (BOS), as Python's `tok.encode(text).ids`. @param {string} text */
  encode(text) {
    return this.tok.encode(text, { add_special_tokens: true }).ids;
  }

  /** An assistant answer's ids, as Python's `tok.encode(text, add_special_tokens=False).ids`. @param {string} text */
  answerIds(text) {
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  /** @param {number[]} ids */
  decode(ids) {
    return this.tok.decode(ids, { skip_special_tokens: true });
  }

  /**
   * input_ids and images_seq_mask for one question about 0 or 1 image (prompts.understanding_inputs).
   * @param {string} question
   * @param {number} numImageTokens
   * @param {boolean} withImage
   * @returns {{inputIds: number[], imageMask: boolean[]}}
   */
  understandingInputs(question, numImageTokens, withImage) {
    return this.userTurn(question, numImageTokens, withImage, true);
  }

  /**
   * One user turn of a conversation (prompts.conversation_inputs): the first with BOS, later ones without.
   * @param {string} question @param {number} numImageTokens @param {boolean} withImage @param {boolean} first
   * @returns {{inputIds: number[], imageMask: boolean[]}}
   */
  userTurn(question, numImageTokens, withImage, first) {
    const encoded = this.encode(chatText(question, withImage));
    const ids = [];
    for (const t of first || encoded[0] !== this.ids.bos ? encoded : encoded.slice(1)) {
      if (t === this.ids.image) ids.push(this.ids.boi, ...Array(numImageTokens).fill(this.ids.image), this.ids.eoi);
      else ids.push(t);
    }
    return { inputIds: ids, imageMask: ids.map((t) => t === this.ids.image) };
  }

  /** The text-to-image prompt: chat format, then <begin_of_image> (prompts.generation_prompt). @param {string} prompt */
  generationPrompt(prompt) {
    return [...this.encode(chatText(prompt, false)), this.ids.boi];
  }

  /** CFG's unconditional row: all but BOS and <begin_of_image> become the pad token. @param {number[]} promptIds */
  unconditional(promptIds) {
    return promptIds.map((t) => (t === this.ids.bos || t === this.ids.boi ? t : this.ids.pad));
  }
}

/**
 * @param {string} question
 * @param {boolean} withImage
 */
export function chatText(question, withImage) {
  const image = withImage ? '<image_placeholder>\n' : '';
  return `<|User|>: ${image}${pythonStrip(question)}\n\n<|Assistant|>:`;
}
