"""Uniqueness: images farther than a minimum distance from the training set and from every
image handed out before, remembered in a ledger that survives crashes and concurrent callers.

Two callers share it: `tfgen generate --unique` issues a batch of images at once,
and the avatar studio (`tfgen.serve`) screens each candidate against the training set when it
is drawn and claims it in the ledger only when the user keeps it (`claim`). Both measure in
one `FeatureSpace`; one ledger per run covers every class (theme) of that run.
"""

import fcntl
import math
import time
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfgen import cli, scoring
from tfgen.data import build_dataset
from tfgen.data.pipeline import to_signed_unit
from tfgen.errors import ConfigError, RunError
from tfgen.files import atomic_path
from tfgen.sampling import labels_for

log = cli.log

FEATURES = ("auto", "classifier", "pixels")
PIXEL_FEATURE_SIZE = 16
LEDGER_NAME = "issued.npz"


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
    extractor = scoring.make_extractor("classifier", data, cache, scoring.dataset_key(sampler.cfg.data))
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
    """Every image issued (by `--unique`) or kept (in the studio): features, latents, labels,
    distances, seeds, times.

    One .npz file, by default `issued.npz` in the run directory. Use it as a context manager:
    an exclusive lock (fcntl, on `<ledger>.lock`) is held from reading the ledger to writing
    it, and it is rewritten atomically (temp file + os.replace) and flushed to disk before
    `append` returns, so two concurrent callers never both issue look-alikes and a crash never
    loses or tears it. Entry i's image is
    `generate(z[i], labels[i])`.
    """

    COLUMNS = ("features", "z", "labels", "train_distance", "seeds", "issued_at")

    def __init__(self, path, feature_space, feature_dim, latent_dim):
        # latent_dim: the flattened noise length (`Sampler.noise_size`); z is stored flat
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
        try:
            with np.load(self.path, allow_pickle=False) as stored:
                space = str(stored["feature_space"])
                entries = {name: stored[name] for name in self.COLUMNS}
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError) as exc:
            raise RunError(
                f"--ledger: {self.path} is damaged ({type(exc).__name__}: {exc}); restore it from a backup. "
                "Starting a new ledger would let images issued before be issued again"
            ) from None
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
            with atomic_path(self.path, durable=True) as tmp:
                np.savez(tmp, feature_space=np.array(self.feature_space), **self.entries)
        except OSError as exc:
            raise RunError(f"--ledger: cannot write {self.path}: {exc.strerror}") from None
        return list(range(start, len(self)))


def rejection(train_distance, issued_distance, min_distance):
    """Why an image may not be handed out: "training" (it copies a training image), "issued"
    (it looks like one handed out before), or None. Both limits are inclusive."""
    if train_distance <= min_distance:
        return "training"
    if issued_distance <= min_distance:
        return "issued"
    return None


def claim(ledger, features, z, label, train_distance, seed, min_distance):
    """Record one image in `ledger` (held open, so no one writes between the check and the
    record) if no entry lies within `min_distance`: (its id, distance to the nearest entry);
    (None, that distance) if one does. The id is valid once this returns: the file is on disk.
    """
    issued_distance = float(nearest(features[None], ledger.features)[0][0])
    if rejection(train_distance, issued_distance, min_distance):
        return None, issued_distance
    (ledger_id,) = ledger.append(
        features=np.asarray(features, np.float32)[None],
        z=np.asarray(z, np.float32).reshape(1, -1),
        labels=np.array([label], np.int32),
        train_distance=np.array([train_distance], np.float32),
        seeds=np.array([seed], np.int64),
        issued_at=np.array([time.time()]),
    )
    return ledger_id, issued_distance


def issue_unique(
    sampler,
    space,
    train_features,
    ledger,
    num,
    min_distance,
    seed,
    label=None,
    truncation=None,
    max_draws=None,
    options=None,
):
    """Draw until `num` images are each farther than `min_distance` from every training image,
    every ledger entry and each other; record them in `ledger` (held open by the caller).

    Returns (issued, rejected): lists of dicts with the draw index, the image (issued only),
    the ledger id, the nearest training image and its distance, and for rejections the reason.
    RunError, and nothing recorded, if `max_draws` draws do not give `num` images.
    """
    max_draws = max_draws or max(1000, 100 * num)
    rng = np.random.default_rng(seed)
    issued, rejected, drawn = [], [], 0
    progress = cli.Progress()
    while len(issued) < num:
        if drawn >= max_draws:
            raise RunError(
                f"--unique: only {len(issued)} of {num} images are farther than --min-distance "
                f"{min_distance} from the {len(train_features)} training images and the {len(ledger)} "
                f"issued before, after {drawn} draws; lower --min-distance or raise --max-draws"
            )
        count = min(max(2 * (num - len(issued)), 16), max_draws - drawn)
        z = sampler.noise(rng, count, truncation)
        labels = labels_for(sampler, count, label, start=drawn)
        pictures = sampler.images(z, labels, **(options or {}))
        features = space.features(pictures)
        train_distance, train_index = nearest(features, train_features)
        ledger_distance, _ = nearest(features, ledger.features)
        for k in range(count):
            this_call = np.reshape([r["features"] for r in issued], (-1, features.shape[1]))
            issued_distance = min(ledger_distance[k], nearest(features[k : k + 1], this_call)[0][0])
            record = {
                "draw": drawn + k,
                "train_distance": float(train_distance[k]),
                "train_index": int(train_index[k]),
                "issued_distance": float(issued_distance),
            }
            reason = rejection(train_distance[k], issued_distance, min_distance)
            if reason:
                rejected.append({**record, "reason": reason})
            elif len(issued) < num:
                issued.append(
                    {
                        **record,
                        "image": pictures[k],
                        "z": z[k],
                        "features": features[k],
                        "label": -1 if labels is None else int(labels[k]),
                    }
                )
        drawn += count
        progress(
            "--unique: %d/%d images after %d draws (%d too close to training images, %d to issued ones)",
            len(issued),
            num,
            drawn,
            sum(r["reason"] == "training" for r in rejected),
            sum(r["reason"] == "issued" for r in rejected),
        )
    ids = ledger.append(
        features=np.stack([r["features"] for r in issued]).astype(np.float32),
        z=np.stack([r["z"] for r in issued]).reshape(len(issued), -1),  # flattened: any noise shape
        labels=np.array([r["label"] for r in issued], np.int32),
        train_distance=np.array([r["train_distance"] for r in issued], np.float32),
        seeds=np.full(len(issued), seed, np.int64),
        issued_at=np.full(len(issued), time.time()),
    )
    for record, ledger_id in zip(issued, ids):
        record["id"] = ledger_id
    return issued, rejected
