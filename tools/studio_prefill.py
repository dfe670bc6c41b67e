"""Write N synthetic kept avatars into a studio's store, to measure the studio with a million kept.

    python tools/studio_prefill.py --run runs/mnist5k_cond_gan --count 1000000 --features pixels
    python tools/studio_prefill.py --run runs/mnist5k_cond_gan --count 100000 --db postgresql://...

The rows are filed under the run's source name, in the feature space the server will use
(`--features`, as `tfgen serve --features`), so `tfgen serve --theme NAME=RUN` loads them at
start-up and screens every candidate against them. They are synthetic: features are random
directions with the norms of the model's own samples' features, so they lie far from each other
and from what the model draws (the theme is not exhausted; what is measured is the cost of
holding and scanning a million), owned by `--owners` made-up owners, with random noise and labels.
Rows go in with one transaction per `--batch`, with a progress line.
"""

import argparse
import sys
import time

import numpy as np

from tfgen import store, uniqueness
from tfgen.sampling import Sampler


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the run the studio serves (its folder names the source)")
    parser.add_argument("--count", type=int, required=True, help="avatars to add")
    parser.add_argument("--db", help="the store (default: <run>/avatars.db); a file or postgresql:// URL")
    parser.add_argument("--features", choices=["pixels", "classifier"], default="pixels")
    parser.add_argument("--owners", type=int, default=100_000, help="made-up owners to spread them over")
    parser.add_argument("--batch", type=int, default=20_000, help="rows per transaction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--measure",
        type=int,
        default=0,
        metavar="N",
        help="then time N keeps and N screenings the way the studio does them (no HTTP, no model)",
    )
    args = parser.parse_args(argv)

    sampler = Sampler.from_run(args.run)
    if args.features == "pixels":
        space = uniqueness.FeatureSpace("pixels")
    else:
        data = uniqueness.training_data(sampler)
        space = uniqueness.feature_space("classifier", sampler, data)
    real = space.features(sampler.sample(64, seed=args.seed))
    dim = real.shape[1]
    norms = np.linalg.norm(real, axis=1)
    db, source = store.open_source(args.run, args.db, space.name, dim, sampler.noise_size)
    classes = max(len(sampler.class_names), 1)
    rng = np.random.default_rng(args.seed)
    owners = [store.owner_key(f"prefill-{k}") for k in range(args.owners)]
    start, done = time.monotonic(), 0
    while done < args.count:
        n = min(args.batch, args.count - done)
        directions = rng.standard_normal((n, dim)).astype(np.float32)
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        features = directions * rng.choice(norms, n)[:, None].astype(np.float32)
        z = rng.standard_normal((n, sampler.noise_size)).astype(np.float32)
        labels = rng.integers(0, classes, n) if classes > 1 else np.full(n, -1)
        who = rng.integers(0, len(owners), n)
        rows = [
            {
                "owner": owners[who[i]],
                "label": int(labels[i]),
                "features": features[i],
                "z": z[i],
                "train_distance": 1.0,
                "seed": int(i),
            }
            for i in range(n)
        ]
        with db.writing(source) as writer:
            writer.insert(rows)
        done += n
        rate = done / (time.monotonic() - start)
        print(f"\r{done:,}/{args.count:,} rows ({rate:,.0f} rows/s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"{source} in {db.where}: {db.count(source):,} avatars kept ({space.name} features, {dim}-d)")
    if args.measure:
        measure(db, source, dim, real, sampler.noise_size, args.measure)
    return 0


def measure(db, source, dim, real, noise_size, count, min_distance=0.1):
    """Time what a keep and a screening cost at this many kept avatars, as the studio runs them:
    loading the index once (start-up), screening 8 draws (one generate round), and a keep (write
    lock, the rows since the candidate's screening, an exact check, insert, commit)."""
    started = time.monotonic()
    index = uniqueness.KeptIndex(dim, real).refresh(db.reader(source))
    print(f"index loaded: {len(index):,} rows in {time.monotonic() - started:.1f} s")
    rng = np.random.default_rng(1)
    screen, keep = [], []
    for _ in range(count):
        draws = real[rng.integers(0, len(real), 8)] + rng.normal(0, 0.05, (8, dim))
        t = time.perf_counter()
        index.nearest(draws, radius=min_distance)
        screen.append(time.perf_counter() - t)
        watermark = index.seq
        t = time.perf_counter()
        with db.writing(source) as writer:
            index.refresh(writer)
            if index.nearest(draws[:1], radius=min_distance, since=watermark)[0] > min_distance:
                writer.insert(
                    [
                        {
                            "owner": "bench",
                            "label": 0,
                            "features": draws[0],
                            "z": np.zeros(noise_size),
                            "train_distance": 1.0,
                            "seed": 0,
                        }
                    ]
                )
        keep.append(time.perf_counter() - t)
    for name, times in (("screen 8 draws", screen), ("keep", keep)):
        ms = np.array(times) * 1000
        print(f"{name}: p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms over {count}")


if __name__ == "__main__":
    sys.exit(main())
