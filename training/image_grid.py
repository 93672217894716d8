"""Image grids for training snapshots (reals, fakes at init and at every snapshot) and generate.py.

Writes are atomic (temp file + rename), so a killed run never leaves half a PNG.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import PIL.Image

from dnnlib.files import atomic_write

MAX_GRID_CELLS = 16  # per side; official uses up to 32, but at 16-64 px that is 1024 images per grid on a CPU


def grid_shape(resolution: int) -> tuple[int, int]:
    """(columns, rows): about a 1080p-sized grid, between 7x4 and 16x16 cells."""
    gw = int(np.clip(1920 // resolution, 7, MAX_GRID_CELLS))
    gh = int(np.clip(1080 // resolution, 4, MAX_GRID_CELLS))
    return gw, gh


def snapshot_grid_indices(
    labels: np.ndarray | None, num_images: int, grid_size: tuple[int, int], random_seed: int = 0
) -> np.ndarray:
    """Dataset indices [gw * gh] for the grid: a random subset, or with labels one class per row.

    labels: [N, label_dim] float (one-hot or vectors) or None.
    """
    gw, gh = grid_size
    rnd = np.random.RandomState(random_seed)
    order = rnd.permutation(num_images)
    if labels is None or labels.shape[1] == 0:
        return order[np.arange(gw * gh) % num_images]
    groups: dict[tuple, list[int]] = {}
    for idx in order:
        groups.setdefault(tuple(labels[idx].tolist()), []).append(int(idx))
    keys = sorted(groups, reverse=True)
    cells = []
    for row in range(gh):
        members = groups[keys[row % len(keys)]]
        cells += [members[col % len(members)] for col in range(gw)]
    return np.asarray(cells, dtype=np.int64)


def to_uint8(images: np.ndarray, drange: Sequence[float]) -> np.ndarray:
    """float [N, C, H, W] in drange -> uint8 [N, C, H, W] (rounded, clipped)."""
    lo, hi = drange
    scaled = (np.asarray(images, dtype=np.float32) - lo) * (255 / (hi - lo))
    return np.rint(scaled).clip(0, 255).astype(np.uint8)


def save_png(path: str, image: np.ndarray) -> None:
    """uint8 [H, W, C] (C = 1 or 3) -> PNG at `path`, atomically."""
    if image.ndim != 3 or image.shape[2] not in (1, 3) or image.dtype != np.uint8:
        raise ValueError(f"save_png({path}): expected uint8 [H, W, 1|3], got {image.dtype} {list(image.shape)}")
    pil = PIL.Image.fromarray(image[:, :, 0], "L") if image.shape[2] == 1 else PIL.Image.fromarray(image, "RGB")
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def save_image_grid(images: np.ndarray, path: str, drange: Sequence[float], grid_size: tuple[int, int]) -> None:
    """images [gw * gh, C, H, W] (float in drange, or uint8 with drange (0, 255)) -> one PNG, row-major."""
    gw, gh = grid_size
    n, channels, height, width = images.shape
    if n != gw * gh:
        raise ValueError(f"save_image_grid({path}): {n} images do not fill a {gw}x{gh} grid")
    pixels = images if images.dtype == np.uint8 else to_uint8(images, drange)
    grid = pixels.reshape(gh, gw, channels, height, width).transpose(0, 3, 1, 4, 2)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_png(path, grid.reshape(gh * height, gw * width, channels))
