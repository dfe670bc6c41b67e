"""Score and speed of a diffusion or flow-matching run against its number of sampling steps.

    python tools/sampling_steps.py --run runs/mnist5k_ddpm --steps 5 10 25 50 100 --num 2000

For each step count: FID, precision and recall (as `tfgen evaluate --option steps=N` scores them:
classifier features, the same seed, so only the steps differ; the run is loaded once and its
eval.json is left alone), and sampling images/second of the run's
model in this process (float32 [-1, 1] images from noise, batches of 256, after a warm-up
batch that traces the loop). Writes `<run>/sampling_steps.json` and `<run>/sampling_steps.png`:
the same noise (and labels) sampled at every step count, a row each, so the pictures show what
the numbers say.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tfgen import cli, images, scoring
from tfgen.data import build_dataset
from tfgen.errors import ConfigError
from tfgen.files import write_text
from tfgen.sampling import Sampler, labels_for

ROW = 10  # images per row of the picture: one of each class for a 10-class model


def images_per_second(sampler, steps, count=256):
    """Images/s of `sampler` at `steps`, timed after one warm-up batch (which traces the loop)."""
    rng = np.random.default_rng(1)
    z = sampler.noise(rng, count)
    labels = labels_for(sampler, count, None)
    sampler.images(z[:8], None if labels is None else labels[:8], steps=steps)
    start = time.perf_counter()
    sampler.images(z, labels, steps=steps)
    return count / (time.perf_counter() - start)


def measure(args):
    run = Path(args.run)
    sampler = Sampler.from_run(run)
    cfg, model = sampler.cfg, sampler.model
    if "steps" not in sampler.sampling_options:
        raise ConfigError(f"--run: {args.run} holds a model without a steps option ({cfg.model.name})")
    # the data, its features and the extractor once, for every step count (as tfgen evaluate
    # would load them), and the run's own eval.json left as it is
    data = build_dataset(cfg.data, seed=cfg.train.seed)
    key, cache = scoring.dataset_key(cfg.data), run.parent / ".cache"
    extractor = scoring.make_extractor("classifier", data, cache, key)
    z = sampler.noise(np.random.default_rng(0), ROW)
    labels = labels_for(sampler, ROW, None)
    rows, results = [], []
    for steps in args.steps:
        scores = scoring.evaluate_model(
            model, data, ["fid", "pr"], args.num, extractor, cache, key, options={"steps": steps}
        )
        rate = images_per_second(sampler, steps)
        results.append({"steps": steps, "images_per_s": rate, **{k: scores[k] for k in ("fid", "precision", "recall")}})
        print(
            f"steps {steps:>4}: FID {scores['fid']:7.3f}  precision {scores['precision']:.3f}  "
            f"recall {scores['recall']:.3f}  {rate:8.1f} images/s",
            flush=True,
        )
        rows.append(sampler.images(z, labels, steps=steps))
    write_text(run / "sampling_steps.json", json.dumps({"num": args.num, "results": results}, indent=1))
    grid = images.make_grid(images.to_uint8(np.concatenate(rows)), ROW)
    images.save_png(run / "sampling_steps.png", grid)
    print(f"written: {run / 'sampling_steps.json'}, {run / 'sampling_steps.png'} (rows: {args.steps} steps)")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a diffusion or flow-matching run folder")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 25, 50, 100])
    parser.add_argument("--num", type=int, default=2000, help="samples scored per step count (default 2000)")
    return cli.run(measure, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
