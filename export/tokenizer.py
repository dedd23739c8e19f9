"""Small byte-level BPE tokenizers built deterministically, with Janus's special tokens and chat templates: the
`tiny` preset's (from a fixed corpus) and, through `build_tokenizer`, the trained shapes model's (train/).

Real checkpoints bring their own tokenizer files; these exist so that small models have a real, round-tripping
tokenizer that both Python and the page load from the same tokenizer.json.
"""

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
IMAGE, BOI, EOI = "<image_placeholder>", "<begin_of_image>", "<end_of_image>"
USER, ASSISTANT = "<|User|>", "<|Assistant|>"
SPECIAL_TOKENS = [BOS, EOS, PAD, IMAGE, BOI, EOI, USER, ASSISTANT, "<patch_placeholder>"]

# DeepSeek's "deepseek" SFT format: `<|User|>: text\n\n<|Assistant|>: answer<eos>`, no system prompt; the same
# text as janusweb/prompts.py's chat_text. Named templates, as transformers.js's Janus processor picks them
# (`processor(conversation)` -> "default", `{chat_template: "text_to_image"}` for image generation); it encodes
# the text without special tokens, so the template writes BOS itself. Roles: "user"/"assistant" or DeepSeek's
# "<|User|>"/"<|Assistant|>". The CFG unconditional row is made from token ids, not text (prompts.unconditional;
# transformers.js builds its own: every prompt token the pad token, attention-masked).
_TURNS = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] in ['user', '<|User|>'] %}<|User|>: {{ message['content'] | trim }}\n\n"
    "{% else %}<|Assistant|>: {{ message['content'] | trim }}<｜end▁of▁sentence｜>{% endif %}"
    "{% endfor %}"
)
CHAT_TEMPLATES = [
    {"name": "default", "template": _TURNS + "{% if add_generation_prompt %}<|Assistant|>:{% endif %}"},
    {"name": "text_to_image", "template": _TURNS + "<|Assistant|>:<begin_of_image>"},
]


def set_chat_templates(tokenizer_config: Path) -> None:
    """Write CHAT_TEMPLATES into a bundle's tokenizer_config.json (created when the checkpoint has none)."""
    config = json.loads(tokenizer_config.read_text()) if tokenizer_config.is_file() else {}
    config["chat_template"] = CHAT_TEMPLATES
    config.setdefault("bos_token", BOS)
    tokenizer_config.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


_CORPUS = """
Janus is a unified model that understands images and generates them from text.
Describe this image. What is in the picture? A red apple on a wooden table, next to a blue cup.
A photo of a cat sitting on a windowsill in the morning sun. The quick brown fox jumps over the lazy dog.
Draw a watercolor painting of mountains at sunset, with a lake reflecting the sky.
How many people are in the photo? There are three people walking along the beach.
Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000, punctuation: . , ; : ! ? ( ) [ ] { } " ' - _ / \\ @ # % & * +
Unicode text: café, naïve, Zürich, 東京, 北京, こんにちは, 안녕하세요, Привет, emoji 🙂 🚀.
"""


def build_tokenizer(lines: list, vocab_size: int) -> Tokenizer:
    """A byte-level BPE (every byte has a token, so any text encodes) trained on `lines`, BOS added in front."""
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False, min_frequency=1,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))],
    )
    return tok


def build_tiny_tokenizer(vocab_size: int) -> Tokenizer:
    return build_tokenizer([line for line in _CORPUS.splitlines() if line] * 4, vocab_size)


def write_tokenizer(out_dir: Path, tok: Tokenizer) -> Tokenizer:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json; return the tokenizer."""
    tok.save(str(out_dir / "tokenizer.json"))
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
               "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in (BOS, EOS, PAD)]}
    config = {**special, "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": True, "add_eos_token": False,
              "model_max_length": 16384, "clean_up_tokenization_spaces": False, "legacy": False,
              "chat_template": CHAT_TEMPLATES}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False))
    return tok


def write_tiny_tokenizer(out_dir: Path, vocab_size: int) -> Tokenizer:
    return write_tokenizer(out_dir, build_tiny_tokenizer(vocab_size))


def special_token_ids(tok: Tokenizer) -> dict:
    ids = {"bos": BOS, "eos": EOS, "pad": PAD, "image": IMAGE, "boi": BOI, "eoi": EOI}
    return {k: tok.token_to_id(v) for k, v in ids.items()}
