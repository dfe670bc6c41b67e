"""Does SDPC's top-down feedback help at inference? Score one trained SDPC run's reconstructions
of clean, noisy and blurred images with the feedback it was trained with and with it off.

    python tools/sdpc_feedback.py --run runs/sweeps/sdpc_comparison_mnist5k/mnist5k_sdpc [--k-fb 0,1]

Same dictionaries, same images, only the inference's `k_fb` changes, so a difference is the
feedback's doing at inference (Boutin et al. 2020 report better-conditioned codes with it). The
errors are `tfgen.scoring.reconstruction_errors` (mean squared pixel error in [-1, 1]).
"""

import argparse
import json
import sys

from tfgen import cli
from tfgen.data import build_dataset
from tfgen.runs import load_run
from tfgen.scoring import MAX_RECONSTRUCTED, reconstruction_errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished sdpc (or sdpc_gan) run directory")
    parser.add_argument("--k-fb", default="0,1", help="comma-separated feedback strengths to infer with")
    parser.add_argument("--num", type=int, default=MAX_RECONSTRUCTED)
    return cli.run(compare, parser.parse_args(argv))


def compare(args):
    cfg, model = load_run(args.run)
    data = build_dataset(cfg.data, seed=cfg.train.seed)
    rows = {}
    for k_fb in (float(k) for k in args.k_fb.split(",")):
        model.k_fb = k_fb  # read by the step sizes and the gradients of every inference
        rows[k_fb] = reconstruction_errors(model, data, args.num)
        print(
            f"k_fb {k_fb:g} (trained with {cfg.model.params['k_fb']:g}): "
            + ", ".join(f"{name} {value:.4f}" for name, value in rows[k_fb].items()),
            flush=True,
        )
    print(json.dumps({str(k): v for k, v in rows.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
