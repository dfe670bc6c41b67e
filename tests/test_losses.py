import math

import numpy as np
import pytest
import tensorflow as tf

from tfgen import losses


def test_non_saturating_matches_hand_computed_values():
    real = tf.constant([[0.0], [2.0]])
    fake = tf.constant([[0.0], [-1.0]])
    d = losses.non_saturating_d(real, fake).numpy()
    # -log(sigmoid(r)) - log(1 - sigmoid(f))
    expected = [2 * math.log(2), math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))]
    np.testing.assert_allclose(d, expected, rtol=1e-5)
    g = losses.non_saturating_g(fake).numpy()
    np.testing.assert_allclose(g, [math.log(2), math.log1p(math.exp(1.0))], rtol=1e-5)


def test_label_smoothing_only_touches_real_targets():
    real = tf.constant([[3.0]])
    fake = tf.constant([[-3.0]])
    plain = losses.non_saturating_d(real, fake).numpy()[0]
    smooth = losses.non_saturating_d(real, fake, label_smoothing=0.1).numpy()[0]
    p = 1 / (1 + math.exp(-3.0))
    real_term = -(0.9 * math.log(p) + 0.1 * math.log(1 - p))
    fake_term = -math.log(1 - 1 / (1 + math.exp(3.0)))
    assert smooth == pytest.approx(real_term + fake_term, rel=1e-5)
    assert smooth > plain


def test_hinge_matches_hand_computed_values():
    real = tf.constant([[0.5], [2.0]])
    fake = tf.constant([[-0.5], [-3.0]])
    np.testing.assert_allclose(losses.hinge_d(real, fake).numpy(), [0.5 + 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(losses.hinge_g(fake).numpy(), [0.5, 3.0], atol=1e-6)


def test_every_loss_name_resolves():
    for name in losses.GAN_LOSSES:
        d_loss, g_loss = losses.gan_loss(name)
        logits = tf.zeros([3, 1])
        assert d_loss(logits, logits).shape == [3]
        assert g_loss(logits).shape == [3]


def test_kl_matches_hand_computed_value():
    mean = tf.constant([[1.0, 0.0]])
    log_var = tf.constant([[0.0, math.log(2.0)]])
    # -0.5 * sum(1 + log_var - mean^2 - exp(log_var)) = -0.5 * ((1 + 0 - 1 - 1) + (1 + log 2 - 0 - 2))
    assert losses.kl_standard_normal(mean, log_var).numpy()[0] == pytest.approx(1 - 0.5 * math.log(2), rel=1e-6)
    assert losses.kl_standard_normal(tf.zeros((3, 4)), tf.zeros((3, 4))).numpy().tolist() == [0, 0, 0]


def test_bernoulli_nll_reads_pixels_as_probabilities():
    images = tf.constant([[[[-1.0], [1.0]]]])  # targets 0 and 1
    logits = tf.constant([[[[0.0], [2.0]]]])
    expected = math.log(2) + math.log1p(math.exp(-2.0))
    assert losses.bernoulli_nll(images, logits).numpy()[0] == pytest.approx(expected, rel=1e-6)


def test_gaussian_nll_is_half_the_squared_error_of_the_tanh_mean():
    images = tf.zeros((1, 2, 2, 1))
    outputs = tf.fill((1, 2, 2, 1), math.atanh(0.5))
    assert losses.gaussian_nll(images, outputs).numpy()[0] == pytest.approx(4 * 0.5 * 0.25, rel=1e-6)
    to_images = losses.LIKELIHOODS["gaussian"][1]
    np.testing.assert_allclose(to_images(outputs).numpy(), 0.5, rtol=1e-6)
    np.testing.assert_allclose(losses.LIKELIHOODS["bernoulli"][1](tf.zeros(3)).numpy(), 0.0)


def test_edge_difference_costs_blurred_edges_not_flat_offsets():
    step = tf.constant([[[-1.0], [-1.0], [1.0], [1.0]]] * 4)[None]  # a vertical edge, 4 x 4
    ramp = tf.constant([[[-1.0], [-1 / 3], [1 / 3], [1.0]]] * 4)[None]  # the same edge blurred
    # each row: neighbour differences (0, 2, 0) against (2/3, 2/3, 2/3): |.| sums to 8/3
    assert losses.edge_difference(step, ramp).numpy()[0] == pytest.approx(4 * 8 / 3, rel=1e-6)
    assert losses.edge_difference(step, step + 0.5).numpy()[0] == pytest.approx(0.0, abs=1e-6)
    assert losses.edge_difference(step, tf.transpose(step, [0, 2, 1, 3])).numpy()[0] > 0
