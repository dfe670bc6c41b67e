"""`tfgen generate --run runs/X --num 64 --out grid.png`

Pictures from a trained run, with `--export DIR` from a SavedModel that tfgen wrote (its
`tfgen.json` says what the signatures take; no tfgen model class is loaded), or with
`--preset NAME` from a pretrained model shipped with tfgen (`tfgen presets`). The latents come
from `--seed`, so a seed reproduces its images exactly. Four modes:

- default: `--num` images as one grid (`--individual`: one file each; `--format npy`: the
  raw float32 outputs in [-1, 1]). Conditional models take `--label N` or `--class NAME`;
  without either, each row of the grid is one class.
- `--interpolate A B`: the path between the latents of seeds A and B, as a strip PNG and a GIF.
- `--unique`: images farther than `--min-distance` from every training image (so none
  copies the training set) and from every image issued before, which the avatar store
  (`avatars.db` in the run directory, or `--db`; `tfgen.store`) remembers, shared with the
  avatar studio (so no two users get the same picture).
- `--memorisation-report N`: how close N samples come to their nearest training images: a
  histogram beside the training set's own nearest-neighbour distances, and the closest pairs.

`--truncation T` (the truncation trick, Brock et al. 2019) redraws every latent entry with
|z| > T: less variety, fewer failures. Distances are measured in a feature space where 0 is
identical and 2 the most different: unit-length features of the dataset's feature classifier
(`tfgen.metrics`) when the data has labels, else the RMS difference of pixels in [-1, 1]
downsampled to at most 16 px.
"""

import argparse
import json
import math
import secrets
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tfgen import cli, images, presets, store, uniqueness  # noqa: E402
from tfgen.errors import ConfigError  # noqa: E402
from tfgen.files import atomic_path  # noqa: E402
from tfgen.sampling import Sampler, grid_columns, grid_labels, labels_for, resolve_label  # noqa: E402

log = cli.log
# suffixes that name a file format: --out may not promise another than the one written
# (any other dot, as in a stem like samples_v1.5, is fine)
FORMAT_SUFFIXES = {".png", ".npy", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".npz"}


# -- writing pictures ------------------------------------------------------------------------


def save_images(pictures, out, fmt="png", individual=False, names=None, columns=None):
    """Write float [-1, 1] images as one grid PNG or one .npy (`out` a file), or with
    `individual` one file each named by `names` in the folder `out`. The paths written."""
    out = Path(out)
    if individual:
        if out.is_file():
            raise ConfigError(f"--out: {out} is a file; --individual writes one file per image into a folder")
        names = names or [f"{i:04d}" for i in range(len(pictures))]
        paths = []
        for name, picture in zip(names, pictures):
            path = out / f"{name}.{fmt}"
            _save_one(path, picture[None], fmt, columns=1, grid=False)
            paths.append(path)
        return paths
    if out.is_dir():
        raise ConfigError(f"--out: {out} is a folder; give a file name, or pass --individual")
    _save_one(out, pictures, fmt, columns, grid=True)
    return [out]


def _save_one(path, pictures, fmt, columns, grid):
    if fmt == "npy":
        with atomic_path(path) as tmp:
            np.save(tmp, pictures if grid else pictures[0])
    elif grid:
        images.save_png(path, images.make_grid(images.to_uint8(pictures), columns))
    else:  # a single picture at its own size: the file an app hands out
        images.save_png(path, images.to_uint8(pictures[0]))


# -- interpolation ---------------------------------------------------------------------------


def slerp(a, b, t):
    """Spherical interpolation between two noise samples of any shape (White 2016): stays at
    the typical norm of N(0, I)."""
    cos = np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def interpolate(sampler, seed_a, seed_b, steps, label=None, truncation=None, **options):
    """Float images [steps, H, W, C] along the path from seed A's noise to seed B's."""
    z_a = sampler.noise(np.random.default_rng(seed_a), 1, truncation)[0]
    z_b = sampler.noise(np.random.default_rng(seed_b), 1, truncation)[0]
    z = np.stack([slerp(z_a, z_b, t) for t in np.linspace(0.0, 1.0, steps)]).astype(np.float32)
    labels = np.full(steps, 0 if label is None else label, np.int32) if sampler.conditional else None
    return sampler.images(z, labels, **options)


def save_interpolation(pictures, out):
    """A strip PNG at `out` and a back-and-forth GIF beside it; the two paths."""
    out = Path(out)
    frames = images.to_uint8(pictures)
    images.save_png(out, images.make_grid(frames, columns=len(frames)))
    enlarged = [images.make_grid(f[None], columns=1, pad=0, min_width=256) for f in frames]
    gif = out.with_suffix(".gif")
    images.save_gif(gif, enlarged + enlarged[-2:0:-1], seconds_per_frame=0.15)
    return [out, gif]


# -- memorisation report ---------------------------------------------------------------------


def memorisation_report(
    sampler,
    space,
    data,
    train_features,
    num,
    seed,
    out,
    label=None,
    truncation=None,
    min_distance=None,
    pairs=16,
    options=None,
):
    """How close `num` samples come to the training set; writes into the folder `out`:

    - `distances.png`: histogram of each sample's distance to its nearest training image,
      beside the training images' own nearest-neighbour distances (leave-one-out, up to 2000
      of them): samples much closer than that are copying;
    - `closest_pairs.png`: the `pairs` closest samples next to their training neighbours;
    - `memorisation.json`: the summary (quantiles, how many fall below `min_distance`).

    Returns the summary dict.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    z = sampler.noise(rng, num, truncation)
    pictures = sampler.images(z, labels_for(sampler, num, label), **(options or {}))
    distance, index = uniqueness.nearest(space.features(pictures), train_features)
    queries = np.sort(rng.choice(len(train_features), min(2000, len(train_features)), replace=False))
    real_distance, _ = uniqueness.nearest(train_features[queries], train_features, exclude=queries)

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0.0, max(distance.max(), real_distance.max()) * 1.05 + 1e-9, 40)
    ax.hist(real_distance, bins=bins, density=True, alpha=0.5, label="training image -> nearest other training image")
    ax.hist(distance, bins=bins, density=True, alpha=0.5, label="sample -> nearest training image")
    if min_distance is not None:
        ax.axvline(min_distance, color="red", linestyle="--", label=f"--min-distance {min_distance}")
    ax.set_xlabel(f"distance ({space.name} features)")
    ax.set_title(f"{num} samples of {sampler.description}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / "distances.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

    closest = np.argsort(distance)[:pairs]
    neighbours = uniqueness.training_images(data, index[closest])
    per_row = 4
    rows = math.ceil(len(closest) / per_row)
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(2 * per_row * 1.3, rows * 1.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for n, k in enumerate(closest):
        r, c = divmod(n, per_row)
        for ax, picture, title in (
            (axes[r, 2 * c], pictures[k], f"sample {k}"),
            (axes[r, 2 * c + 1], neighbours[n], f"train {index[k]}\nd={distance[k]:.3f}"),
        ):
            ax.imshow(
                images.to_uint8(picture).squeeze(),
                cmap="gray" if picture.shape[-1] == 1 else None,
                interpolation="nearest",
            )
            ax.set_title(title, fontsize=7)
    fig.suptitle("closest samples (left) and their nearest training images (right)", fontsize=9)
    fig.tight_layout()
    with atomic_path(out / "closest_pairs.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

    quantiles = (0.0, 0.01, 0.05, 0.5)
    summary = {
        "num_samples": num,
        "seed": seed,
        "feature_space": space.name,
        "num_training_images": len(train_features),
        "sample_to_training": {f"q{int(q * 100):02d}": float(np.quantile(distance, q)) for q in quantiles},
        "training_to_training": {f"q{int(q * 100):02d}": float(np.quantile(real_distance, q)) for q in quantiles},
        "closer_than_any_training_pair": int(np.sum(distance < real_distance.min())),
        "closest": [
            {"sample": int(k), "training_image": int(index[k]), "distance": float(distance[k])} for k in closest
        ],
    }
    if min_distance is not None:
        summary["min_distance"] = min_distance
        summary["below_min_distance"] = int(np.sum(distance <= min_distance))
    with atomic_path(out / "memorisation.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary


# -- the command -----------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="tfgen generate",
        description="Generate images from a trained run, an exported model or a preset.",
        epilog="Distances (--min-distance) are in [0, 2]; --memorisation-report shows the training "
        "set's own nearest-neighbour distances to choose one.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a finished run directory, e.g. runs/digits_dcgan")
    source.add_argument(
        "--export", metavar="DIR", help="a SavedModel folder with its tfgen.json (no tfgen model needed)"
    )
    source.add_argument(
        "--preset", metavar="NAME", help="a pretrained preset shipped with tfgen (tfgen presets), or a preset folder"
    )
    parser.add_argument("--num", type=int, default=64, help="images to generate (default 64)")
    parser.add_argument("--out", help="output file, or folder with --individual (default: generated.<format>)")
    parser.add_argument("--seed", type=int, help="latent seed; the same seed gives the same images (default: random)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--label", type=int, help="class index, for conditional models")
    which.add_argument("--class", dest="class_name", metavar="NAME", help="class name (from tfgen.json)")
    parser.add_argument("--truncation", type=float, metavar="T", help="redraw noise entries with |z| > T (T > 0)")
    cli.add_option_argument(parser)
    parser.add_argument("--format", choices=("png", "npy"), help="png (default) or npy (float32 in [-1, 1])")
    parser.add_argument("--individual", action="store_true", help="one file per image in the folder --out")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--interpolate",
        type=int,
        nargs=2,
        metavar=("SEED_A", "SEED_B"),
        help="a strip PNG and a GIF along the path between two seeds' latents",
    )
    mode.add_argument(
        "--unique",
        action="store_true",
        help="only images farther than --min-distance from the training set and all issued before",
    )
    mode.add_argument(
        "--memorisation-report",
        type=int,
        metavar="N",
        help="distances of N samples to their nearest training images (histogram, closest pairs)",
    )
    parser.add_argument("--steps", type=int, default=10, help="--interpolate: images along the path (default 10)")
    parser.add_argument(
        "--min-distance", type=float, default=0.1, help="--unique: the smallest distance allowed (default 0.1)"
    )
    parser.add_argument(
        "--features",
        choices=uniqueness.FEATURES,
        default="auto",
        help="--unique / report: distance space (auto: classifier if the data has labels)",
    )
    parser.add_argument(
        "--db",
        help=f"--unique: the avatar store, a file or a postgresql:// URL (default: <run>/{store.STORE_NAME})",
    )
    parser.add_argument("--max-draws", type=int, help="--unique: give up after this many draws (default 100 x --num)")
    cli.add_verbose_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """CLI entry point; returns the exit status (2 for errors the user can fix)."""
    return cli.run(_generate_command, parse_args(argv))


def check_args(args):
    """ConfigError for values argparse cannot check; fills in --format and --out defaults."""
    if args.num < 1:
        raise ConfigError(f"--num: expected an integer >= 1, got {args.num}")
    if args.truncation is not None and not args.truncation > 0:
        raise ConfigError(f"--truncation: expected a number > 0, got {args.truncation}")
    if args.steps < 2:
        raise ConfigError(f"--steps: expected an integer >= 2, got {args.steps}")
    if not args.min_distance >= 0:
        raise ConfigError(f"--min-distance: expected a number >= 0, got {args.min_distance}")
    if args.max_draws is not None and args.max_draws < 1:
        raise ConfigError(f"--max-draws: expected an integer >= 1, got {args.max_draws}")
    if args.memorisation_report is not None and args.memorisation_report < 2:
        raise ConfigError(f"--memorisation-report: expected a number of samples >= 2, got {args.memorisation_report}")
    if args.interpolate or args.memorisation_report is not None:
        what = (
            "--interpolate writes a PNG strip and a GIF"
            if args.interpolate
            else "--memorisation-report writes pictures and a JSON summary into a folder"
        )
        if args.format == "npy" or args.individual:
            raise ConfigError(f"{what}; drop --format npy / --individual")
    if args.format is None:
        args.format = "npy" if args.out and args.out.lower().endswith(".npy") else "png"
    if args.out is None:
        if args.interpolate:
            args.out = "interpolation.png"
        elif args.memorisation_report is not None:
            args.out = str(Path(args.run or ".") / "memorisation")
        else:
            args.out = "generated" if args.individual else f"generated.{args.format}"
    suffix = Path(args.out).suffix.lower()
    if not args.individual and args.memorisation_report is None and suffix in FORMAT_SUFFIXES - {f".{args.format}"}:
        raise ConfigError(
            f"--out: {args.out} ends in {suffix}, but the file written is {args.format.upper()} data; "
            f"name it .{args.format}"
        )
    if (args.unique or args.memorisation_report is not None) and not args.run:
        flag = "--unique" if args.unique else "--memorisation-report"
        raise ConfigError(f"{flag} compares with the training images and needs --run, not --export or --preset")


def _generate_command(args):
    check_args(args)
    if args.preset:
        sampler = presets.resolve(args.preset).sampler()
    else:
        sampler = Sampler.from_run(args.run) if args.run else Sampler.from_export(args.export)
    label = resolve_label(sampler, args.label, args.class_name)
    if args.seed is None and not args.interpolate:
        args.seed = secrets.randbelow(2**31)
        log.info("seed %d (pass --seed %d for the same images again)", args.seed, args.seed)

    options = sampler.check_options(dict(args.option))
    if args.interpolate:
        pictures = interpolate(sampler, *args.interpolate, args.steps, label, args.truncation, **options)
        written = save_interpolation(pictures, args.out)
    elif args.unique or args.memorisation_report is not None:
        written = _compare_with_training(args, sampler, label, options)
    else:
        z = sampler.noise(np.random.default_rng(args.seed), args.num, args.truncation)
        pictures = sampler.images(z, grid_labels(sampler, args.num, label), **options)
        written = save_images(
            pictures, args.out, args.format, args.individual, columns=grid_columns(sampler, args.num, label)
        )
    if len(written) > 3:
        print(f"written: {written[0]} ... {written[-1]} ({len(written)} files)")
    else:
        print(f"written: {', '.join(map(str, written))}")
    return 0


def _compare_with_training(args, sampler, label, options):
    data = uniqueness.training_data(sampler)
    space = uniqueness.feature_space(args.features, sampler, data)
    train_features = uniqueness.training_features(data, space)
    if args.memorisation_report is not None:
        summary = memorisation_report(
            sampler,
            space,
            data,
            train_features,
            args.memorisation_report,
            args.seed,
            args.out,
            label,
            args.truncation,
            args.min_distance,
            options=options,
        )
        s, r = summary["sample_to_training"], summary["training_to_training"]
        print(
            f"nearest-training-image distance ({space.name} features): samples median {s['q50']:.3f}, "
            f"min {s['q00']:.3f}; training images among themselves median {r['q50']:.3f}, min {r['q00']:.3f}"
        )
        print(
            f"{summary['closer_than_any_training_pair']} of {args.memorisation_report} samples are closer "
            "to a training image than any two training images are to each other"
        )
        return [Path(args.out) / n for n in ("distances.png", "closest_pairs.png", "memorisation.json")]
    db, source = store.open_source(args.run, args.db, space.name, train_features.shape[1], sampler.noise_size)
    kept = uniqueness.KeptIndex(train_features.shape[1], train_features)
    with db.writing(source) as writer:
        kept.refresh(writer)
        issued, rejected = uniqueness.issue_unique(
            sampler,
            space,
            train_features,
            kept,
            writer,
            args.num,
            args.min_distance,
            args.seed,
            label,
            args.truncation,
            args.max_draws,
            options,
        )
    # Recorded (committed) before the pictures are written: a crash in between leaves an image
    # recorded but never handed out, which is harmless; the reverse could hand it out twice.
    written = save_images(
        np.stack([r["image"] for r in issued]),
        args.out,
        args.format,
        args.individual,
        names=[r["id"] for r in issued],
    )
    print(f"{'id':<32}  {'distance to training':>20}  {'nearest training image':>22}  {'distance to issued':>18}")
    for r in issued:
        to_issued = f"{r['issued_distance']:.4f}" if np.isfinite(r["issued_distance"]) else "- (first)"
        print(f"{r['id']:<32}  {r['train_distance']:>20.4f}  {r['train_index']:>22}  {to_issued:>18}")
    copies = sum(r["reason"] == "training" for r in rejected)
    print(
        f"issued {len(issued)} images after {len(issued) + len(rejected)} draws ({copies} rejected as too close to "
        f"a training image, {len(rejected) - copies} to an issued one; --min-distance {args.min_distance}, "
        f"{space.name} features); {db.count(source)} issued in all, recorded in {db.where}"
    )
    return written


if __name__ == "__main__":
    sys.exit(main())
