"""`python -m tfgen.generate --run runs/X --num 64 --out grid.png`

Pictures from a trained run, or with `--export DIR` from a SavedModel that tfgen wrote (its
`tfgen.json` says what the signatures take; no tfgen model class is loaded). The latents come
from `--seed`, so a seed reproduces its images exactly. Four modes:

- default: `--num` images as one grid (`--individual`: one file each; `--format npy`: the
  raw float32 outputs in [-1, 1]). Conditional models take `--label N` or `--class NAME`;
  without either, each row of the grid is one class.
- `--interpolate A B`: the path between the latents of seeds A and B, as a strip PNG and a GIF.
- `--unique`: images farther than `--min-distance` from every training image (so none
  copies the training set) and from every image issued before, which a ledger in the run
  directory (`issued.npz`) remembers (so no two users get the same picture).
- `--memorisation-report N`: how close N samples come to their nearest training images: a
  histogram beside the training set's own nearest-neighbour distances, and the closest pairs.

`--truncation T` (the truncation trick, Brock et al. 2019) redraws every latent entry with
|z| > T: less variety, fewer failures. Distances are measured in a feature space where 0 is
identical and 2 the most different: unit-length features of the dataset's feature classifier
(`tfgen.metrics`) when the data has labels, else the RMS difference of pixels in [-1, 1]
downsampled to at most 16 px.
"""

import argparse
import fcntl
import json
import math
import secrets
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import tensorflow as tf

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tfgen import cli, evaluate, images  # noqa: E402
from tfgen.data import build_dataset  # noqa: E402
from tfgen.data.pipeline import to_signed_unit  # noqa: E402
from tfgen.errors import ConfigError, RunError  # noqa: E402
from tfgen.export import run_class_names  # noqa: E402
from tfgen.files import atomic_path  # noqa: E402

log = cli.log

BATCH = 256
FEATURES = ("auto", "classifier", "pixels")
PIXEL_FEATURE_SIZE = 16
LEDGER_NAME = "issued.npz"
PROGRESS_SECONDS = 5.0


class Progress:
    """INFO lines for long work, at most one every PROGRESS_SECONDS (the first after that long)."""

    def __init__(self):
        self.last = time.monotonic()

    def __call__(self, message, *args):
        if time.monotonic() - self.last >= PROGRESS_SECONDS:
            log.info(message, *args)
            self.last = time.monotonic()


# -- where the images come from -------------------------------------------------------------


class Sampler:
    """A generator behind one interface, whether a run's Keras model or an exported SavedModel.

    `latent_dim`, `image_shape`, `class_names` (empty for unconditional models), `run` and
    `cfg` (None for exports), `latents(rng, count, truncation)` and `images(z, labels)`.
    """

    def __init__(self, fn, latent_dim, image_shape, class_names, description, run=None, cfg=None, keep=None):
        self._fn = fn
        self._keep = keep  # the loaded SavedModel: its variables live as long as the sampler
        self.latent_dim = int(latent_dim)
        self.image_shape = tuple(image_shape)
        self.class_names = list(class_names)
        self.description = description
        self.run = run
        self.cfg = cfg

    @property
    def conditional(self):
        return bool(self.class_names)

    @classmethod
    def from_run(cls, run):
        """The generator of a finished run directory (its model.keras)."""
        run = Path(run)
        cfg, model = evaluate.load_run(run)
        if not model.samples_from_latent:
            raise RunError(f"--run: {run} holds a {cfg.model.name} model, which translates images instead of "
                           "sampling them; use python -m tfgen.translate")
        class_names = run_class_names(run, cfg, model)

        def fn(z, labels):
            return np.asarray(model.generate(z, labels), np.float32)

        return cls(fn, model.latent_dim, model.image_shape, class_names, str(run), run, cfg)

    @classmethod
    def from_export(cls, path):
        """The `generate` (GANs) or `decode` (VAEs) signature of an exported SavedModel folder."""
        path = Path(path)
        if not path.is_dir():
            raise RunError(f"--export: {path} does not exist")
        if not (path / "tfgen.json").is_file():
            raise RunError(
                f"--export: {path} has no tfgen.json; pass a saved_model folder written by "
                "tfgen.train or tfgen.export"
            )
        if not (path / "saved_model.pb").is_file():
            raise RunError(f"--export: {path} is not a SavedModel (no saved_model.pb); for a .keras export use --run")
        meta = json.loads((path / "tfgen.json").read_text())
        loaded = tf.saved_model.load(str(path))
        name = next((n for n in ("generate", "decode") if n in loaded.signatures), None)
        if name is None:
            hint = "; use python -m tfgen.translate --run on its run" if "a_to_b" in loaded.signatures else ""
            raise RunError(f"--export: {path} has no generate or decode signature ({', '.join(loaded.signatures)}){hint}")
        signature = loaded.signatures[name]
        conditional = "label" in signature.structured_input_signature[1]
        class_names = meta.get("class_names", []) if conditional else []
        if conditional and not class_names:
            class_names = [str(i) for i in range(meta["num_classes"])]

        def fn(z, labels):
            inputs = {"z": tf.constant(z, tf.float32)}
            if conditional:
                inputs["label"] = tf.constant(labels, tf.int32)
            (out,) = signature(**inputs).values()
            return out.numpy().astype(np.float32)

        return cls(fn, meta["latent_dim"], meta["image_shape"], class_names, str(path), keep=loaded)

    def latents(self, rng, count, truncation=None):
        """N(0, I) latents [count, latent_dim] from `rng`; with `truncation`, |z| > T entries are redrawn."""
        z = rng.standard_normal((count, self.latent_dim))
        if truncation is not None:
            outside = np.abs(z) > truncation
            while outside.any():
                z[outside] = rng.standard_normal(int(outside.sum()))
                outside = np.abs(z) > truncation
        return z.astype(np.float32)

    def images(self, z, labels=None):
        """Float32 images [N, H, W, C] in [-1, 1], generated BATCH at a time (progress for long runs)."""
        out = []
        progress = Progress()
        for start in range(0, len(z), BATCH):
            batch_labels = None if labels is None else labels[start : start + BATCH]
            out.append(self._fn(z[start : start + BATCH], batch_labels))
            progress("generated %d/%d images", min(start + BATCH, len(z)), len(z))
        return np.concatenate(out) if out else np.zeros((0, *self.image_shape), np.float32)


def resolve_label(sampler, label=None, class_name=None):
    """The class index asked for by --label or --class (None if neither); ConfigError if invalid."""
    if label is None and class_name is None:
        return None
    flag = f"--label {label}" if label is not None else f"--class {class_name}"
    if not sampler.conditional:
        raise ConfigError(f"{flag}: {sampler.description} is not a conditional model; it takes no label")
    if class_name is not None:
        if class_name not in sampler.class_names:
            raise ConfigError(f"{flag}: unknown class; valid: {', '.join(sampler.class_names)}")
        return sampler.class_names.index(class_name)
    if not 0 <= label < len(sampler.class_names):
        raise ConfigError(
            f"{flag}: out of range; the model has {len(sampler.class_names)} classes, "
            f"labels 0-{len(sampler.class_names) - 1} ({', '.join(sampler.class_names)})"
        )
    return label


def labels_for(sampler, count, label, start=0):
    """Labels for draws start..start+count: `label` for all, or cycling through the classes."""
    if not sampler.conditional:
        return None
    if label is not None:
        return np.full(count, label, np.int32)
    return (np.arange(start, start + count) % len(sampler.class_names)).astype(np.int32)


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


def grid_columns(sampler, num, label):
    """Columns of a grid: with cycling labels, one row per class."""
    if sampler.conditional and label is None:
        return math.ceil(num / len(sampler.class_names))
    return None


def grid_labels(sampler, num, label):
    """Labels laid out one class per row (matching `grid_columns`), or `labels_for`."""
    columns = grid_columns(sampler, num, label)
    if columns is None:
        return labels_for(sampler, num, label)
    return (np.arange(num) // columns).astype(np.int32)


# -- interpolation ---------------------------------------------------------------------------


def slerp(a, b, t):
    """Spherical interpolation between latents (White 2016): stays at the typical |z| of N(0, I)."""
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def interpolate(sampler, seed_a, seed_b, steps, label=None, truncation=None):
    """Float images [steps, H, W, C] along the path from seed A's latent to seed B's."""
    z_a = sampler.latents(np.random.default_rng(seed_a), 1, truncation)[0]
    z_b = sampler.latents(np.random.default_rng(seed_b), 1, truncation)[0]
    z = np.stack([slerp(z_a, z_b, t) for t in np.linspace(0.0, 1.0, steps)]).astype(np.float32)
    labels = np.full(steps, 0 if label is None else label, np.int32) if sampler.conditional else None
    return sampler.images(z, labels)


def save_interpolation(pictures, out):
    """A strip PNG at `out` and a back-and-forth GIF beside it; the two paths."""
    out = Path(out)
    frames = images.to_uint8(pictures)
    images.save_png(out, images.make_grid(frames, columns=len(frames)))
    enlarged = [images.make_grid(f[None], columns=1, pad=0, min_width=256) for f in frames]
    gif = out.with_suffix(".gif")
    images.save_gif(gif, enlarged + enlarged[-2:0:-1], seconds_per_frame=0.15)
    return [out, gif]


# -- distances to the training set and to earlier images -------------------------------------


class FeatureSpace:
    """Where "too close" is measured: `name`, and `features(images)` -> [N, d], distances in [0, 2].

    "classifier": the dataset's feature classifier (the one tfgen.evaluate trains and caches),
    its 128-d features scaled to unit length, so two images with the same features are at 0
    whatever their brightness. "pixels": images downsampled to at most 16 px and divided by
    sqrt(size), so the Euclidean distance is the RMS pixel difference.
    """

    def __init__(self, name, extractor=None):
        self.name = name
        self.extractor = extractor

    def features(self, pictures):
        pictures = np.asarray(pictures, np.float32)
        if self.name == "classifier":
            f = self.extractor.features(pictures).astype(np.float64)
            return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        size = min(PIXEL_FEATURE_SIZE, pictures.shape[1])
        if size != pictures.shape[1]:
            pictures = tf.image.resize(pictures, (size, size), method="area").numpy()
        flat = pictures.reshape(len(pictures), -1).astype(np.float64)
        return flat / math.sqrt(flat.shape[1])


def training_data(sampler):
    """The run's training images (ImageData); ConfigError when the sampler is an export."""
    if sampler.cfg is None:
        raise ConfigError("--unique and --memorisation-report compare with the training images; they need --run")
    return build_dataset(sampler.cfg.data, seed=sampler.cfg.train.seed)


def feature_space(name, sampler, data):
    """The FeatureSpace called `name` ("auto": classifier when the data has labels, else pixels)."""
    labelled = len(data.class_names) >= 2
    if name == "auto":
        name = "classifier" if labelled else "pixels"
    if name == "pixels":
        return FeatureSpace("pixels")
    if not labelled:
        raise ConfigError(f"--features classifier: {data.description} has no class labels; use --features pixels")
    cache = sampler.run.parent / ".cache"
    extractor = evaluate.make_extractor("classifier", data, cache, evaluate.dataset_key(sampler.cfg.data))
    return FeatureSpace("classifier", extractor)


def training_images(data, indices=None):
    """All training images (or those at `indices`) as float [-1, 1], in the data's fixed order.

    Read from the prepared (cached, unshuffled) images rather than the training batches,
    which drop the last partial batch: every training image counts as one to keep away from.
    """
    wanted = None if indices is None else set(int(i) for i in indices)
    found = {}
    batches = []
    offset = 0
    for batch, _ in data.prepared.batch(1024):
        batch = to_signed_unit(batch).numpy()
        if wanted is None:
            batches.append(batch)
        else:
            for i in wanted & set(range(offset, offset + len(batch))):
                found[i] = batch[i - offset]
        offset += len(batch)
    if wanted is None:
        return np.concatenate(batches)
    return np.stack([found[int(i)] for i in indices])


def training_features(data, space):
    """Features [num_examples, d] of every training image."""
    log.info("computing %s features of the %d training images", space.name, data.num_examples)
    return space.features(training_images(data))


def nearest(queries, reference, exclude=None, chunk=512):
    """(distances, indices) of each query row's nearest `reference` row (Euclidean).

    `exclude[i]` is a reference row that query i may not match (itself, for leave-one-out).
    With no reference rows, distances are inf and indices -1.
    """
    queries = np.asarray(queries, np.float64)
    reference = np.asarray(reference, np.float64)
    if not len(reference):
        return np.full(len(queries), np.inf), np.full(len(queries), -1)
    reference_sq = np.sum(reference**2, axis=1)
    distances, indices = [], []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        d2 = np.sum(q**2, axis=1)[:, None] + reference_sq[None, :] - 2.0 * q @ reference.T
        rows = np.arange(len(q))
        if exclude is not None:
            d2[rows, exclude[start : start + chunk]] = np.inf
        best = np.argmin(d2, axis=1)
        indices.append(best)
        distances.append(np.sqrt(np.maximum(d2[rows, best], 0.0)))
    return np.concatenate(distances), np.concatenate(indices)


# -- unique images ---------------------------------------------------------------------------


class Ledger:
    """Every image `--unique` has issued: features, latents, labels, distances, seeds, times.

    One .npz file, by default `issued.npz` in the run directory. Use it as a context manager:
    an exclusive lock (fcntl, on `<ledger>.lock`) is held from reading the ledger to writing
    it, and it is rewritten atomically (temp file + os.replace), so two concurrent callers
    never both issue look-alikes and a crash never loses or tears it. Entry i's image is
    `generate(z[i], labels[i])`.
    """

    COLUMNS = ("features", "z", "labels", "train_distance", "seeds", "issued_at")

    def __init__(self, path, feature_space, feature_dim, latent_dim):
        self.path = Path(path)
        self.feature_space = feature_space
        self.feature_dim = feature_dim
        self.latent_dim = latent_dim
        self.entries = None

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.path.with_name(self.path.name + ".lock"), "a")
        except OSError as exc:
            raise RunError(f"--ledger: cannot write {self.path}: {exc.strerror}") from None
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self.entries = self._load()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info):
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()
        return False

    def _load(self):
        empty = {
            "features": np.zeros((0, self.feature_dim), np.float32),
            "z": np.zeros((0, self.latent_dim), np.float32),
            "labels": np.zeros(0, np.int32),
            "train_distance": np.zeros(0, np.float32),
            "seeds": np.zeros(0, np.int64),
            "issued_at": np.zeros(0, np.float64),
        }
        if not self.path.exists():
            return empty
        with np.load(self.path, allow_pickle=False) as stored:
            space = str(stored["feature_space"])
            entries = {name: stored[name] for name in self.COLUMNS}
        if space != self.feature_space or entries["features"].shape[1] != self.feature_dim:
            raise RunError(
                f"--ledger: {self.path} holds {space} features ({entries['features'].shape[1]}-d); "
                f"pass --features {space}, or another --ledger"
            )
        return entries

    def __len__(self):
        return len(self.entries["z"])

    @property
    def features(self):
        return self.entries["features"]

    def append(self, **columns):
        """Add rows (one array per column) and rewrite the file; the new entries' ids."""
        start = len(self)
        self.entries = {name: np.concatenate([self.entries[name], columns[name]]) for name in self.COLUMNS}
        try:
            with atomic_path(self.path) as tmp:
                np.savez(tmp, feature_space=np.array(self.feature_space), **self.entries)
        except OSError as exc:
            raise RunError(f"--ledger: cannot write {self.path}: {exc.strerror}") from None
        return list(range(start, len(self)))


def issue_unique(sampler, space, train_features, ledger, num, min_distance, seed, label=None,
                 truncation=None, max_draws=None):
    """Draw until `num` images are each farther than `min_distance` from every training image,
    every ledger entry and each other; record them in `ledger` (held open by the caller).

    Returns (issued, rejected): lists of dicts with the draw index, the image (issued only),
    the ledger id, the nearest training image and its distance, and for rejections the reason.
    RunError, and nothing recorded, if `max_draws` draws do not give `num` images.
    """
    max_draws = max_draws or max(1000, 100 * num)
    rng = np.random.default_rng(seed)
    issued, rejected, drawn = [], [], 0
    progress = Progress()
    while len(issued) < num:
        if drawn >= max_draws:
            raise RunError(
                f"--unique: only {len(issued)} of {num} images are farther than --min-distance "
                f"{min_distance} from the {len(train_features)} training images and the {len(ledger)} "
                f"issued before, after {drawn} draws; lower --min-distance or raise --max-draws"
            )
        count = min(max(2 * (num - len(issued)), 16), max_draws - drawn)
        z = sampler.latents(rng, count, truncation)
        labels = labels_for(sampler, count, label, start=drawn)
        pictures = sampler.images(z, labels)
        features = space.features(pictures)
        train_distance, train_index = nearest(features, train_features)
        ledger_distance, _ = nearest(features, ledger.features)
        for k in range(count):
            this_call = np.reshape([r["features"] for r in issued], (-1, features.shape[1]))
            issued_distance = min(ledger_distance[k], nearest(features[k : k + 1], this_call)[0][0])
            record = {"draw": drawn + k, "train_distance": float(train_distance[k]),
                      "train_index": int(train_index[k]), "issued_distance": float(issued_distance)}
            if train_distance[k] <= min_distance:
                rejected.append({**record, "reason": "training"})
            elif issued_distance <= min_distance:
                rejected.append({**record, "reason": "issued"})
            elif len(issued) < num:
                issued.append({**record, "image": pictures[k], "z": z[k], "features": features[k],
                               "label": -1 if labels is None else int(labels[k])})
        drawn += count
        progress("--unique: %d/%d images after %d draws (%d too close to training images, %d to issued ones)",
                 len(issued), num, drawn, sum(r["reason"] == "training" for r in rejected),
                 sum(r["reason"] == "issued" for r in rejected))
    ids = ledger.append(
        features=np.stack([r["features"] for r in issued]).astype(np.float32),
        z=np.stack([r["z"] for r in issued]),
        labels=np.array([r["label"] for r in issued], np.int32),
        train_distance=np.array([r["train_distance"] for r in issued], np.float32),
        seeds=np.full(len(issued), seed, np.int64),
        issued_at=np.full(len(issued), time.time()),
    )
    for record, ledger_id in zip(issued, ids):
        record["id"] = ledger_id
    return issued, rejected


# -- memorisation report ---------------------------------------------------------------------


def memorisation_report(sampler, space, data, train_features, num, seed, out, label=None,
                        truncation=None, min_distance=None, pairs=16):
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
    z = sampler.latents(rng, num, truncation)
    pictures = sampler.images(z, labels_for(sampler, num, label))
    distance, index = nearest(space.features(pictures), train_features)
    queries = np.sort(rng.choice(len(train_features), min(2000, len(train_features)), replace=False))
    real_distance, _ = nearest(train_features[queries], train_features, exclude=queries)

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
    neighbours = training_images(data, index[closest])
    per_row = 4
    rows = math.ceil(len(closest) / per_row)
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(2 * per_row * 1.3, rows * 1.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for n, k in enumerate(closest):
        r, c = divmod(n, per_row)
        for ax, picture, title in ((axes[r, 2 * c], pictures[k], f"sample {k}"),
                                   (axes[r, 2 * c + 1], neighbours[n], f"train {index[k]}\nd={distance[k]:.3f}")):
            ax.imshow(images.to_uint8(picture).squeeze(), cmap="gray" if picture.shape[-1] == 1 else None,
                      interpolation="nearest")
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
        "closest": [{"sample": int(k), "training_image": int(index[k]), "distance": float(distance[k])}
                    for k in closest],
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
        prog="python -m tfgen.generate", description="Generate images from a trained run or an exported model.",
        epilog="Distances (--min-distance) are in [0, 2]; --memorisation-report shows the training "
               "set's own nearest-neighbour distances to choose one.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a finished run directory, e.g. runs/digits_dcgan")
    source.add_argument("--export", metavar="DIR",
                        help="a SavedModel folder with its tfgen.json (no tfgen model needed)")
    parser.add_argument("--num", type=int, default=64, help="images to generate (default 64)")
    parser.add_argument("--out", help="output file, or folder with --individual (default: generated.<format>)")
    parser.add_argument("--seed", type=int, help="latent seed; the same seed gives the same images (default: random)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--label", type=int, help="class index, for conditional models")
    which.add_argument("--class", dest="class_name", metavar="NAME", help="class name (from tfgen.json)")
    parser.add_argument("--truncation", type=float, metavar="T", help="redraw latent entries with |z| > T (T > 0)")
    parser.add_argument("--format", choices=("png", "npy"), help="png (default) or npy (float32 in [-1, 1])")
    parser.add_argument("--individual", action="store_true", help="one file per image in the folder --out")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--interpolate", type=int, nargs=2, metavar=("SEED_A", "SEED_B"),
                      help="a strip PNG and a GIF along the path between two seeds' latents")
    mode.add_argument("--unique", action="store_true",
                      help="only images farther than --min-distance from the training set and all issued before")
    mode.add_argument("--memorisation-report", type=int, metavar="N",
                      help="distances of N samples to their nearest training images (histogram, closest pairs)")
    parser.add_argument("--steps", type=int, default=10, help="--interpolate: images along the path (default 10)")
    parser.add_argument("--min-distance", type=float, default=0.1,
                        help="--unique: the smallest distance allowed (default 0.1)")
    parser.add_argument("--features", choices=FEATURES, default="auto",
                        help="--unique / report: distance space (auto: classifier if the data has labels)")
    parser.add_argument("--ledger", help=f"--unique: the ledger file (default: <run>/{LEDGER_NAME})")
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
        what = "--interpolate writes a PNG strip and a GIF" if args.interpolate else \
            "--memorisation-report writes pictures and a JSON summary into a folder"
        if args.format == "npy" or args.individual:
            raise ConfigError(f"{what}; drop --format npy / --individual")
    if args.format is None:
        args.format = "npy" if args.out and args.out.endswith(".npy") else "png"
    if args.out is None:
        if args.interpolate:
            args.out = "interpolation.png"
        elif args.memorisation_report is not None:
            args.out = str(Path(args.run or ".") / "memorisation")
        else:
            args.out = "generated" if args.individual else f"generated.{args.format}"
    if (args.unique or args.memorisation_report is not None) and not args.run:
        flag = "--unique" if args.unique else "--memorisation-report"
        raise ConfigError(f"{flag} compares with the training images and needs --run, not --export")


def _generate_command(args):
    check_args(args)
    sampler = Sampler.from_run(args.run) if args.run else Sampler.from_export(args.export)
    label = resolve_label(sampler, args.label, args.class_name)
    if args.seed is None and not args.interpolate:
        args.seed = secrets.randbelow(2**31)
        log.info("seed %d (pass --seed %d for the same images again)", args.seed, args.seed)

    if args.interpolate:
        pictures = interpolate(sampler, *args.interpolate, args.steps, label, args.truncation)
        written = save_interpolation(pictures, args.out)
    elif args.unique or args.memorisation_report is not None:
        written = _compare_with_training(args, sampler, label)
    else:
        z = sampler.latents(np.random.default_rng(args.seed), args.num, args.truncation)
        pictures = sampler.images(z, grid_labels(sampler, args.num, label))
        written = save_images(pictures, args.out, args.format, args.individual,
                              columns=grid_columns(sampler, args.num, label))
    if len(written) > 3:
        print(f"written: {written[0]} ... {written[-1]} ({len(written)} files)")
    else:
        print(f"written: {', '.join(map(str, written))}")
    return 0


def _compare_with_training(args, sampler, label):
    data = training_data(sampler)
    space = feature_space(args.features, sampler, data)
    train_features = training_features(data, space)
    if args.memorisation_report is not None:
        summary = memorisation_report(sampler, space, data, train_features, args.memorisation_report, args.seed,
                                      args.out, label, args.truncation, args.min_distance)
        s, r = summary["sample_to_training"], summary["training_to_training"]
        print(f"nearest-training-image distance ({space.name} features): samples median {s['q50']:.3f}, "
              f"min {s['q00']:.3f}; training images among themselves median {r['q50']:.3f}, min {r['q00']:.3f}")
        print(f"{summary['closer_than_any_training_pair']} of {args.memorisation_report} samples are closer "
              "to a training image than any two training images are to each other")
        return [Path(args.out) / n for n in ("distances.png", "closest_pairs.png", "memorisation.json")]
    ledger_path = Path(args.ledger) if args.ledger else Path(args.run) / LEDGER_NAME
    with Ledger(ledger_path, space.name, train_features.shape[1], sampler.latent_dim) as ledger:
        issued, rejected = issue_unique(sampler, space, train_features, ledger, args.num, args.min_distance,
                                        args.seed, label, args.truncation, args.max_draws)
        # The ledger is written before the pictures: a crash in between leaves an image
        # recorded but never handed out, which is harmless; the reverse could hand it out twice.
        written = save_images(np.stack([r["image"] for r in issued]), args.out, args.format, args.individual,
                              names=[f"{r['id']:06d}" for r in issued])
        total = len(ledger)
    print(f"{'id':>8}  {'distance to training':>20}  {'nearest training image':>22}  {'distance to issued':>18}")
    for r in issued:
        to_issued = f"{r['issued_distance']:.4f}" if np.isfinite(r["issued_distance"]) else "- (first)"
        print(f"{r['id']:>8}  {r['train_distance']:>20.4f}  {r['train_index']:>22}  {to_issued:>18}")
    copies = sum(r["reason"] == "training" for r in rejected)
    print(f"issued {len(issued)} images after {len(issued) + len(rejected)} draws ({copies} rejected as too close to "
          f"a training image, {len(rejected) - copies} to an issued one; --min-distance {args.min_distance}, "
          f"{space.name} features); {total} issued in all, recorded in {ledger_path}")
    return written


if __name__ == "__main__":
    sys.exit(main())
