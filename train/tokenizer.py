"""The shapes model's tokenizer: a byte-level BPE trained on the task's text (every prompt, question and answer in
the chat format the model reads), with Janus's special tokens and chat templates (export/tokenizer.py)."""

from tokenizers import Tokenizer

from janusweb.export.tokenizer import build_tokenizer
from janusweb.prompts import chat_text
from janusweb.shapes import QUESTIONS, all_scenes

VOCAB_LIMIT = 512  # an upper bound: the merges run out before it (every word of the task becomes one token)


def corpus() -> list:
    """Every text the model is trained on, in the chat format (prompts.chat_text) with its answer."""
    lines = []
    for scene in all_scenes():
        lines.append(chat_text(scene.prompt, False))
        lines += [f"{chat_text(q, True)} {scene.answer(kind)}" for kind, q in QUESTIONS.items()]
    return lines


def build() -> Tokenizer:
    return build_tokenizer(corpus(), VOCAB_LIMIT)


def model_vocab_size(tok: Tokenizer) -> int:
    """The model's vocabulary: the tokenizer's, rounded up to a multiple of 64 (rows no token reaches are never
    trained towards; their logits fall during training)."""
    return -(-tok.get_vocab_size() // 64) * 64
