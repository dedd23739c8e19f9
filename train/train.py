"""Trains the shapes model from scratch on two CPU cores: `janusweb train --out models/shapes`.

Config at the top, one loop (`run`) for both stages:
  1. the VQ tokenizer (JanusVQVAE) as an autoencoder on the task's images;
  2. the whole model, VQ frozen, on understanding (image + question -> answer) and generation (prompt -> codes,
     the prompt dropped for a share of rows), one language-model call per step for both.
Then the PyTorch evaluation (janusweb/quality.py) and the checkpoint folder (train/checkpoint.py).
Seeded and run at a fixed thread count: two runs write the same bytes.
"""

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from janusweb.export.presets import Shapes
from janusweb.export.tokenizer import special_token_ids
from janusweb.log import step
from janusweb.prompts import SpecialIds
from janusweb.shapes import held_out_pairs
from janusweb.train import checkpoint, data, evaluate, model as janus, tokenizer, vq

log = logging.getLogger("janusweb")


@dataclass(frozen=True)
class Config:
    seed: int = 0
    threads: int = 2
    # the task's data
    image_size: int = 32
    patch: int = 8  # 4 x 4 = 16 image tokens
    held_out_pairs: int = 4
    images: int = 6000
    # widths (export/presets.Shapes; the vocabulary comes from the tokenizer)
    hidden: int = 128
    intermediate: int = 512
    layers: int = 4
    heads: int = 4
    vision_hidden: int = 128
    vision_layers: int = 2
    vision_heads: int = 4
    codebook: int = 256
    vq_base_channels: int = 32
    vq_latent_channels: int = 64
    vq_res_blocks: int = 1
    context: int = 1024
    # stage 1: the VQ autoencoder
    vq_steps: int = 1500
    vq_batch: int = 16
    vq_lr: float = 2e-3
    vq_shape_weight: float = 4.0  # extra error weight on and around the shape
    vq_restart_after: int = 50  # steps unused before a code restarts
    vq_plain_steps: int = 300  # first steps as a plain autoencoder, then codes from k-means of its latents
    vq_kmeans_images: int = 1024
    # stage 2: the whole model
    steps: int = 3000
    understanding_batch: int = 16
    generation_batch: int = 16
    lr: float = 1e-3
    prompt_drop: float = 0.3
    unconditional_smoothing: float = 0.2  # label smoothing on the unconditional rows' codes (model.joint_loss)
    # both stages
    warmup: int = 50
    weight_decay: float = 0.01
    log_every: int = 50

    def shapes(self, vocab: int) -> Shapes:
        return Shapes(vocab, self.hidden, self.intermediate, self.layers, self.heads, self.heads, self.vision_hidden,
                      self.vision_layers, self.vision_heads, self.image_size, self.codebook, self.vq_base_channels,
                      self.vq_latent_channels, self.vq_res_blocks, patch=self.patch, max_positions=self.context)


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak (warm-up steps do not depend on `steps`)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item()))


def run(name: str, params, losses, steps: int, peak: float, c: Config, stop_after: int | None = None) -> list:
    """The loop: AdamW, the schedule above, `losses(step)` -> (total, *parts) per step. Returns the curve
    [[step, total, *parts]]; stop_after ends it early (the schedule stays that of `steps`)."""
    opt = torch.optim.AdamW(params, lr=peak, betas=(0.9, 0.95), weight_decay=c.weight_decay)
    curve, t0 = [], time.perf_counter()
    for step in range(steps if stop_after is None else min(steps, stop_after)):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, steps, peak, c.warmup)
        total, *parts = losses(step)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        curve.append([step, total.item(), *(p.item() for p in parts)])
        if step % c.log_every == 0 or step == steps - 1:
            rate = (step + 1) / (time.perf_counter() - t0)
            log.info("%s step %d/%d  loss %.4f (%s)  %.2f steps/s, %.0f s left, load %s", name, step + 1, steps,
                     total.item(), " ".join(f"{p.item():.4f}" for p in parts), rate, (steps - step - 1) / rate,
                     os.getloadavg()[0])
    return curve


def train_vq(c: Config, vqvae, images: data.Images, stop_after=None) -> list:
    """A plain autoencoder (normalised latents, no codes) for vq_plain_steps, then codes from k-means of its
    latents, then the VQ autoencoder."""
    gen = torch.Generator().manual_seed(c.seed + 1)
    weights = data.foreground_weights(images.pixels, c.vq_shape_weight)
    state = {}

    def losses(step):
        if step == c.vq_plain_steps:
            vq.init_codebook(vqvae, images.pixels[:c.vq_kmeans_images], gen)
            state["restarts"] = vq.CodeRestarts(c.codebook, c.vq_restart_after, start=step)
        elif "last" in state:  # the previous step's choices, now that its update is done
            state["restarts"].update(vqvae, step - 1, *state["last"], gen)
        batch = torch.randint(0, len(images.scenes), (c.vq_batch,), generator=gen)
        quantized = step >= c.vq_plain_steps
        total, reconstruction, codes, latents = vq.loss(vqvae, images.pixels[batch], weights[batch], quantized)
        if quantized:
            state["last"] = codes, latents.detach()
        return total, reconstruction

    vqvae.train()
    curve = run("vq", list(vqvae.parameters()), losses, c.vq_steps, c.vq_lr, c, stop_after)
    vqvae.eval()
    vq.normalise_codebook(vqvae)
    return curve


def train_joint(c: Config, model, examples: data.Examples, images: data.Images, stop_after=None) -> list:
    """Stage 2 with the model's VQ frozen; image codes are encoded the first time an image is drawn."""
    gen = torch.Generator().manual_seed(c.seed + 2)
    vqvae = model.model.vqmodel
    vqvae.requires_grad_(False)
    known = torch.zeros(len(images.scenes), dtype=torch.bool)
    images.codes = torch.zeros(len(images.scenes), (c.image_size // c.patch) ** 2, dtype=torch.long)
    params = [p for p in model.parameters() if p.requires_grad]

    def losses(step):
        n = len(images.scenes)
        und = torch.randint(0, n, (c.understanding_batch,), generator=gen)
        kinds = torch.randint(0, len(examples.kinds), (c.understanding_batch,), generator=gen)
        rows = torch.randint(0, n, (c.generation_batch,), generator=gen)
        drops = torch.rand(c.generation_batch, generator=gen) < c.prompt_drop
        new = rows[~known[rows]].unique()
        if len(new):
            images.codes[new] = vq.encode(vqvae, images.pixels[new])
            known[new] = True
        text, image = janus.joint_loss(model, data.make_batch(examples, images, und, kinds, rows, drops),
                                      c.unconditional_smoothing)
        return text + image, text, image

    model.train()
    vqvae.eval()
    curve = run("joint", params, losses, c.steps, c.lr, c, stop_after)
    model.eval()
    return curve


@dataclass
class Trained:
    model: object
    tok: object
    held_out: list
    images: data.Images
    curves: dict
    seconds: dict


def prepare(c: Config) -> Trained:
    """The tokenizer, the held-out pairs, the images and the freshly initialised model (seeded)."""
    tok = tokenizer.build()
    held_out = held_out_pairs(c.seed, c.held_out_pairs)
    images = data.draw_images(c.images, c.image_size, held_out, c.seed)
    model = janus.build(c.shapes(tokenizer.model_vocab_size(tok)), special_token_ids(tok), c.seed)
    return Trained(model, tok, held_out, images, {}, {})


def examples(t: Trained) -> data.Examples:
    return data.Examples(t.tok, SpecialIds.from_tokenizer(t.tok), t.model.config.vision_config.num_image_tokens)


def train(c: Config) -> Trained:
    """Both stages, at c.threads threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(c.threads)
    try:
        with step("draw the images, build the tokenizer and the model"):
            t = prepare(c)
        t0 = time.perf_counter()
        t.curves["vq"] = train_vq(c, t.model.model.vqmodel, t.images)
        t.seconds["vq"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        t.curves["joint"] = train_joint(c, t.model, examples(t), t.images)
        t.seconds["joint"] = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    return t


def main(out: Path, c: Config) -> Path:
    """Train, evaluate, write the checkpoint folder (atomically)."""
    load_before = os.getloadavg()
    trained = train(c)
    with step("evaluate (PyTorch fp32)"):
        task = checkpoint.task_json(c, trained.held_out) | {"held_out": trained.held_out}
        scores = evaluate.scores(trained.model, trained.tok, task)
    s = trained.seconds
    timing = {"vq_seconds": s["vq"], "joint_seconds": s["joint"], "vq_steps_per_s": c.vq_steps / s["vq"],
              "joint_steps_per_s": c.steps / s["joint"], "machine": checkpoint.machine(),
              "load_before": " ".join(f"{x:.1f}" for x in load_before),
              "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
              "note": "a shared machine when the load average exceeds the cores"
              if max(load_before) > c.threads else "a quiet machine"}
    log_data = {"command": f"janusweb train --out {out} --seed {c.seed}", "config": asdict(c), "timing": timing,
                "curves": trained.curves}
    with step(f"write {out}"):
        return checkpoint.write(out, trained, c, log_data, scores)
