// A chat conversation's decoder state between turns: the KV cache holds every earlier turn (question and answer),
// so the next question is the only new prefill. Token-level history, as janusweb/prompts.conversation_inputs:
// each answer stays as generated, closed by EOS; later user turns carry no BOS.

import { InputError } from './errors.js';

// Positions reserved beyond the first turn's own for the turns after it (a cache of fixed capacity is allocated
// once: 1024 positions of janus-pro-1b's cache are ~400 MB), up to what the engine's cache can hold.
const HEADROOM = 1024;

export class Conversation {
  /** @param {import('./heads.js').Graphs} g @param {number} eos @param {number} id */
  constructor(g, eos, id) {
    this.g = g;
    this.eos = eos;
    this.id = id;
    /** @type {import('./engines/engine.js').KVCache|null} */
    this.cache = null;
    this.capacity = 0;
    this.length = 0; // positions in the cache
    /** @type {number[]} */
    this.pending = []; // the last answer's tokens not fed yet: its last token and the closing EOS
    this.turns = 0;
  }

  /**
   * The positions to feed for a user turn: the pending end of the last answer, then the turn.
   * @param {{inputIds: number[], imageMask: boolean[]}} turn
   */
  prompt(turn) {
    return { inputIds: [...this.pending, ...turn.inputIds], imageMask: [...this.pending.map(() => false), ...turn.imageMask] };
  }

  /** The cache, with room for `fresh` positions and `maxNew` tokens. @param {number} fresh @param {number} maxNew */
  reserve(fresh, maxNew) {
    const need = this.length + fresh + maxNew;
    const most = this.g.engine.maxPositions ?? Infinity;
    if (need > most) {
      throw new InputError(`this turn needs ${need} positions and the model holds ${most}: ask for fewer new tokens`
        + `${this.turns ? ' or start a new chat' : ''}`);
    }
    if (!this.cache) {
      this.capacity = Math.min(need + HEADROOM, most); // the headroom within what the model holds
      this.cache = this.g.engine.newCache(1, this.capacity);
    } else if (need > this.capacity) {
      throw new InputError(`the conversation would pass its ${this.capacity} positions: start a new chat`);
    }
    return this.cache;
  }

  /**
   * A turn was answered: `fed` positions went in, then every generated token but the last. `given`: an answer
   * not generated here (a transcript's), none of it fed yet.
   * @param {number} fed @param {number[]} tokens @param {number[]} [given]
   */
  answered(fed, tokens, given) {
    this.length += fed + Math.max(0, tokens.length - 1);
    const answer = given ?? tokens.slice(-1);
    this.pending = answer.at(-1) === this.eos || (!given && !answer.length) ? answer : [...answer, this.eos];
    this.turns++;
  }

  release() {
    this.cache?.release();
    this.cache = null;
  }
}
