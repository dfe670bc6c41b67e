import keras
import numpy as np
import pytest
from scipy import linalg

from tfgen.config import DataConfig
from tfgen.data import build_dataset
from tfgen.errors import TfgenError
from tfgen.metrics import (
    ClassifierExtractor,
    RunningStats,
    frechet_distance,
    get_extractor,
    inception_score,
    kernel_distance,
    precision_recall,
)


def gaussian(n, dim=8, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)) + shift


# --- RunningStats ---------------------------------------------------------------------------


def test_running_stats_streamed_equals_whole_set():
    x = gaussian(1000, dim=6) * np.arange(1, 7) + 3.0
    stats = RunningStats(6)
    for batch in np.array_split(x, 7):
        stats.update(batch)
    assert stats.count == 1000
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-8)


def test_running_stats_save_load_round_trip(tmp_path):
    stats = RunningStats(4)
    stats.update(gaussian(50, dim=4))
    path = tmp_path / "real_stats.npz"
    stats.save(path)
    assert path.exists()
    loaded = RunningStats.load(path)
    assert loaded.count == 50 and loaded.dim == 4
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.cov, stats.cov)
    loaded.update(gaussian(10, dim=4, seed=1))  # a loaded cache goes on accumulating
    assert loaded.count == 60


# --- FID ------------------------------------------------------------------------------------


def test_fid_of_a_set_against_itself_is_zero():
    x = gaussian(500, dim=16)
    mu, cov = x.mean(axis=0), np.cov(x, rowvar=False)
    assert abs(frechet_distance(mu, cov, mu, cov)) < 1e-6


def test_fid_matches_the_gaussian_closed_form():
    dim = 5
    mu = np.arange(dim, dtype=float) / 2
    variances = np.linspace(0.5, 3.0, dim)
    # N(0, I) vs N(mu, diag(v)): ||mu||^2 + sum(1 + v - 2 sqrt(v))
    expected = mu @ mu + np.sum(1 + variances - 2 * np.sqrt(variances))
    assert frechet_distance(np.zeros(dim), np.eye(dim), mu, np.diag(variances)) == pytest.approx(expected)


def test_fid_matches_direct_scipy_on_sampled_features():
    a = gaussian(2000, dim=8)
    b = gaussian(2000, dim=8, seed=1) * 1.5 + 0.5
    mu1, cov1 = a.mean(axis=0), np.cov(a, rowvar=False)
    mu2, cov2 = b.mean(axis=0), np.cov(b, rowvar=False)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * linalg.sqrtm(cov1 @ cov2).real)
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(direct, rel=1e-8)
    # Population value: 8 * 0.5^2 + 8 * (1 + 2.25 - 2 * 1.5) = 4.0
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(4.0, abs=0.3)


def test_fid_survives_singular_covariances():
    x = gaussian(10, dim=32)  # fewer samples than dimensions: rank-deficient covariances
    y = gaussian(10, dim=32, seed=1)
    fid = frechet_distance(x.mean(axis=0), np.cov(x, rowvar=False), y.mean(axis=0), np.cov(y, rowvar=False))
    assert np.isfinite(fid) and fid > 0


# --- KID ------------------------------------------------------------------------------------


def test_kid_is_near_zero_for_equal_distributions():
    mean, std = kernel_distance(gaussian(400), gaussian(400, seed=1), num_subsets=50, subset_size=200)
    assert abs(mean) < max(3 * std, 1e-3)


def test_kid_is_clearly_positive_for_shifted_distributions():
    shifted = gaussian(400, shift=0.5, seed=1)
    mean, std = kernel_distance(gaussian(400), shifted, num_subsets=50, subset_size=200)
    assert mean > 0.5 and mean > 5 * std


def test_kid_caps_the_subset_at_the_smaller_set():
    mean, _ = kernel_distance(gaussian(30), gaussian(500, seed=1, shift=1.0), num_subsets=5)
    assert np.isfinite(mean) and mean > 0


# --- Inception Score ------------------------------------------------------------------------


def test_inception_score_is_one_for_uniform_predictions():
    mean, std = inception_score(np.full((100, 10), 0.1), splits=10)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_is_num_classes_for_confident_even_predictions():
    labels = np.tile(np.arange(10), 20)  # every split of 20 holds each class twice
    mean, std = inception_score(np.eye(10)[labels], splits=10)
    assert mean == pytest.approx(10.0) and std == pytest.approx(0.0, abs=1e-9)


# --- precision / recall ---------------------------------------------------------------------


def test_precision_recall_are_one_for_identical_sets():
    x = gaussian(300)
    assert precision_recall(x, x.copy(), k=3) == (1.0, 1.0)


def test_precision_recall_fall_as_the_fake_set_moves_away():
    real = gaussian(500)
    scores = [precision_recall(real, gaussian(500, shift=s, seed=1)) for s in (0.0, 1.0, 3.0)]
    precisions, recalls = zip(*scores)
    assert precisions[0] > 0.6 and recalls[0] > 0.6
    assert precisions[0] > precisions[1] > precisions[2]
    assert recalls[0] > recalls[1] > recalls[2]
    assert precisions[2] < 0.1 and recalls[2] < 0.1


def test_precision_recall_blocks_match_one_block(monkeypatch):
    from tfgen.metrics import distances

    real, fake = gaussian(200), gaussian(150, shift=0.7, seed=1)
    whole = precision_recall(real, fake)
    monkeypatch.setattr(distances, "_BLOCK_ENTRIES", 1000)  # 5-row blocks
    assert precision_recall(real, fake) == whole


# --- extractors -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_digits():
    data = build_dataset(DataConfig(source="digits", image_size=8, batch_size=32))
    images, labels = zip(*((x.numpy(), y.numpy()) for x, y in data.dataset))
    return data, np.concatenate(images), np.concatenate(labels)


@pytest.fixture(scope="module")
def classifier_cache(tiny_digits, tmp_path_factory):
    data, _, _ = tiny_digits
    cache_dir = tmp_path_factory.mktemp("metrics_cache")
    extractor = get_extractor(
        "classifier",
        cache_dir=cache_dir,
        dataset_key="digits/8",
        dataset=data.dataset,
        num_classes=len(data.class_names),
        image_shape=data.image_shape,
    )
    return cache_dir, extractor


def test_classifier_extractor_learns_the_digits(tiny_digits, classifier_cache):
    _, images, labels = tiny_digits
    _, extractor = classifier_cache
    probabilities = extractor.probabilities(images)
    assert probabilities.shape == (len(images), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(probabilities.argmax(axis=1) == labels) > 0.8
    features = extractor.features(images[:300])  # 300 = 256 + a partial batch
    assert features.shape == (300, extractor.dim) and extractor.dim == 128
    assert features.dtype == np.float32


def test_classifier_extractor_reloads_from_cache_without_training(tiny_digits, classifier_cache, monkeypatch):
    data, images, _ = tiny_digits
    cache_dir, extractor = classifier_cache
    [cached] = cache_dir.glob("*.keras")
    assert cached.name == "digits_8_classifier_8x8x1.keras"

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(ClassifierExtractor, "train", no_training)
    reloaded = get_extractor(
        "classifier",
        cache_dir=cache_dir,
        dataset_key="digits/8",
        dataset=data.dataset,
        num_classes=10,
        image_shape=data.image_shape,
    )
    np.testing.assert_array_equal(reloaded.features(images[:64]), extractor.features(images[:64]))
    assert not any(p.name.endswith(".partial.keras") for p in cache_dir.iterdir())


def test_classifier_extractor_needs_labels(tmp_path):
    with pytest.raises(TfgenError, match="inception"):
        get_extractor("classifier", cache_dir=tmp_path, dataset_key="faces", num_classes=0, image_shape=(8, 8, 3))


def test_inception_extractor_explains_missing_weights_offline(monkeypatch):
    def offline(*args, **kwargs):  # what keras.utils.get_file raises without a network
        raise Exception(
            "URL fetch failure on https://storage.googleapis.com/tensorflow/keras-applications/"
            "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5: None -- "
            "[Errno -3] Temporary failure in name resolution"
        )

    monkeypatch.setattr(keras.applications, "InceptionV3", offline)
    with pytest.raises(TfgenError, match="internet") as info:
        get_extractor("inception")
    message = str(info.value)
    assert "downloads" in message and "'classifier'" in message and "\n" not in message


def test_inception_extractor_takes_small_gray_images(monkeypatch):
    inception_v3 = keras.applications.InceptionV3

    # Random weights stand in for the ImageNet download; the resizing and RGB path are the same.
    def random_weights(weights, **kwargs):
        return inception_v3(weights=None, **kwargs)

    monkeypatch.setattr(keras.applications, "InceptionV3", random_weights)
    extractor = get_extractor("inception")
    extractor.batch_size = 2
    images = np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 1)).astype(np.float32)
    features = extractor.features(images)
    assert features.shape == (3, extractor.dim) == (3, 2048) and np.isfinite(features).all()


def test_unknown_extractor_lists_the_valid_names():
    with pytest.raises(TfgenError, match="classifier, inception"):
        get_extractor("vgg")
