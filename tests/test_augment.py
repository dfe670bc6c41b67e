import numpy as np
import pytest
import tensorflow as tf
from helpers import real_images, toy_model

from tfgen import augment

SEED = tf.constant([1, 2], tf.int64)


@pytest.mark.parametrize("policy", [("color",), ("translation",), ("cutout",), augment.POLICIES])
def test_each_policy_is_differentiable_and_changes_images(policy):
    x = tf.random.stateless_uniform((4, 8, 8, 3), seed=(0, 0), minval=-1, maxval=1)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = augment.diff_augment(x, policy, SEED)
        total = tf.reduce_sum(y * tf.random.stateless_normal(y.shape, seed=(1, 1)))
    grad = tape.gradient(total, x)
    assert y.shape == x.shape
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0
    assert not np.allclose(y, x)


def test_same_seed_same_augmentation():
    x = tf.random.stateless_uniform((2, 8, 8, 1), seed=(0, 0))
    np.testing.assert_array_equal(
        augment.diff_augment(x, augment.POLICIES, SEED), augment.diff_augment(x, augment.POLICIES, SEED)
    )


def test_translation_moves_content_without_scaling_it():
    x = np.zeros((1, 8, 8, 1), np.float32)
    x[0, 3, 3, 0] = 1.0
    y = augment.translation(tf.constant(x), SEED).numpy()
    assert y.sum() in (0.0, 1.0)  # the pixel moved (or left the frame), never smeared
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_cutout_zeroes_a_square_of_half_the_size():
    y = augment.cutout(tf.ones((1, 8, 8, 1)), SEED).numpy()[0, ..., 0]
    assert (y == 0).sum() == 16
    rows, cols = np.nonzero(y == 0)
    assert rows.max() - rows.min() == 3 and cols.max() - cols.min() == 3


def test_bad_policy_names_the_entry():
    with pytest.raises(ValueError, match="'blur'"):
        augment.parse_policy("color,blur")


def test_gan_augments_every_image_d_sees(monkeypatch):
    model = toy_model("dcgan", latent_dim=4, g_width=4, d_width=4, diffaugment="cutout")
    seen = []
    original = augment.diff_augment

    def spy(images, policy, seed):
        seen.append(images)
        return original(images, policy, seed)

    monkeypatch.setattr(augment, "diff_augment", spy)
    real = real_images(model, 8)
    model.train_step(real)
    assert len(seen) == 3
    np.testing.assert_array_equal(seen[0], real)  # D's update: the real batch ...
    assert not np.allclose(seen[1], real)  # ... and the fakes;
    np.testing.assert_array_equal(seen[2], seen[1])  # G is trained through those fakes, augmented again
