"""The trained model's folder, in transformers layout: model.safetensors and config.json (save_pretrained), the
tokenizer files, task.json (what janusweb/quality.py needs: image size, held-out pairs), train_log.json (the
config, every step's losses, times), loss.png and README.md, the model card. Written atomically."""

import importlib.metadata
import json
import platform
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from janusweb.atomic import atomic_dir  # noqa: E402
from janusweb.export.tokenizer import write_tokenizer  # noqa: E402
from janusweb.integrity import sha256_of  # noqa: E402
from janusweb.quality import TASK_FILE  # noqa: E402
from janusweb.shapes import COLOURS, POSITIONS, QUESTIONS, SHAPES  # noqa: E402


def task_json(c, held_out: list) -> dict:
    return {"task": "shapes", "seed": c.seed, "image_size": c.image_size, "colours": list(COLOURS),
            "shapes": list(SHAPES), "positions": list(POSITIONS), "prompt": "a {colour} {shape} in the {position}",
            "questions": QUESTIONS, "held_out": [list(p) for p in held_out]}


def write(out: Path, trained, c, log: dict, scores: dict) -> Path:
    with atomic_dir(out) as tmp:
        trained.model.save_pretrained(tmp)
        write_tokenizer(tmp, trained.tok)
        (tmp / TASK_FILE).write_text(json.dumps(task_json(c, trained.held_out), indent=2) + "\n")
        (tmp / "train_log.json").write_text(json.dumps({**log, "scores": scores}, indent=1) + "\n")
        plot_losses(trained.curves, tmp / "loss.png")
        digest = sha256_of(tmp / "model.safetensors")
        (tmp / "README.md").write_text(card(trained, c, log, scores, digest))
    return Path(out)


def plot_losses(curves: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.2), dpi=80)
    for ax, (stage, curve) in zip(list(axes) if len(curves) > 1 else [axes], curves.items()):
        steps = [row[0] for row in curve]
        labels = {"vq": ["total", "reconstruction"], "joint": ["total", "text (answers)", "image (codes)"]}[stage]
        for k, label in enumerate(labels, 1):
            ax.plot(steps, [row[k] for row in curve], label=label, linewidth=0.8)
        ax.set_yscale("log")
        ax.set_title({"vq": "stage 1: VQ autoencoder", "joint": "stage 2: whole model"}[stage])
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def score_table(scores: dict) -> str:
    lines = ["| | images / questions | colour | shape | position | all three / exact |", "|---|---|---|---|---|---|"]
    for key, parts in scores["generation"].items():
        for part, s in parts.items():
            lines.append(f"| generation, {key.replace('_', ' ')}, {part.replace('_', '-')} | {s['images']} | "
                         f"{_pct(s['colour'])} | {_pct(s['shape'])} | {_pct(s['position'])} | **{_pct(s['all'])}** |")
    for part, s in scores["answers"].items():
        lines.append(f"| answers, {part.replace('_', '-')} | {s['questions']} | {_pct(s['colour'])} | "
                     f"{_pct(s['shape'])} | {_pct(s['position'])} | **{_pct(s['exact'])}** "
                     f"(describe {_pct(s['describe'])}) |")
    return "\n".join(lines)


def card(trained, c, log: dict, scores: dict, digest: str) -> str:
    model = trained.model
    params = sum(p.numel() for p in model.parameters())
    parts = {"language model": model.model.language_model, "vision tower + aligner": [model.model.vision_model,
             model.model.aligner], "VQ tokenizer": model.model.vqmodel,
             "generation embeddings, aligner, head": [model.model.generation_embeddings,
                                                      model.model.generation_aligner, model.model.generation_head]}
    counts = {k: sum(p.numel() for m in (v if isinstance(v, list) else [v]) for p in m.parameters())
              for k, v in parts.items()}
    held = ", ".join(f"{colour} {shape}" for colour, shape in trained.held_out)
    t = log["timing"]
    return f"""# shapes: a small Janus trained on the shapes task

transformers' `JanusForConditionalGeneration`, architecture unchanged, at small widths, trained from scratch on
two CPU cores by `janusweb train --out models/shapes --seed {c.seed}`. It draws `a {{colour}} {{shape}} in the
{{position}}` and answers four questions about such pictures. janusweb exports it like any transformers checkpoint
(`janusweb export models/shapes --out out/shapes`); `make demo` makes it the page's embedded default.

- weights: `model.safetensors`, sha256 `{digest}`
- {params / 1e6:.2f} M parameters: {", ".join(f"{k} {v / 1e6:.2f} M" for k, v in counts.items())}
- widths: language model {c.layers} layers x {c.hidden} (MLP {c.intermediate}, {c.heads} heads), vision tower
  {c.vision_layers} layers x {c.vision_hidden}, patch {c.patch}; VQ codebook {c.codebook} x 8, base channels
  {c.vq_base_channels}; vocabulary {model.config.text_config.vocab_size} (a byte-level BPE trained on the task's
  text, Janus's special tokens and chat template); context {c.context}
- images {c.image_size} x {c.image_size} px, {(c.image_size // c.patch) ** 2} image tokens

## What it knows

- colours: {", ".join(COLOURS)}; shapes: {", ".join(SHAPES)}; positions: {", ".join(POSITIONS)}
- generation prompt: `a {{colour}} {{shape}} in the {{position}}`, e.g. `a red circle in the top left`
- questions and answers: {"; ".join(f"`{q}`" for q in QUESTIONS.values())} -> the colour, the shape, the
  position, the generation prompt's text

**Held-out pairs** (never in a generation caption, a training image or a VQ image; seed {c.seed}): {held}.

## Data

{c.images} images drawn by `janusweb/shapes.py` (seed {c.seed}): one shape of the grammar on a dark background,
size and centre jittered, anti-aliased; the held-out pairs never drawn. Each training step takes
{c.understanding_batch} understanding rows (an image and one of the four questions, loss on the answer and EOS)
and {c.generation_batch} generation rows (the prompt, loss on the image's {(c.image_size // c.patch) ** 2} VQ codes;
the prompt replaced by the unconditional row for {100 * c.prompt_drop:.0f} % of them, for classifier-free guidance,
their targets label-smoothed by {c.unconditional_smoothing:g} so that guidance pushes rare codes down, not up).

## Training

1. VQ tokenizer as an autoencoder: {c.vq_steps} steps of {c.vq_batch} images, AdamW, peak lr {c.vq_lr},
   absolute error weighted x{1 + c.vq_shape_weight:g} on the shape, codes matched by cosine (Janus decodes
   L2-normalised codes), unused codes restarted after {c.vq_restart_after} steps.
2. The whole model, VQ frozen: {c.steps} steps, AdamW, peak lr {c.lr}, warm-up {c.warmup} steps, cosine decay.

{t["vq_seconds"] / 60:.1f} min + {t["joint_seconds"] / 60:.1f} min on {t["machine"]} ({c.threads} threads;
{t["vq_steps_per_s"]:.2f} and {t["joint_steps_per_s"]:.2f} steps/s; load average {t["load_before"]} before,
{t["load_after"]} after: {t["note"]}). Every step's losses are in `train_log.json`.

![loss curves](loss.png)

## Scores (PyTorch fp32, temperature 1; janusweb/quality.py, scored by janusweb/scorer.py)

{score_table(scores)}

Generation: every prompt of the grammar, {scores["images_per_prompt"]} images each from fixed seeds. Answers:
every scene drawn once from a fixed seed, two of the four questions each, greedy; a held-out answer is one about an
image of a held-out pair.
"""


def machine() -> str:
    """The CPU model and the versions that decide the weights' bytes."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").is_file() else \
        platform.machine()
    packages = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("torch", "transformers", "tokenizers"))
    return f"{cpu}, Python {platform.python_version()}, {packages}"
