import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_keras_round_trip, real_images, toy_model

from tfgen import losses

SIZE = dict(latent_dim=4, g_width=4, d_width=4)


def test_gradient_penalty_matches_hand_computed_value_on_a_linear_critic():
    # D(x) = sum(w * x): the gradient is w everywhere, so the penalty is (||w|| - 1)^2
    w = tf.constant([[[[3.0]], [[4.0]]]])  # shape [1, 2, 1, 1], ||w|| = 5
    critic = lambda x: tf.reduce_sum(w * x, axis=[1, 2, 3])[:, None]  # noqa: E731
    real = tf.random.normal((3, 2, 1, 1))
    fake = tf.random.normal((3, 2, 1, 1))
    penalty = losses.gradient_penalty(critic, real, fake, tf.constant([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(penalty.numpy(), [16.0, 16.0, 16.0], rtol=1e-5)


def test_gradient_penalty_is_taken_at_the_interpolates():
    # D(x) = sum(x^2) / 2: the gradient at x_hat is x_hat itself
    critic = lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])[:, None]  # noqa: E731
    real = tf.fill((1, 1, 1, 2), 2.0)
    fake = tf.zeros((1, 1, 1, 2))
    penalty = losses.gradient_penalty(critic, real, fake, tf.constant([0.5]))  # x_hat = (1, 1)
    np.testing.assert_allclose(penalty.numpy(), [(np.sqrt(2.0) - 1.0) ** 2], rtol=1e-5)


def test_critic_has_no_batch_norm_and_reports_the_penalty():
    model = toy_model("wgan_gp", (16, 16, 1), **SIZE)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in model.discriminator.layers)
    assert any(isinstance(l, keras.layers.LayerNormalization) for l in model.discriminator.layers)
    logs = model.train_step(real_images(model, 5 * 4))
    assert float(logs["gradient_penalty"]) >= 0
    assert int(model.d_optimizer.iterations) == 5 and int(model.g_optimizer.iterations) == 1


def test_label_smoothing_is_refused():
    with pytest.raises(ValueError, match="label_smoothing"):
        toy_model("wgan_gp", label_smoothing=0.1, **SIZE)


def test_round_trip(tmp_path):
    model = toy_model("wgan_gp", **SIZE)
    model.train_step(real_images(model, 5 * 4))
    loaded = assert_keras_round_trip(model, tmp_path, tf.random.normal((3, 4)))
    assert loaded.gp_weight == 10.0 and loaded.d_steps == 5


def test_a_batch_that_is_not_d_steps_batches_is_a_clear_error():
    model = toy_model("wgan_gp", **SIZE)
    with pytest.raises(ValueError, match="d_steps = 5 real batches concatenated.*got 8"):
        model.train_step(real_images(model, 8))
