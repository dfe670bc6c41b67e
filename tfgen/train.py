"""`tfgen train --config digits_dcgan.yaml [--set key=value ...] [--resume]`

The command over `tfgen.training.train_from_config`, where the whole run is in one place:
config -> data -> strategy -> model -> fit -> export, writing everything needed to understand
and reproduce it to `runs/<name>/` (`tfgen.runs`):

    config.yaml        the fully resolved config (re-run it with --config runs/<name>/config.yaml)
    metrics.csv        one row per epoch; curves.png draws it
    samples/           epoch_NNN.png grids from one fixed latent batch; progress.gif animates them
    checkpoints/       model, optimizers, RNG states, running metrics and the global step
                       (resume with --resume, mid-epoch included)
    logs/              TensorBoard
    rollbacks.json     NaN rollbacks so far (train.on_nan: rollback), carried over by --resume
    model.keras        the trained model (keras.saving.load_model after `import tfgen`)
    saved_model/       the generator for plain TensorFlow: generate(z) -> images
"""

import argparse
import sys

from tfgen import cli, training
from tfgen.errors import ConfigError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="tfgen train", description="Train a tfgen model from a YAML config.")
    parser.add_argument(
        "--config",
        required=True,
        help="a config: a bare name (./configs/ first, then the shipped ones: tfgen configs) or a path",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=3 (repeatable)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    group.add_argument("--overwrite", action="store_true", help="delete an existing run of the same name first")
    parser.add_argument(
        "--max-minutes",
        type=float,
        metavar="M",
        help="checkpoint and stop cleanly after M minutes (continue later with --resume)",
    )
    cli.add_verbose_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """CLI entry point; returns the exit status (2 for errors the user can fix)."""
    return cli.run(_train_command, parse_args(argv))


def _train_command(args):
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ConfigError(f"--max-minutes: expected a number of minutes > 0, got {args.max_minutes}")
    stop = training.train_from_config(args.config, args.set, args.resume, args.overwrite, args.max_minutes)
    if stop is None:
        return 0
    return 130 if stop.signalled else 0


if __name__ == "__main__":
    sys.exit(main())
