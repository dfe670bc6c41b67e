"""One picture of how a run's samples evolved: a row of its grid per chosen epoch.

    python tools/epoch_strip.py --run runs/pokemon_dcgan_diffaug --epochs 10 50 150 200
    python tools/epoch_strip.py --run runs/mnist5k_dcgan --epochs 1 5 30 --rows 2 --out digits.png

Reads the grids a run already wrote (`samples/epoch_NNN.png`, the same latent batch every
time), so it needs no model and works on a run still training. Each epoch contributes
`--rows` grid rows from `--first-row` on, labelled with the epoch. This is how the README's
pictures were made: the single grid of 64 is too large to compare epochs at a glance, and a
GIF cannot be printed or pasted into a report.

Which rows to pick: in a conditional model's grid row k is class k (`--first-row 4` shows
the 3s); a CycleGAN's grid comes in threes per domain (real A, A->B, A->B->A, then B's), so
`--first-row 2` shows the translations, where row 1, the real images, never changes.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFont

from tfgen import cli, images
from tfgen.errors import RunError
from tfgen.files import atomic_path

LABEL_WIDTH = 96


def main(argv=None):
    """`python tools/epoch_strip.py ...`; exit status 2 with one line for a user error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run directory, e.g. runs/pokemon_dcgan_diffaug")
    parser.add_argument("--epochs", type=int, nargs="+", help="epochs with a saved grid (default: all)")
    parser.add_argument("--rows", type=int, default=1, help="grid rows per epoch (default 1)")
    parser.add_argument("--first-row", type=int, default=1, help="the first of them, from 1 (default 1)")
    parser.add_argument("--out", help="output PNG (default: <run>/epoch_strip.png)")
    return cli.run(strip, parser.parse_args(argv))


def saved_grids(run):
    """{epoch: path} of a run's sample grids, found by name, so a run still training (or
    stopped early) offers the epochs it got to; RunError if it has none."""
    grids = images.epoch_grids(run / "samples")
    if not grids:
        raise RunError(f"--run: {run} has no sample grids ({run / 'samples'}/epoch_NNN.png)")
    return grids


def image_size(run):
    """The run's data.image_size from its config.yaml: the cell size of its grids."""
    path = run / "config.yaml"
    if not path.is_file():
        raise RunError(f"--run: {run} is not a run directory (no config.yaml)")
    try:
        size = yaml.safe_load(path.read_text())["data"]["image_size"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise RunError(f"{path}: no readable data.image_size ({type(exc).__name__})") from None
    if not isinstance(size, int) or size < 1:
        raise RunError(f"{path}: data.image_size must be a positive integer, got {size!r}")
    return size


def strip(args):
    """Write the strip for `args` (see main); returns the exit status."""
    run = Path(args.run)
    size = image_size(run)
    if args.rows < 1 or args.first_row < 1:
        raise RunError(f"--rows and --first-row must be >= 1, got {args.rows} and {args.first_row}")
    grids = saved_grids(run)
    epochs = list(dict.fromkeys(args.epochs or sorted(grids)))  # each once, in the order given
    missing = [e for e in epochs if e not in grids]
    if missing:
        raise RunError(
            f"--epochs: {run} has no grid for epoch {', '.join(map(str, missing))}; "
            f"it has {', '.join(map(str, sorted(grids)))}"
        )
    bands = [_band(grids[e], e, size, args.first_row - 1, args.rows) for e in epochs]
    picture = Image.new(bands[0].mode, (max(b.width for b in bands), sum(b.height for b in bands)), "white")
    top = 0
    for band in bands:
        picture.paste(band, (0, top))
        top += band.height
    out = Path(args.out) if args.out else run / "epoch_strip.png"
    with atomic_path(out) as tmp:
        picture.save(tmp, format="PNG")
    print(
        f"wrote {out} (epochs {', '.join(map(str, epochs))}; grid rows {args.first_row}-"
        f"{args.first_row + args.rows - 1} of each)"
    )
    return 0


def _band(path, epoch, size, first, rows):
    """Rows first .. first + rows - 1 (from 0) of one grid, at the grid's own scale, with the
    epoch on the left."""
    try:
        with Image.open(path) as picture:
            grid = np.asarray(picture if picture.mode in ("L", "RGB") else picture.convert("RGB"))
    except OSError as exc:
        raise RunError(f"{path}: cannot be read as an image ({exc})") from None
    try:
        cells = images.grid_cells(grid, size)
    except ValueError as exc:
        raise RunError(f"{path}: {exc}; data.image_size is {size} in the run's config.yaml") from None
    if first + rows > len(cells):
        raise RunError(f"--first-row {first + 1} --rows {rows}: {path} has only {len(cells)} grid rows")
    picked = cells[first : first + rows]
    part = images.make_grid(picked.reshape(-1, *picked.shape[2:]), columns=cells.shape[1], min_width=grid.shape[1])
    body = images.to_pil(part)
    band = Image.new(body.mode, (LABEL_WIDTH + body.width, body.height), "white")
    band.paste(body, (LABEL_WIDTH, 0))
    ImageDraw.Draw(band).text(
        (8, body.height // 2), f"epoch {epoch}", fill="black", anchor="lm", font=ImageFont.load_default(size=16)
    )
    return band


if __name__ == "__main__":
    sys.exit(main())
