import numpy as np
import pytest
import tensorflow as tf

from tfgen import perceptual


def line(column, size):
    """A dark vertical line one pixel wide on white, RGB in [-1, 1]."""
    image = np.ones((1, size, size, 3), np.float32)
    image[:, :, column] = -1.0
    return image


@pytest.mark.parametrize("seed", [0, 1])
def test_a_committed_line_costs_less_than_the_ramp_pixel_errors_prefer(seed):
    """The reason for the loss: a decoder unsure whether a line lies at column 7, 8 or 9 pays
    less squared error for the grey ramp averaging the three than for a sharp line at 8, and
    less perceptual difference for the sharp line."""
    net = perceptual.feature_network((16, 16, 3), seed=seed)
    candidates = [line(c, 16) for c in (7, 8, 9)]
    committed, ramp = line(8, 16), sum(candidates) / 3

    def expected(loss, guess):
        return np.mean([loss(x, guess) for x in candidates])

    def pixel(x, guess):
        return 0.5 * np.sum((x - guess) ** 2)

    def features(x, guess):
        return float(perceptual.difference(net, tf.constant(x), tf.constant(guess))[0])

    assert expected(pixel, ramp) < 0.6 * expected(pixel, committed)
    assert expected(features, committed) < 0.9 * expected(features, ramp)


def test_difference_is_zero_for_equal_images_and_per_example():
    net = perceptual.feature_network((8, 8, 3))
    images = tf.random.stateless_uniform((3, 8, 8, 3), seed=(1, 2), minval=-1, maxval=1)
    np.testing.assert_allclose(perceptual.difference(net, images, images), 0.0, atol=1e-6)
    other = tf.concat([images[:1], -images[1:]], 0)
    diff = perceptual.difference(net, images, other).numpy()
    assert diff.shape == (3,) and diff[0] == pytest.approx(0.0, abs=1e-6) and np.all(diff[1:] > 0)


def test_network_is_frozen_and_the_same_on_every_build():
    first, second = (perceptual.feature_network((8, 8, 3)) for _ in range(2))
    assert first.trainable_weights == []
    assert len(first.outputs) == perceptual.STAGES - 1
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.get_weights()[0], perceptual.feature_network((8, 8, 3), seed=1).get_weights()[0])
