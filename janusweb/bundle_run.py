"""`janusweb generate` and `janusweb chat`: a bundle on onnxruntime through janusweb.runner (the one reference
loop), at any dtype the bundle has, with progress; bad input is one line (UserError, exit 2)."""

import json
import sys
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from janusweb.atomic import atomic_dir
from janusweb.errors import UserError
from janusweb.log import log, step
from janusweb.runner import Runner

OUTPUT_NAME = "generation.json"


def generate(bundle: Path, prompt: str, out: Path, n: int, guidance: float, temperature: float, seed: int,
             dtype: str) -> Path:
    """PNG per image and generation.json (prompt, settings, each image's seed rule and tokens) into `out`."""
    if temperature < 0:
        raise UserError(f"temperature {temperature} is negative")
    runner = Runner.open(bundle, dtype)
    T = runner.dims.num_image_tokens
    every = max(1, T // 8)

    def on_step(k, total):
        if k % every == 0 or k == total:
            log.info("image step %d/%d", k, total)

    with step(f"draw {n} image(s) of {prompt!r} (seed {seed}, guidance {guidance:g}, {dtype})"):
        tokens, images = runner.images(prompt, seed, n, guidance, temperature, on_step=on_step)
    with atomic_dir(out) as tmp:
        files = []
        for i, image in enumerate(images):
            files.append(f"image-{i}.png")
            Image.fromarray(image).save(tmp / files[-1])
        record = {"bundle": str(bundle), "dtype": dtype, "prompt": prompt, "n": n, "guidance": guidance,
                  "temperature": temperature, "seed": seed,
                  "draws": f"janusweb.sampling.uniforms({seed}, {n} * {T}); image i uses draws [i*{T}, (i+1)*{T})",
                  "images": [{"file": f, "tokens": t.tolist()} for f, t in zip(files, tokens)]}
        (tmp / OUTPUT_NAME).write_text(json.dumps(record, indent=1) + "\n")
    log.info("wrote %d image(s) and %s to %s", n, OUTPUT_NAME, out)
    return out


def read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"no such image: {path}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"cannot read {path} as an image: {e.__class__.__name__}") from None


def chat(bundle: Path, text: str, image_path: Path | None, dtype: str, max_new_tokens: int) -> str:
    """The answer to `text` (about the image, when given), streamed to stdout as it is generated."""
    image = read_image(image_path) if image_path else None
    runner = Runner.open(bundle, dtype)

    def show(new: str):
        sys.stdout.write(new)
        sys.stdout.flush()

    with step(f"answer ({dtype})"):
        answer, _ = runner.answer(text, image, max_new_tokens, on_text=show)
        sys.stdout.write("\n")
    return answer
