"""Reads colour, shape and position of the shapes task (janusweb/shapes.py) from an image's pixels, without any
model: the judge of every generated picture.

The shape is the largest connected region that stands out from the dark background. Its colour is the nearest
palette colour to the region's median; its position the anchor nearest to its bounding box's centre; its shape
follows from how full the four corner cells of a 4 x 4 grid over the bounding box are (a square fills them, a
circle a third, a cross none, a triangle only the bottom two).
"""

from collections import deque
from dataclasses import dataclass

import numpy as np

from janusweb.shapes import ANCHORS, ATTRIBUTES, BACKGROUND, COLOURS, Scene

STANDS_OUT = 60.0  # RGB distance from the background that marks a pixel as part of a shape
MAX_COLOUR_DISTANCE = 100.0  # farther than this from every palette colour: no colour
MIN_AREA = 0.01  # a region smaller than this fraction of the image is no shape
# corner-cell occupancy: top corners empty and bottom corners filled -> triangle; else by the mean of the four
TRIANGLE_GAP = 0.3
CROSS_BELOW = 0.15
SQUARE_ABOVE = 0.65


@dataclass(frozen=True)
class Verdict:
    colour: str | None
    shape: str | None
    position: str | None

    def right(self, scene: Scene) -> dict:
        """{attribute: True/False} against the scene asked for, plus `all`."""
        marks = {a: getattr(self, a) == getattr(scene, a) for a in ATTRIBUTES}
        return {**marks, "all": all(marks.values())}

    def text(self) -> str:
        return " ".join(v or "?" for v in (self.colour, self.shape, self.position))


def score(image: np.ndarray) -> Verdict:
    """image [H, W, 3] uint8 -> what it shows (None for an attribute it cannot read)."""
    pixels = np.asarray(image, np.float32)[..., :3]
    distance = np.linalg.norm(pixels - np.array(BACKGROUND, np.float32), axis=-1)
    region = largest_region(distance > STANDS_OUT)
    if region.sum() < MIN_AREA * region.size:
        return Verdict(None, None, None)
    colour = _colour(pixels[region])
    # the shape's extent: pixels at least half-way from the background to the region's own colour
    strength = np.median(distance[region])
    extent = largest_region(distance > 0.5 * strength)
    return Verdict(colour, _shape(extent), _position(extent))


def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a boolean mask (all False when the mask is empty)."""
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    best, best_size, label = 0, 0, 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        label += 1
        labels[y0, x0] = label
        queue, size = deque([(y0, x0)]), 0
        while queue:
            y, x = queue.popleft()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    queue.append((ny, nx))
        if size > best_size:
            best, best_size = label, size
    return labels == best if best else np.zeros_like(mask)


def _colour(pixels: np.ndarray) -> str | None:
    median = np.median(pixels, axis=0)
    names = list(COLOURS)
    distances = [np.linalg.norm(median - np.array(COLOURS[n], np.float32)) for n in names]
    best = int(np.argmin(distances))
    return names[best] if distances[best] <= MAX_COLOUR_DISTANCE else None


def _bbox(region: np.ndarray) -> tuple:
    ys, xs = np.nonzero(region)
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


def corner_fill(region: np.ndarray) -> tuple:
    """(top, bottom): how full the two top and the two bottom corner cells of a 4 x 4 grid over the bounding box
    are, by pixel area (cells split pixels by their overlap)."""
    y0, y1, x0, x1 = _bbox(region)
    box = region[y0:y1, x0:x1].astype(np.float64)
    h, w = box.shape
    wy = _cell_weights(h)
    wx = _cell_weights(w)
    cells = wy @ box @ wx.T / np.outer(wy.sum(1), wx.sum(1))  # [4, 4] occupancy
    return (cells[0, 0] + cells[0, 3]) / 2, (cells[3, 0] + cells[3, 3]) / 2


def _cell_weights(n: int) -> np.ndarray:
    """[4, n]: how much of pixel i lies in cell k when n pixels are cut into 4 equal cells."""
    edges = np.linspace(0, n, 5)
    lo, hi = np.arange(n), np.arange(n) + 1
    return np.clip(np.minimum(hi[None], edges[1:, None]) - np.maximum(lo[None], edges[:-1, None]), 0, 1)


def _shape(region: np.ndarray) -> str | None:
    y0, y1, x0, x1 = _bbox(region)
    if min(y1 - y0, x1 - x0) < 4:
        return None
    top, bottom = corner_fill(region)
    if bottom - top > TRIANGLE_GAP:
        return "triangle"
    mean = (top + bottom) / 2
    return "cross" if mean < CROSS_BELOW else "square" if mean > SQUARE_ABOVE else "circle"


def _position(region: np.ndarray) -> str:
    y0, y1, x0, x1 = _bbox(region)
    h, w = region.shape
    cx, cy = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h
    return min(ANCHORS, key=lambda p: (ANCHORS[p][0] - cx) ** 2 + (ANCHORS[p][1] - cy) ** 2)
