"""Image preprocessing as Janus's VLMImageProcessor does it: fit the longest side, pad to a square with the
background colour (centred), scale to [0, 1], normalise."""

import numpy as np
from PIL import Image

BACKGROUND = (127, 127, 127)
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
MIN_SIZE = 14


def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """PIL image -> pixel_values [3, size, size] float32."""
    image = image.convert("RGB")
    w, h = image.size
    scale = size / max(w, h)
    new = (max(MIN_SIZE, round(w * scale)), max(MIN_SIZE, round(h * scale)))
    if new != (w, h):
        image = image.resize(new, Image.BICUBIC)
    canvas = Image.new("RGB", (size, size), BACKGROUND)
    canvas.paste(image, ((size - new[0]) // 2, (size - new[1]) // 2))
    x = np.asarray(canvas, dtype=np.float32) / 255.0
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return x.transpose(2, 0, 1).copy()


def to_uint8(decoded: np.ndarray) -> np.ndarray:
    """decoded_image [3, H, W] in [-1, 1] -> [H, W, 3] uint8, as Janus's reference does."""
    x = np.clip((decoded.transpose(1, 2, 0) + 1) / 2 * 255, 0, 255)
    return x.astype(np.uint8)
