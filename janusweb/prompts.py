"""Prompt token ids in DeepSeek's Janus format, for understanding (image + question) and image generation."""

from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    eos: int
    pad: int
    image: int
    boi: int
    eoi: int

    @classmethod
    def from_tokenizer(cls, tok: Tokenizer) -> "SpecialIds":
        names = dict(bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>", pad="<｜▁pad▁｜>",
                     image="<image_placeholder>", boi="<begin_of_image>", eoi="<end_of_image>")
        ids = {k: tok.token_to_id(v) for k, v in names.items()}
        missing = [names[k] for k, v in ids.items() if v is None]
        if missing:
            raise ValueError(f"tokenizer lacks Janus special tokens: {', '.join(missing)}")
        return cls(**ids)


def _encode(tok: Tokenizer, text: str) -> list:
    return tok.encode(text, add_special_tokens=True).ids  # adds BOS through the post-processor


def chat_text(question: str, with_image: bool) -> str:
    image = "<image_placeholder>\n" if with_image else ""
    return f"<|User|>: {image}{question.strip()}\n\n<|Assistant|>:"


def understanding_inputs(tok: Tokenizer, ids: SpecialIds, question: str, num_image_tokens: int,
                         with_image: bool = True) -> dict:
    """input_ids, images_seq_mask [1,S] and images_emb_mask [1,N,T] for one question about 0 or 1 image."""
    return conversation_inputs(tok, ids, [(question, with_image, None)], num_image_tokens)


def _expand(tokens: list, ids: SpecialIds, num_image_tokens: int) -> list:
    out = []
    for token in tokens:
        out += [ids.boi, *[ids.image] * num_image_tokens, ids.eoi] if token == ids.image else [token]
    return out


def conversation_inputs(tok: Tokenizer, ids: SpecialIds, turns: list, num_image_tokens: int) -> dict:
    """A multi-turn conversation, as the page holds it in its KV cache: `turns` is [(question, with_image,
    answer_ids)], answer_ids the tokens the model generated (None for the last, unanswered turn). Each answer
    stays as generated, closed by EOS (the Janus format's end of an assistant message) when it did not end with
    it; each later user turn is chat_text encoded without BOS. The first turn alone is understanding_inputs."""
    out = []
    for k, (question, with_image, answer) in enumerate(turns):
        encoded = _encode(tok, chat_text(question, with_image))
        out += _expand(encoded if k == 0 or encoded[:1] != [ids.bos] else encoded[1:], ids, num_image_tokens)
        if answer is not None:
            out += list(answer) + ([] if list(answer)[-1:] == [ids.eos] else [ids.eos])
    input_ids = np.array([out], dtype=np.int64)
    images = sum(1 for _, with_image, _ in turns if with_image)
    return {"input_ids": input_ids, "images_seq_mask": input_ids == ids.image,
            "images_emb_mask": np.ones((1, images, num_image_tokens), dtype=bool)}


def generation_prompt(tok: Tokenizer, ids: SpecialIds, prompt: str) -> np.ndarray:
    """The text-to-image prompt: chat format, then <begin_of_image>. Shape [S]."""
    return np.array(_encode(tok, chat_text(prompt, False)) + [ids.boi], dtype=np.int64)


def unconditional(prompt_ids: np.ndarray, ids: SpecialIds) -> np.ndarray:
    """The CFG unconditional row: every token except BOS and <begin_of_image> replaced by the pad token."""
    keep = (prompt_ids == ids.bos) | (prompt_ids == ids.boi)
    return np.where(keep, prompt_ids, ids.pad)
