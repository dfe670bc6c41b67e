"""Turning model outputs into pictures: uint8 conversion, grids, PNG and GIF files."""

import math
import re
from pathlib import Path

import numpy as np
from PIL import Image

from tfgen.files import atomic_path


def to_uint8(images):
    """Images in [-1, 1] (any float array) -> uint8 [0, 255]."""
    images = np.asarray(images, dtype=np.float32)
    return np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def make_grid(images, columns=None, pad=2, min_width=512):
    """uint8 [N, H, W, C] -> one uint8 [rows*, cols*, C] grid with white padding.

    Small images are enlarged (nearest neighbour, integer factor) until the grid is at
    least `min_width` pixels wide, so a grid of 16 px digits is still legible.
    """
    images = np.asarray(images)
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = image
    factor = max(1, math.ceil(min_width / grid.shape[1]))
    return grid.repeat(factor, axis=0).repeat(factor, axis=1)


def grid_cells(grid, image_size, pad=2, min_width=512):
    """The inverse of `make_grid`: uint8 grid -> its cells as [rows, columns, h, w, C].

    Reads back grids already on disk (`samples/epoch_NNN.png`), so pictures of a finished run
    need no model. The enlargement factor is the one `make_grid` would have chosen for a grid
    of this many cells of `image_size` px; a grid of other geometry raises ValueError. A last
    row that `make_grid` left part empty comes back with white cells in the gaps.
    """
    grid = np.asarray(grid)
    if grid.ndim == 2:
        grid = grid[..., None]
    height, width = grid.shape[:2]
    pitch = image_size + pad
    # Largest first: a grid enlarged by f also fits every divisor of f, and, for some cell
    # counts, a smaller factor with more cells; the pixels themselves settle it.
    for factor in range(width, 0, -1):
        inner_w, inner_h = width // factor, height // factor
        if (
            width % factor
            or height % factor
            or min(inner_w, inner_h) < pad + pitch
            or (inner_w - pad) % pitch
            or (inner_h - pad) % pitch
            or max(1, math.ceil(min_width / inner_w)) != factor
        ):
            continue
        small = grid[::factor, ::factor]
        if not (small.repeat(factor, 0).repeat(factor, 1) == grid).all():
            continue
        columns, rows = (inner_w - pad) // pitch, (inner_h - pad) // pitch
        return np.stack(
            [
                np.stack(
                    [
                        small[
                            pad + r * pitch : pad + r * pitch + image_size,
                            pad + c * pitch : pad + c * pitch + image_size,
                        ]
                        for c in range(columns)
                    ]
                )
                for r in range(rows)
            ]
        )
    raise ValueError(
        f"a {width}x{height} picture is not a grid of {image_size} px images "
        f"(padding {pad}, at least {min_width} px wide)"
    )


def to_pil(array):
    """uint8 [H, W, 1|3] -> PIL image (mode L or RGB)."""
    array = np.asarray(array)
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def save_png(path, array):
    """Write a uint8 [H, W, 1|3] array as PNG (atomically), creating parent folders."""
    with atomic_path(path) as tmp:
        to_pil(array).save(tmp, format="PNG")


def epoch_grids(folder):
    """{epoch: path} of the `epoch_NNN.png` sample grids in `folder`. By number, not name:
    past epoch 999 the names sort epoch_1000 before epoch_101."""
    return {
        int(m.group(1)): p for p in Path(folder).glob("epoch_*.png") if (m := re.fullmatch(r"epoch_(\d+)\.png", p.name))
    }


def save_gif(path, frames, seconds_per_frame=0.4):
    """Write PNG files (or arrays) as a looping GIF, holding the last frame longer."""
    images = [Image.open(f).convert("RGB") if isinstance(f, (str, Path)) else to_pil(f) for f in frames]
    if not images:
        return
    durations = [int(seconds_per_frame * 1000)] * len(images)
    durations[-1] *= 4
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)


# The corruptions behind the robustness scores (tfgen.evaluate) and pictures: what a model
# reconstructs from them is compared with the clean image.
NOISE_SIGMA = 0.3  # in [-1, 1] units: 0.15 of the full [0, 1] range
BLUR_SIGMA = 1.0  # pixels


def add_noise(images, sigma=NOISE_SIGMA, seed=0):
    """Images in [-1, 1] plus N(0, sigma^2) noise drawn from `seed` (not clipped: the model sees it all)."""
    images = np.asarray(images, np.float32)
    return images + sigma * np.random.default_rng(seed).standard_normal(images.shape).astype(np.float32)


def blur(images, sigma=BLUR_SIGMA):
    """Images [N, H, W, C] blurred by a Gaussian of `sigma` pixels (3 sigma each side, edges replicated)."""
    from scipy.ndimage import gaussian_filter  # noqa: PLC0415  (only the robustness scores need it)

    return gaussian_filter(np.asarray(images, np.float32), sigma=(0, sigma, sigma, 0), mode="nearest", truncate=3.0)
