"""One picture of how a run's samples evolved: a row of its grid per chosen epoch.

    python tools/epoch_strip.py --run runs/pokemon_dcgan_diffaug --epochs 10 50 150 200
    python tools/epoch_strip.py --run runs/mnist5k_dcgan --epochs 30 --rows 2 --out digits.png

Reads the grids a run already wrote (`samples/epoch_NNN.png`, the same latent batch every
time), so it needs no model and works on a run still training. Each epoch contributes its
first `--rows` grid rows, labelled with the epoch. This is how the README's pictures were
made; the single grid of 64 is too large to compare epochs at a glance, a GIF cannot be
printed or pasted into a report.
"""

import argparse
import re
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run directory, e.g. runs/pokemon_dcgan_diffaug")
    parser.add_argument("--epochs", type=int, nargs="+", help="epochs with a saved grid (default: all)")
    parser.add_argument("--rows", type=int, default=1, help="grid rows per epoch (default 1)")
    parser.add_argument("--out", help="output PNG (default: <run>/epoch_strip.png)")
    return cli.run(strip, parser.parse_args(argv))


def saved_grids(run):
    """{epoch: path} of a run's sample grids; RunError if it has none."""
    grids = {int(m.group(1)): p for p in (run / "samples").glob("epoch_*.png")
             if (m := re.fullmatch(r"epoch_(\d+)\.png", p.name))}
    if not grids:
        raise RunError(f"--run: {run} has no sample grids ({run / 'samples'}/epoch_NNN.png)")
    return grids


def strip(args):
    run = Path(args.run)
    if not (run / "config.yaml").is_file():
        raise RunError(f"--run: {run} is not a run directory (no config.yaml)")
    if args.rows < 1:
        raise RunError(f"--rows must be >= 1, got {args.rows}")
    image_size = yaml.safe_load((run / "config.yaml").read_text())["data"]["image_size"]
    grids = saved_grids(run)
    epochs = args.epochs or sorted(grids)
    missing = [e for e in epochs if e not in grids]
    if missing:
        raise RunError(f"--epochs: {run} has no grid for epoch {', '.join(map(str, missing))}; "
                       f"it has {', '.join(map(str, sorted(grids)))}")
    bands = [_band(grids[e], e, image_size, args.rows) for e in epochs]
    picture = Image.new(bands[0].mode, (max(b.width for b in bands), sum(b.height for b in bands)), "white")
    top = 0
    for band in bands:
        picture.paste(band, (0, top))
        top += band.height
    out = Path(args.out) if args.out else run / "epoch_strip.png"
    with atomic_path(out) as tmp:
        picture.save(tmp, format="PNG")
    print(f"wrote {out} (epochs {', '.join(map(str, epochs))}, {args.rows} row(s) each)")
    return 0


def _band(path, epoch, image_size, rows):
    """The first `rows` rows of one grid, at the grid's own scale, with the epoch on the left."""
    grid = np.asarray(Image.open(path))
    try:
        cells = images.grid_cells(grid, image_size)
    except ValueError as exc:
        raise RunError(f"{path}: {exc}") from None
    picked = cells[:rows]
    part = images.make_grid(picked.reshape(-1, *picked.shape[2:]), columns=cells.shape[1], min_width=grid.shape[1])
    body = images.to_pil(part)
    band = Image.new(body.mode, (LABEL_WIDTH + body.width, body.height), "white")
    band.paste(body, (LABEL_WIDTH, 0))
    ImageDraw.Draw(band).text((8, body.height // 2), f"epoch {epoch}", fill="black", anchor="lm",
                              font=ImageFont.load_default(size=16))
    return band


if __name__ == "__main__":
    sys.exit(main())
