"""Preview what a config's data pipeline feeds the model, before training on it.

    python tools/preview_data.py --config anime_dcgan.yaml [--set data.path=...] [--out preview.png]

Prints the source, image count, classes and skipped files, and writes a grid of the first
batch exactly as the model will see it (after compositing, channel conversion, crop and
flip), so a wrong crop or a folder of the wrong images shows before hours of training.
For a two-domain model (CycleGAN) the grid shows domain A's batch, then domain B's.
"""

import argparse
import sys

import numpy as np

from tfgen import cli, images
from tfgen.config import load_config
from tfgen.data import build_dataset
from tfgen.models import get_model_class


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="data_preview.png")
    return cli.run(preview, parser.parse_args(argv))


def preview(args):
    cfg = load_config(args.config, args.set)
    data = build_dataset(cfg.data, seed=cfg.train.seed, domains=get_model_class(cfg.model.name).domains)
    first = next(iter(data.dataset))
    if isinstance(first[0], tuple):  # two domains: A's batch, then B's
        batch = np.concatenate([first[0][0], first[1][0]])
    else:
        batch = first[0]
    columns = cfg.data.batch_size if isinstance(first[0], tuple) and cfg.data.batch_size <= 16 else None
    images.save_png(args.out, images.make_grid(images.to_uint8(batch), columns=columns))
    print(f"source:   {data.description}")
    print(
        f"images:   {data.num_examples} of {'x'.join(map(str, data.image_shape))}, "
        f"{data.steps_per_epoch} batches of {cfg.data.batch_size} per epoch"
    )
    print(f"classes:  {', '.join(data.class_names) if data.class_names else 'none (unlabelled)'}")
    print(f"skipped:  {len(data.skipped)} undecodable file(s)")
    print(f"preview:  {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
