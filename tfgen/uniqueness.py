"""Uniqueness: images farther than a minimum distance from the training set and from every
image handed out before, which the avatar store (`tfgen.store`) remembers.

Two callers share it: `tfgen generate --unique` issues a batch of images at once, and the
avatar studio (`tfgen.serve`) screens each candidate against the training set and the kept
avatars (`KeptIndex`) when it is drawn, and checks it again under the store's write lock when
the user keeps it. Both measure in one `FeatureSpace`; one source per run covers every class
(theme) of that run.
"""

import math
import threading

import numpy as np
import tensorflow as tf

from tfgen import cli, scoring
from tfgen.data import build_dataset
from tfgen.data.pipeline import to_signed_unit
from tfgen.errors import ConfigError, RunError
from tfgen.files import user_cache_dir
from tfgen.sampling import labels_for

log = cli.log

FEATURES = ("auto", "classifier", "pixels")
PIXEL_FEATURE_SIZE = 16


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
    # beside the runs, as `tfgen evaluate` keeps it; a preset's (no run folder) in the user's cache
    cache = sampler.run.parent / ".cache" if sampler.run else user_cache_dir()
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


class KeptIndex:
    """The features of every image of one source kept so far, in this process's memory.

    `refresh(reader)` loads only the rows written since it last looked (`reader`:
    `Store.reader(source)`, or a `Store.writing` Writer holding the write lock), so a process
    reads each row once; rows are never rewritten, so what is loaded stays true. `seq` is the
    last row loaded.

    `nearest` is exact. A scan in float32 picks the rows that may be nearest (within a slack
    far above float32's rounding) and those are measured again in float64. With a `radius`,
    the scan runs in a `PROJECTION`-dimensional orthonormal projection (the training features'
    top principal components, else random directions): projecting onto orthonormal
    directions never lengthens a distance, so no row within the radius is skipped, and a
    million 256-d rows are scanned as 16-d ones.
    """

    PROJECTION = 16
    SLACK = 1e-3
    BLOCK = 65_536  # rows per block: blocks are never copied once full, and scans go block by block

    def __init__(self, dim, reference=None):
        self.dim = int(dim)
        self.basis = _orthonormal_basis(self.dim, reference, self.PROJECTION)
        self.width = self.dim if self.basis is None else self.PROJECTION
        self.seq = 0
        self._lock = threading.Lock()
        # (blocks, rows): what readers see, published as one tuple. Rows below `rows` are never
        # written again; only the last block's free rows are, so a reader's snapshot stays valid.
        self._snapshot = ((), 0)

    @classmethod
    def of(cls, features, reference=None):
        """An index over a fixed array (e.g. the training images' features), rows numbered from 1."""
        features = np.asarray(features, np.float32)
        index = cls(features.shape[1], features if reference is None else reference)
        if len(features):
            index._append(np.arange(1, len(features) + 1), features)
        return index

    def __len__(self):
        return self._snapshot[1]

    @property
    def features(self):
        parts = [part["features"] for part in self._parts()]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def refresh(self, reader):
        """Load the rows added since the last refresh; returns self."""
        with self._lock:
            seqs, features = reader.rows_since(self.seq)
            if len(seqs):
                self._append(seqs, np.asarray(features, np.float32).reshape(len(seqs), self.dim))
        return self

    def _block(self, capacity):
        return {
            "features": np.zeros((capacity, self.dim), np.float32),
            "squares": np.zeros(capacity, np.float32),
            "projected": np.zeros((capacity, self.width), np.float32),
            "projected_squares": np.zeros(capacity, np.float32),
            "seqs": np.zeros(capacity, np.int64),
        }

    def _append(self, seqs, features):
        blocks, rows = self._snapshot
        blocks = list(blocks)
        projected = features if self.basis is None else features @ self.basis
        new = {
            "features": features,
            "squares": np.einsum("ij,ij->i", features, features),
            "projected": projected,
            "projected_squares": np.einsum("ij,ij->i", projected, projected),
            "seqs": seqs,
        }
        done = 0
        while done < len(seqs):
            used = rows - self.BLOCK * max(len(blocks) - 1, 0)  # rows in the last block
            if not blocks or used == self.BLOCK:
                blocks.append(self._block(min(self.BLOCK, max(1024, len(seqs) - done))))
                used = 0
            last = blocks[-1]
            if used == len(last["seqs"]):  # the first block grows by doubling up to BLOCK rows
                grown = self._block(min(self.BLOCK, 2 * used))
                for name, array in last.items():
                    grown[name][:used] = array[:used]
                blocks[-1] = last = grown
            n = min(len(last["seqs"]) - used, len(seqs) - done)
            for name, array in last.items():
                array[used : used + n] = new[name][done : done + n]
            rows += n
            done += n
        self._snapshot = (tuple(blocks), rows)
        self.seq = int(seqs[-1])

    def _parts(self, since=None):
        """The published rows, block by block (dicts of arrays), after seq `since` if given."""
        blocks, rows = self._snapshot
        parts = []
        for k, block in enumerate(blocks):
            valid = min(len(block["seqs"]), rows - k * self.BLOCK)
            part = {name: array[:valid] for name, array in block.items()}
            if since is not None:
                if valid == 0 or part["seqs"][-1] <= since:
                    continue
                start = int(np.searchsorted(part["seqs"], since, side="right"))
                part = {name: array[start:] for name, array in part.items()}
            if len(part["seqs"]):
                parts.append(part)
        return parts

    def nearest(self, queries, radius=None, since=None):
        """Distance [N] from each query to its nearest kept row (rows after seq `since` only, if
        given). With `radius`, distances beyond it come back as inf (only "farther" is known)."""
        parts = self._parts(since)
        queries = np.asarray(queries, np.float64).reshape(-1, self.dim)
        out = np.full(len(queries), np.inf)
        if not parts or not len(queries):
            return out
        projected = radius is not None and self.basis is not None
        scan = (queries @ self.basis if projected else queries).astype(np.float32)
        key, squares = ("projected", "projected_squares") if projected else ("features", "squares")
        scan_squares = np.einsum("ij,ij->i", scan, scan)
        if radius is None:  # first pass: each query's approximate nearest distance
            best = np.min([_distances(scan, scan_squares, p[key], p[squares]).min(axis=1) for p in parts], axis=0)
            limits = np.sqrt(np.maximum(best, 0)) + self.SLACK
        else:
            limits = np.full(len(queries), radius + self.SLACK)
        for part in parts:
            near = _distances(scan, scan_squares, part[key], part[squares]) <= (limits**2)[:, None]
            for i in np.flatnonzero(near.any(axis=1)):
                rows = part["features"][near[i]].astype(np.float64)
                out[i] = min(out[i], np.linalg.norm(rows - queries[i], axis=1).min())
        if radius is not None:
            out[out > radius] = np.inf
        return out


def _distances(queries, query_squares, reference, squares):
    """float32 squared distances [queries, rows] (rounding far below KeptIndex.SLACK)."""
    return query_squares[:, None] + squares[None, :] - 2 * queries @ reference.T


def _orthonormal_basis(dim, reference, size):
    """[dim, size] orthonormal columns: the top principal directions of `reference` when it
    has enough rows, else random ones; None when `dim` is too small for a projection to pay."""
    if dim <= 2 * size:
        return None
    if reference is not None and len(reference) > size:
        sample = np.asarray(reference, np.float64)[:10_000]
        _, _, vt = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
        return np.ascontiguousarray(vt[:size].T, np.float32)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, size)))
    return q.astype(np.float32)


def rejection(train_distance, issued_distance, min_distance):
    """Why an image may not be handed out: "training" (it copies a training image), "issued"
    (it looks like one handed out before), or None. Both limits are inclusive."""
    if train_distance <= min_distance:
        return "training"
    if issued_distance <= min_distance:
        return "issued"
    return None


def issue_unique(
    sampler,
    space,
    train_features,
    kept,
    writer,
    num,
    min_distance,
    seed,
    label=None,
    truncation=None,
    max_draws=None,
    options=None,
):
    """Draw until `num` images are each farther than `min_distance` from every training image,
    every image `kept` (a KeptIndex, refreshed under `writer`'s lock) and each other; record them
    through `writer` (a `Store.writing` block held open by the caller).

    Returns (issued, rejected): lists of dicts with the draw index, the image (issued only),
    the avatar id, the nearest training image and its distance, and for rejections the reason.
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
                f"{min_distance} from the {len(train_features)} training images and the {len(kept)} "
                f"issued before, after {drawn} draws; lower --min-distance or raise --max-draws"
            )
        count = min(max(2 * (num - len(issued)), 16), max_draws - drawn)
        z = sampler.noise(rng, count, truncation)
        labels = labels_for(sampler, count, label, start=drawn)
        pictures = sampler.images(z, labels, **(options or {}))
        features = space.features(pictures)
        train_distance, train_index = nearest(features, train_features)
        ledger_distance = kept.nearest(features)
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
    ids = writer.insert(
        [
            {
                "owner": None,
                "label": r["label"],
                "features": r["features"],
                "z": np.reshape(r["z"], -1),  # flattened: any noise shape
                "train_distance": r["train_distance"],
                "seed": seed,
            }
            for r in issued
        ]
    )
    for record, avatar_id in zip(issued, ids):
        record["id"] = avatar_id
    return issued, rejected
