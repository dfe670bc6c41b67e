"""Sample-quality metrics for generative models, and the networks whose features they use.

- `extractors`: images in [-1, 1] -> features [N, dim] and class probabilities, behind one
  interface: `classifier` (a small CNN trained on the dataset, offline) or `inception`
  (ImageNet InceptionV3, downloaded by Keras). `get_extractor(name, ...)` picks one.
- `stats`: `RunningStats` folds features in batch by batch, so FID over 50k samples needs
  only a mean and a covariance in memory; `save`/`load` cache the real data's statistics.
- `distances`: the metrics themselves as numpy functions: `frechet_distance` (FID),
  `kernel_distance` (KID), `inception_score` (IS) and `precision_recall`.
"""

from tfgen.metrics.distances import frechet_distance, inception_score, kernel_distance, precision_recall
from tfgen.metrics.extractors import (
    EXTRACTORS,
    ClassifierExtractor,
    FeatureExtractor,
    InceptionExtractor,
    classifier_extractor,
    get_extractor,
)
from tfgen.metrics.stats import RunningStats

# What `eval.metrics` and `--metric` accept; "pr" yields both precision and recall, "rec" the
# reconstruction errors of models that reconstruct (clean, noisy and blurred inputs).
METRIC_NAMES = ("fid", "kid", "is", "pr", "rec")
RECONSTRUCTION_METRICS = ("rec_mse", "rec_noise_mse", "rec_blur_mse")
# Reported values, and whether lower is better (for keeping the best checkpoint).
LOWER_IS_BETTER = {
    "fid": True,
    "kid": True,
    "is": False,
    "precision": False,
    "recall": False,
    **{name: True for name in RECONSTRUCTION_METRICS},
}
SAMPLE_METRICS = ("fid", "kid", "is", "pr")


def reported_metrics(names):
    """The values metric names report, in order: "pr" -> precision, recall; "rec" -> the three
    reconstruction errors."""
    expand = {"pr": ("precision", "recall"), "rec": RECONSTRUCTION_METRICS}
    return [m for n in names for m in expand.get(n, (n,))]


def parse_metric_names(text):
    """ "fid,kid" -> ("fid", "kid"); ValueError naming a bad or missing entry."""
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    for name in names:
        if name not in METRIC_NAMES:
            raise ValueError(f"unknown metric {name!r}; valid: {', '.join(METRIC_NAMES)}")
    if not names:
        raise ValueError(f"no metric given; valid: {', '.join(METRIC_NAMES)}")
    return names


__all__ = [
    "EXTRACTORS",
    "LOWER_IS_BETTER",
    "METRIC_NAMES",
    "RECONSTRUCTION_METRICS",
    "SAMPLE_METRICS",
    "parse_metric_names",
    "reported_metrics",
    "ClassifierExtractor",
    "FeatureExtractor",
    "InceptionExtractor",
    "RunningStats",
    "classifier_extractor",
    "frechet_distance",
    "get_extractor",
    "inception_score",
    "kernel_distance",
    "precision_recall",
]
