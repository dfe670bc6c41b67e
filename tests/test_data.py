"""Data sources (digits, TFDS, Kaggle) and the shared preprocessing pipeline; the folder source: test_folder.py."""

import sys
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from tfgen.config import DataConfig
from tfgen.data import build_dataset
from tfgen.data.pipeline import epoch_batches, prepare, standardize, to_rgba, to_signed_unit
from tfgen.errors import DataError

GREEN = (0, 255, 0)


def signed(rgb):
    """uint8 colour -> the [-1, 1] value the pipeline should produce for it."""
    return np.asarray(rgb, np.float32) / 127.5 - 1.0


def collect(dataset):
    """(images, labels) of a batched dataset, each concatenated along the batch axis."""
    batches = list(dataset.as_numpy_iterator())
    return tuple(np.concatenate(part) for part in zip(*batches))


# --------------------------------------------------------------------------- digits


def test_digits_batches_labels_and_facts():
    cfg = DataConfig(source="digits", image_size=16, channels=1, batch_size=8, shuffle_buffer=64)
    data = build_dataset(cfg)
    images, labels = next(iter(data.dataset))
    assert images.dtype == tf.float32 and images.shape == (8, 16, 16, 1)
    assert labels.dtype == tf.int64 and labels.shape == (8,)
    images, labels = images.numpy(), labels.numpy()
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert images.min() == -1.0  # black background
    assert (images > 0).any()  # bright ink
    assert set(labels.tolist()) <= set(range(10))
    assert data.num_examples == 1797
    assert data.class_names == [str(i) for i in range(10)]
    assert data.image_shape == (16, 16, 1)
    assert data.skipped == []
    assert data.steps_per_epoch == 1797 // 8


def test_digits_three_channels_are_gray():
    cfg = DataConfig(source="digits", image_size=8, channels=3, batch_size=4, shuffle_buffer=16)
    data = build_dataset(cfg)
    images, labels = (t.numpy() for t in next(iter(data.dataset)))
    assert images.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 1])
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_digits_limit():
    cfg = DataConfig(source="digits", image_size=8, batch_size=4, limit=20, shuffle_buffer=32)
    data = build_dataset(cfg)
    assert data.num_examples == 20
    assert data.steps_per_epoch == 5
    images, labels = collect(data.dataset)
    assert images.shape == (20, 8, 8, 1) and labels.shape == (20,)


@pytest.mark.parametrize("limit, batch_size", [(20, 32), (0, 2000)])
def test_digits_batch_larger_than_data(limit, batch_size):
    cfg = DataConfig(source="digits", image_size=8, batch_size=batch_size, limit=limit)
    with pytest.raises(DataError, match="batch_size"):
        build_dataset(cfg)


# --------------------------------------------------------------------------- TFDS


@pytest.fixture
def mock_mnist(tmp_path):
    """tfds.testing.mock_data over metadata with real splits (train: 12, test: 4).

    Without metadata files mock_data falls back to MockPolicy.USE_CODE, whose
    `info.splits` is empty, and tfds_source needs the split's size.
    """
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
        builder = tfds.builder("mnist")
        info = builder.info
        info.set_splits(
            tfds.core.SplitDict(
                [
                    tfds.core.SplitInfo(name="train", shard_lengths=[12], num_bytes=0),
                    tfds.core.SplitInfo(name="test", shard_lengths=[4], num_bytes=0),
                ]
            )
        )
        tf.io.gfile.makedirs(builder.data_dir)
        info.write_to_directory(builder.data_dir)
        yield


def tfds_cfg(**kw):
    kw = {"name": "mnist", "image_size": 8, "channels": 1, "batch_size": 4, "shuffle_buffer": 16, **kw}
    return DataConfig(source="tfds", **kw)


def test_tfds_mnist(mock_mnist):
    data = build_dataset(tfds_cfg())
    images, labels = collect(data.dataset)
    assert images.dtype == np.float32 and images.shape == (12, 8, 8, 1)
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.std() > 0
    assert labels.dtype == np.int64 and set(labels.tolist()) <= set(range(10))
    assert data.num_examples == 12
    assert data.class_names == [str(i) for i in range(10)]
    assert data.description == "TFDS mnist:train"


def test_tfds_gray_to_rgb(mock_mnist):
    images, _ = collect(build_dataset(tfds_cfg(channels=3)).dataset)
    assert images.shape == (12, 8, 8, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 1])
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_tfds_sliced_split_counts(mock_mnist):
    assert build_dataset(tfds_cfg(split="train[:50%]")).num_examples == 6
    assert build_dataset(tfds_cfg(split="test")).num_examples == 4


def test_tfds_unknown_name_suggests(mock_mnist):
    with pytest.raises(DataError, match="'mnistt'") as err:
        build_dataset(tfds_cfg(name="mnistt"))
    assert "did you mean" in str(err.value) and "mnist" in str(err.value).split("did you mean")[1]


def test_tfds_unknown_image_key(mock_mnist):
    with pytest.raises(DataError, match="'picture'") as err:
        build_dataset(tfds_cfg(image_key="picture"))
    assert "image_key" in str(err.value) and "image, label" in str(err.value)


def test_tfds_unknown_split(mock_mnist):
    with pytest.raises(DataError, match="'validation'") as err:
        build_dataset(tfds_cfg(split="validation"))
    assert "train" in str(err.value) and "test" in str(err.value)


# --------------------------------------------------------------------------- kaggle


def kaggle_cfg(**kw):
    return DataConfig(
        source="kaggle",
        name="someone/sprites",
        image_size=8,
        channels=3,
        batch_size=2,
        cache=False,
        shuffle_buffer=1,
        **kw,
    )


def test_kaggle_without_kagglehub(monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # import kagglehub -> ImportError
    with pytest.raises(DataError) as err:
        build_dataset(kaggle_cfg())
    message = str(err.value)
    assert "kagglehub" in message and "data.source=folder" in message
    assert "someone/sprites" in message


def test_kaggle_download_failure(monkeypatch):
    def fail(name):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=fail))
    with pytest.raises(DataError, match="could not download Kaggle dataset 'someone/sprites'") as err:
        build_dataset(kaggle_cfg())
    assert "ConnectionError: no network" in str(err.value)
    assert "data.source=folder" in str(err.value)


def test_kaggle_reads_sub_folder_of_download(monkeypatch, tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8), GREEN).save(tmp_path / "images" / f"{i}.png")
    asked = []
    fake = types.SimpleNamespace(dataset_download=lambda name: asked.append(name) or str(tmp_path))
    monkeypatch.setitem(sys.modules, "kagglehub", fake)
    data = build_dataset(kaggle_cfg(path="images"))
    assert asked == ["someone/sprites"]
    assert data.num_examples == 2
    np.testing.assert_allclose(collect(data.dataset)[0], np.broadcast_to(signed(GREEN), (2, 8, 8, 3)))


# --------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_to_rgba(channels):
    pixel = np.array([10, 20, 30, 40][:channels], np.uint8)
    image = np.broadcast_to(pixel, (3, 5, channels)).copy()
    expected = {
        1: [10, 10, 10, 255],
        2: [10, 10, 10, 20],
        3: [10, 20, 30, 255],
        4: [10, 20, 30, 40],
    }[channels]
    eager = to_rgba(tf.constant(image))
    graph = tf.function(to_rgba, input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])(tf.constant(image))
    for out in (eager, graph):
        assert out.dtype == tf.float32 and out.shape == (3, 5, 4)
        np.testing.assert_array_equal(out.numpy(), np.broadcast_to(expected, (3, 5, 4)))


@pytest.mark.parametrize(
    "shape, size, channels",
    [
        ((5, 7, 1), 8, 1),
        ((20, 10, 3), 8, 3),
        ((9, 9, 4), 16, 3),
        ((12, 30, 2), 8, 1),
    ],
)
def test_standardize_shape_and_dtype(shape, size, channels):
    image = tf.constant(np.random.RandomState(0).randint(0, 256, shape, dtype=np.uint8))
    out = standardize(image, size, channels)
    assert out.dtype == tf.uint8
    assert out.shape == (size, size, channels)


def test_standardize_half_transparent_blends_with_white():
    image = np.zeros((4, 4, 4), np.uint8)
    image[..., 3] = 51  # black at 20% opacity over white -> 80% white
    out = standardize(tf.constant(image), 8, 3).numpy()
    np.testing.assert_array_equal(out, np.full((8, 8, 3), 204, np.uint8))


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_fit_crops_or_pads_a_wide_image_with_white(fit):
    image = np.zeros((8, 16, 3), np.uint8)
    image[..., 0] = 255  # red, twice as wide as high
    out = standardize(tf.constant(image), 8, 3, fit).numpy()
    red = np.all(out == (255, 0, 0), axis=-1)
    white = np.all(out == (255, 255, 255), axis=-1)
    if fit == "crop":
        assert red.all()
    else:  # the whole image, 8 x 4, centred, white above and below
        assert red[2:6].all() and white[:2].all() and white[6:].all()


@pytest.mark.parametrize("fit", ["crop", "pad"])
@pytest.mark.parametrize("side", [13, 49, 56, 301])
def test_a_square_image_keeps_all_four_edges(side, fit):
    # A black frame on white, about 1 px wide at 28 px; at 49 -> 28 px a scale that rounds
    # one pixel too big would crop away the last row and column.
    image = np.full((side, side, 3), 255, np.uint8)
    w = max(1, side // 28)
    image[:w], image[-w:], image[:, :w], image[:, -w:] = 0, 0, 0, 0
    out = standardize(tf.constant(image), 28, 3, fit).numpy().min(axis=-1)
    for edge in (out[0], out[-1], out[:, 0], out[:, -1]):
        assert edge.max() < 200, (side, fit, edge)


def test_to_signed_unit_range():
    out = to_signed_unit(tf.constant([0, 255], tf.uint8)).numpy()
    np.testing.assert_allclose(out, [-1.0, 1.0])


def flip_probe():
    """8x8 gray image: bright left column, mid-gray top row, black elsewhere."""
    image = np.zeros((8, 8, 1), np.uint8)
    image[0, :] = 128
    image[:, 0] = 255
    return image


def run_pipeline(random_flip, count=32):
    images = np.stack([flip_probe()] * count)
    pairs = tf.data.Dataset.from_tensor_slices((images, np.zeros(count, np.int64)))
    cfg = DataConfig(image_size=8, channels=1, batch_size=8, random_flip=random_flip, shuffle_buffer=4)
    images, _ = collect(epoch_batches(prepare(pairs, cfg), cfg, seed=0, epoch=0))
    return images


def test_random_flip_is_horizontal_only():
    plain = run_pipeline(random_flip=False)
    expected = to_signed_unit(flip_probe()).numpy()
    assert plain.shape == (32, 8, 8, 1)
    for image in plain:
        np.testing.assert_array_equal(image, expected)

    mirrored = expected[:, ::-1]
    flipped = run_pipeline(random_flip=True)
    kinds = []
    for image in flipped:
        if np.array_equal(image, expected):
            kinds.append("same")
        elif np.array_equal(image, mirrored):
            kinds.append("mirrored")
        else:
            pytest.fail(f"random_flip produced something other than a left-right mirror:\n{image[..., 0]}")
    assert set(kinds) == {"same", "mirrored"}  # 32 coin tosses, fixed seed


def test_epoch_order_depends_only_on_seed_and_epoch():
    """A stream resumed at epoch 2 yields exactly the batches of epoch 2 of a full run."""
    cfg = DataConfig(source="digits", image_size=8, batch_size=16, limit=64, random_flip=True)
    data = build_dataset(cfg, seed=5)
    per_epoch = data.steps_per_epoch
    full = [b for b, _ in data.stream(0).take(3 * per_epoch).as_numpy_iterator()]
    resumed = [b for b, _ in data.stream(2 * per_epoch).take(per_epoch).as_numpy_iterator()]
    for a, b in zip(full[2 * per_epoch :], resumed):
        np.testing.assert_array_equal(a, b)
    # a resume from a step inside a pass continues within it
    middle = [b for b, _ in data.stream(per_epoch + 1).take(2).as_numpy_iterator()]
    for a, b in zip(full[per_epoch + 1 : per_epoch + 3], middle):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(full[0], full[per_epoch])  # epochs are shuffled differently
    other_seed = build_dataset(cfg, seed=6)
    assert not np.array_equal(next(iter(other_seed.dataset))[0], next(iter(data.dataset))[0])


def test_datasets_run_without_tf_data_autotuning():
    """tf.data's tuner thread made deleting an iterator wait up to a minute (after the
    speed-setting timings, at the end of fit); the training stream and the one-epoch
    dataset are built without it, and the stream still splits batches by data across workers."""
    data = build_dataset(DataConfig(source="digits", image_size=8, batch_size=16, limit=64), seed=0)
    options = data.stream(0).options()
    assert options.autotune.enabled is False
    assert data.dataset.options().autotune.enabled is False  # one epoch: evaluation, pictures
    assert options.experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
    assert next(iter(data.stream(0)))[0].shape == (16, 8, 8, 1)


def test_several_batches_per_step_are_the_same_images_regrouped():
    """A critic with d_steps 3 gets 3 consecutive batches per step, one pass per epoch."""
    cfg = DataConfig(source="digits", image_size=8, batch_size=4, limit=64)
    data = build_dataset(cfg, seed=5)
    assert data.steps_per_pass(3) == 64 // 12
    single = [b for b, _ in data.stream(0).take(6).as_numpy_iterator()]
    triple = [b for b, _ in data.stream(0, batches_per_step=3).take(2).as_numpy_iterator()]
    assert triple[0].shape == (12, 8, 8, 1)
    np.testing.assert_array_equal(triple[0], np.concatenate(single[:3]))
    np.testing.assert_array_equal(triple[1], np.concatenate(single[3:6]))
    # a resume at step 6 of pass 0 continues there; pass 1 starts after 5 steps
    resumed = next(data.stream(data.steps_per_pass(3) + 1, batches_per_step=3).as_numpy_iterator())[0]
    second_pass = [b for b, _ in data.stream(0, batches_per_step=3).take(7).as_numpy_iterator()]
    np.testing.assert_array_equal(resumed, second_pass[6])
