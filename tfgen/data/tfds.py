"""A TensorFlow Datasets dataset by name (mnist, fashion_mnist, celeb_a, ...)."""

import difflib

import tensorflow as tf
import tensorflow_datasets as tfds

from tfgen.data.source import Source
from tfgen.errors import DataError


def _builder(cfg):
    try:
        return tfds.builder(cfg.name, data_dir=cfg.data_dir or None)
    except tfds.core.registered.DatasetNotFoundError:
        close = difflib.get_close_matches(cfg.name, tfds.list_builders(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DataError(f"data.name: no TFDS dataset named {cfg.name!r}{hint}") from None


def tfds_source(cfg):
    """`cfg.split` of TFDS dataset `cfg.name`, downloaded and prepared if need be."""
    builder = _builder(cfg)
    try:
        builder.download_and_prepare()
    except Exception as exc:  # noqa: BLE001  (network, disk, manual-download datasets)
        raise DataError(
            f"data.name: could not download and prepare TFDS dataset {cfg.name!r} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); on a machine "
            "without internet, prepare it elsewhere and copy its data_dir "
            "(~/tensorflow_datasets), then set data.data_dir"
        ) from None
    features = builder.info.features
    if cfg.image_key not in features:
        raise DataError(
            f"data.image_key: {cfg.name!r} has no feature {cfg.image_key!r}; features: {', '.join(features.keys())}"
        )
    label = features[cfg.label_key] if cfg.label_key in features else None
    class_names = list(label.names) if isinstance(label, tfds.features.ClassLabel) else []
    try:
        num_examples = builder.info.splits[cfg.split].num_examples
        # Shuffled file order, but the same in every process, so a resumed run sees the same data.
        examples = builder.as_dataset(split=cfg.split, shuffle_files=True, read_config=tfds.ReadConfig(shuffle_seed=0))
    except (KeyError, ValueError) as exc:
        raise DataError(
            f"data.split: {cfg.split!r} is not a split of {cfg.name!r} ({exc}); "
            f"splits: {', '.join(builder.info.splits.keys())}"
        ) from None

    def pair(example):
        image = example[cfg.image_key]
        labels = tf.cast(example[cfg.label_key], tf.int64) if class_names else tf.constant(0, tf.int64)
        return image, labels

    pairs = examples.map(pair, num_parallel_calls=tf.data.AUTOTUNE)
    return Source(pairs, num_examples, class_names, f"TFDS {cfg.name}:{cfg.split}")
