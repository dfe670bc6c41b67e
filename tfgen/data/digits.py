"""scikit-learn's bundled 8x8 handwritten digits: the offline default (1797 images)."""

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

from tfgen.data.source import Source


def digits_source(cfg):
    """All 1797 digits as uint8 gray images (ink bright on black, like MNIST) and labels."""
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    pairs = tf.data.Dataset.from_tensor_slices((images, labels))
    return Source(pairs, len(images), [str(i) for i in range(10)], "scikit-learn digits")
