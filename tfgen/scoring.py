"""Scoring a generator against its training data: the library behind `tfgen evaluate`.

`evaluate_model` scores a model in memory; it runs during training (`eval.every_epochs`,
`tfgen.training`), in `tfgen evaluate` (`evaluate_run`, beside the real-vs-real floor: the same
metrics between two disjoint halves of the real images, the value no generator can beat at that
sample size) and in `tfgen sweep`.

Features stream through `RunningStats` batch by batch, so FID over 50k samples never holds
50k feature vectors; KID and precision/recall, which need the vectors themselves, use at most
`MAX_KEPT` of them. Real-data features are cached per dataset and extractor in the run
folder's `.cache/`, so a sweep computes them once.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from tfgen import images, metrics
from tfgen.data import build_dataset
from tfgen.errors import RunError
from tfgen.files import atomic_path, write_text
from tfgen.runs import load_run
from tfgen.sampling import check_options

MAX_KEPT = 10000
BATCH = 250
MAX_RECONSTRUCTED = 1000  # images behind the reconstruction errors


def dataset_key(data_cfg):
    """A cache key for the real images a DataConfig yields (source, name, path, size, channels, fit).

    Both name and path: two sub-folders of one Kaggle dataset are different image sets.
    """
    path = hashlib.sha1(data_cfg.path.encode()).hexdigest()[:10] if data_cfg.path else ""
    parts = [
        data_cfg.source,
        data_cfg.name,
        path,
        data_cfg.split,
        str(data_cfg.limit or "all"),
        f"{data_cfg.image_size}px",
        f"{data_cfg.channels}ch",
        "" if data_cfg.fit == "crop" else data_cfg.fit,
    ]
    # "v2": the version of what is cached; raised when the same key would mean other images
    # (v2: mnist5k's rows in a mixed order, so an old `data.limit` entry holds only zeros)
    return "-".join(p.replace("/", "_") for p in ["v2", *parts] if p)


def make_extractor(name, data, cache_dir, key):
    """The feature extractor `name` for this dataset (the classifier is trained once and cached)."""
    return metrics.get_extractor(name, cache_dir, key, data.dataset, len(data.class_names), data.image_shape)


class FeatureSummary:
    """Running statistics of a feature stream plus the first MAX_KEPT vectors."""

    def __init__(self, dim):
        self.stats = metrics.RunningStats(dim)
        self.kept = []

    def update(self, features):
        self.stats.update(features)
        room = MAX_KEPT - sum(len(k) for k in self.kept)
        if room > 0:
            self.kept.append(features[:room])

    @property
    def features(self):
        return np.concatenate(self.kept)


def real_summary(data, extractor, num, cache_dir, key):
    """FeatureSummary of up to `num` real images (one pass, no flips), cached on disk."""
    path = Path(cache_dir) / f"{key}_{extractor.name}_{num}_real.npz"
    stats_path = path.with_suffix(".stats.npz")
    summary = FeatureSummary(extractor.dim)
    if path.exists() and stats_path.exists():
        summary.stats = metrics.RunningStats.load(stats_path)
        with np.load(path) as cached:
            summary.kept = [cached["features"]]
        return summary
    for batch, _ in data.dataset:
        if summary.stats.count >= num:
            break
        summary.update(extractor.features(batch.numpy()[: num - summary.stats.count]))
    with atomic_path(stats_path) as tmp:
        summary.stats.save(tmp)
    with atomic_path(path) as tmp:
        np.savez(tmp, features=summary.features)
    return summary


def generated_summary(model, extractor, num, seed, want_probabilities, options=None):
    """FeatureSummary (and class probabilities) of `num` samples drawn with a fixed seed and
    the model's sampling `options` (e.g. a diffusion model's `steps`)."""
    rng = np.random.default_rng(seed)
    summary = FeatureSummary(extractor.dim)
    probabilities = []
    for start in range(0, num, BATCH):
        count = min(BATCH, num - start)
        z = model.sample_noise(count, rng)
        labels = np.arange(start, start + count) % model.num_classes if model.needs_labels else None
        images = np.asarray(model.generate(z, labels, **(options or {})))
        if not np.isfinite(images).all():
            # a classifier maps NaN images to finite features: without this a broken model
            # would only score badly
            raise RunError(
                f"the model's samples hold NaN or infinite pixels ({int((~np.isfinite(images)).sum())} in a batch "
                f"of {count}): its weights are broken; score an earlier checkpoint or train again"
            )
        summary.update(extractor.features(images))
        if want_probabilities:
            probabilities.append(extractor.probabilities(images))
    return summary, (np.concatenate(probabilities) if want_probabilities else None)


def scores(real, fake_summary, fake_probabilities, names):
    """The metrics `names` between a real and a generated FeatureSummary."""
    result = {}
    if "fid" in names:
        result["fid"] = metrics.frechet_distance(
            real.stats.mean, real.stats.cov, fake_summary.stats.mean, fake_summary.stats.cov
        )
    if "kid" in names:
        result["kid"], result["kid_std"] = metrics.kernel_distance(real.features, fake_summary.features)
    if "is" in names and fake_probabilities is not None:
        result["is"], result["is_std"] = metrics.inception_score(fake_probabilities)
    if "pr" in names:
        result["precision"], result["recall"] = metrics.precision_recall(real.features, fake_summary.features)
    return result


def real_floor(real, names):
    """The metrics between two disjoint halves of the kept real features."""
    features = real.features
    half = len(features) // 2
    halves = []
    for part in (features[:half], features[half : 2 * half]):
        summary = FeatureSummary(features.shape[1])
        summary.update(part)
        halves.append(summary)
    return scores(halves[0], halves[1], None, [n for n in names if n != "is"])


def reconstruction_errors(model, data, num, seed=0):
    """Mean squared pixel error (images in [-1, 1]) of `model.reconstruct` against the clean
    image, for up to `num` real images given clean, with Gaussian noise and blurred
    (`tfgen.images.add_noise` / `blur`): how well a model that reconstructs keeps an image,
    and how well it recovers one from a corrupted copy."""
    totals = dict.fromkeys(metrics.RECONSTRUCTION_METRICS, 0.0)
    count = 0
    for batch, labels in data.dataset:
        batch = batch.numpy()[: num - count]
        labels = labels.numpy()[: len(batch)] if model.needs_labels else None
        corrupted = (batch, images.add_noise(batch, seed=seed + count), images.blur(batch))
        for name, inputs in zip(metrics.RECONSTRUCTION_METRICS, corrupted):
            rec = np.asarray(model.reconstruct(inputs, labels) if labels is not None else model.reconstruct(inputs))
            totals[name] += float(np.sum(np.mean(np.square(rec - batch).reshape(len(batch), -1), axis=1)))
        count += len(batch)
        if count >= num:
            break
    return {name: total / count for name, total in totals.items()}


def evaluate_model(model, data, names, num, extractor, cache_dir, key, seed=0, floor=False, options=None):
    """Score `model` against `data`'s images; a dict of metric -> value.

    Sample metrics (FID, KID, IS, precision / recall) on `num` samples, for models that
    sample from latents; reconstruction errors ("rec") on up to `MAX_RECONSTRUCTED` images,
    for models that reconstruct. A metric the model cannot have is left out.
    """
    result = {}
    sample_names = [n for n in names if n in metrics.SAMPLE_METRICS]
    if sample_names and model.samples_from_noise:
        real = real_summary(data, extractor, num, cache_dir, key)
        fake, probabilities = generated_summary(model, extractor, num, seed, "is" in names, options)
        result.update({"num_samples": num, "num_real": real.stats.count, "extractor": extractor.name})
        if options:
            result["sampling_options"] = dict(options)
        result.update(scores(real, fake, probabilities, sample_names))
        if floor:
            result["real_vs_real"] = real_floor(real, sample_names)
    if "rec" in names and model.reconstructs:
        result.update(reconstruction_errors(model, data, min(num, MAX_RECONSTRUCTED), seed))
    return result


def format_table(result):
    """A plain-text table: metric | model | real-vs-real floor."""
    floor = result.get("real_vs_real", {})
    lines = [f"{'metric':<14}{'model':>14}{'real vs real':>16}"]
    for key in ("fid", "kid", "is", "precision", "recall", *metrics.RECONSTRUCTION_METRICS):
        if key in result:
            value = f"{result[key]:.4f}" + (f" ±{result[key + '_std']:.4f}" if key + "_std" in result else "")
            base = f"{floor[key]:.4f}" if key in floor else "-"
            lines.append(f"{key:<14}{value:>14}{base:>16}")
    if "num_samples" in result:
        lines.append(
            f"({result['num_samples']} samples vs {result['num_real']} real images, {result['extractor']} features;"
            " the floor uses two halves of the real images)"
        )
    if "rec_mse" in result:
        lines.append(
            f"(rec_*: mean squared pixel error in [-1, 1] of reconstructions of clean, noisy (sigma "
            f"{images.NOISE_SIGMA}) and blurred (sigma {images.BLUR_SIGMA} px) training images)"
        )
    return "\n".join(lines)


def evaluate_run(run, names, num, extractor_name, seed=0, options=None):
    """Evaluate a run directory, sampling with `options` (the model's sampling_options: a
    diffusion model's `steps`, ...); writes and returns its eval.json contents."""
    run = Path(run)
    cfg, model = load_run(run)
    check_options(model.sampling_options, options or {}, f"--option: {cfg.model.name} in {run}")
    data = build_dataset(cfg.data, seed=cfg.train.seed)
    key = dataset_key(cfg.data)
    samples = model.samples_from_noise and any(n in metrics.SAMPLE_METRICS for n in names)
    # no feature network (nor classifier training) when only reconstructions are scored
    extractor = make_extractor(extractor_name, data, run.parent / ".cache", key) if samples else None
    result = evaluate_model(model, data, names, num, extractor, run.parent / ".cache", key, seed, True, options)
    write_text(run / "eval.json", json.dumps(result, indent=2))
    return result
