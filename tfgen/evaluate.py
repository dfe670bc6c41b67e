"""`tfgen evaluate --run runs/X [--metric fid,kid,is,pr] [--num 10000] [--option steps=10]`

Scores a trained run against its own training data and prints a table beside the
real-vs-real floor: the same metrics between two disjoint halves of the real images, the
value no generator can beat at that sample size, so a number has a meaning. Writes
`runs/X/eval.json`. The scoring itself (also run during training and by `tfgen sweep`) is
`tfgen.scoring`.
"""

import argparse
import sys
from pathlib import Path

from tfgen import cli, metrics
from tfgen.errors import ConfigError
from tfgen.scoring import evaluate_run, format_table


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tfgen evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run directory, e.g. runs/digits_dcgan")
    parser.add_argument("--metric", default="fid,kid,pr", help=f"comma-separated: {', '.join(metrics.METRIC_NAMES)}")
    parser.add_argument("--num", type=int, default=10000, help="generated samples (and real images, at most)")
    parser.add_argument("--extractor", default="classifier", choices=metrics.EXTRACTORS)
    parser.add_argument("--seed", type=int, default=0)
    cli.add_option_argument(parser)
    cli.add_verbose_argument(parser)
    args = parser.parse_args(argv)
    return cli.run(_evaluate_command, args)


def _evaluate_command(args):
    if args.num < 10:
        raise ConfigError(f"--num: {args.num} is too few samples; use at least 10")
    try:
        names = metrics.parse_metric_names(args.metric)
    except ValueError as exc:
        raise ConfigError(f"--metric: {exc}") from None
    result = evaluate_run(args.run, names, args.num, args.extractor, args.seed, dict(args.option))
    print(format_table(result))
    print(f"written: {Path(args.run) / 'eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
