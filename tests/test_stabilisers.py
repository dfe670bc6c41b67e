"""The GAN stabilisers on DCGAN (and so every GAN built on it): instance noise on D's inputs,
annealed to 0, and resetting D and its optimizer every few epochs."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_model

from tfgen import callbacks, experiment
from tfgen.config import load_config
from tfgen.errors import ConfigError

TOY = dict(latent_dim=4, g_width=4, d_width=4)
SHAPE = (8, 8, 1)


def batches(count=16, batch=8):
    images = np.random.default_rng(0).uniform(-1, 1, (count, *SHAPE)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices(images).batch(batch)


def test_instance_noise_std_falls_linearly_to_zero_and_is_what_d_sees():
    model = toy_model("dcgan", SHAPE, instance_noise=0.4, instance_noise_steps=10, **TOY)
    stds = {}
    for step in (0, 5, 9, 10, 50):
        model.g_optimizer.iterations.assign(step)
        stds[step] = float(model.instance_noise_std())
        seen = model.augment(tf.zeros((256, *SHAPE))).numpy()
        assert seen.std() == pytest.approx(stds[step], abs=0.02)
    assert stds == pytest.approx({0: 0.4, 5: 0.2, 9: 0.04, 10: 0.0, 50: 0.0})
    # the schedule is driven by training: each G update is one step of it
    model.g_optimizer.iterations.assign(0)
    model.fit(batches(), epochs=1, verbose=0)
    assert int(model.g_optimizer.iterations.numpy()) == 2
    assert float(model.instance_noise_std()) == pytest.approx(0.32)


def test_without_instance_noise_d_sees_the_images_unchanged():
    model = toy_model("dcgan", SHAPE, **TOY)
    images = tf.random.normal((4, *SHAPE))
    np.testing.assert_array_equal(model.augment(images).numpy(), images.numpy())


def optimizer_state(optimizer):
    return {v.path: v.numpy().copy() for v in optimizer.variables}


def test_a_reset_gives_d_fresh_weights_and_optimizer_state_and_leaves_g_alone():
    model = toy_model("cond_gan", SHAPE, reset_d_every=2, **TOY)  # a GAN built on DCGAN
    labels = tf.data.Dataset.from_tensor_slices(np.arange(16) % 10)
    data = tf.data.Dataset.zip((batches().unbatch(), labels)).batch(8)
    model.fit(data, epochs=1, verbose=0)
    trained_d = [w.copy() for w in model.discriminator.get_weights()]
    g_weights = [w.copy() for w in model.generator.get_weights()]
    g_state = optimizer_state(model.g_optimizer)
    d_rate = float(model.d_optimizer.learning_rate.numpy())

    model.begin_epoch(1)  # not a reset epoch
    assert all(np.array_equal(a, b) for a, b in zip(trained_d, model.discriminator.get_weights()))
    model.begin_epoch(2)
    fresh_d = model.discriminator.get_weights()
    kernels = [i for i, v in enumerate(model.discriminator.weights) if v.path.endswith("kernel")]
    assert kernels and all(not np.allclose(trained_d[i], fresh_d[i]) for i in kernels)
    # fresh: the weights a newly built D draws for this seed and epoch, every time
    other = toy_model("cond_gan", SHAPE, reset_d_every=2, **TOY)
    other.reset_discriminator(epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(fresh_d, other.discriminator.get_weights()))
    # the optimizer's moments and count start over; its learning rate is the run's
    for path, value in optimizer_state(model.d_optimizer).items():
        if path.endswith("learning_rate"):
            assert value == pytest.approx(d_rate)
        else:
            assert not value.any(), path
    # G and its optimizer are untouched
    assert all(np.array_equal(a, b) for a, b in zip(g_weights, model.generator.get_weights()))
    assert all(np.array_equal(g_state[k], v) for k, v in optimizer_state(model.g_optimizer).items())
    # a run resumed inside epoch 2 does not reset D again; training goes on from the fresh D
    model.fit(data, epochs=1, verbose=0)
    after = model.discriminator.get_weights()
    model.begin_epoch(2)
    assert all(np.array_equal(a, b) for a, b in zip(after, model.discriminator.get_weights()))


def test_training_resets_d_on_schedule():
    model = toy_model("dcgan", SHAPE, reset_d_every=2, **TOY)
    model.fit(batches(), epochs=5, verbose=0, callbacks=[callbacks.EpochStart()])
    assert int(model.last_d_reset.numpy()) == 4
    assert int(model.d_optimizer.iterations.numpy()) == 2  # counted from the reset at epoch 4
    assert int(model.g_optimizer.iterations.numpy()) == 10


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.instance_noise=-0.1", "instance_noise must be a standard deviation >= 0"),
        ("model.instance_noise_steps=0", "instance_noise_steps must be an integer >= 1"),
        ("model.reset_d_every=-1", "reset_d_every must be a number of epochs >= 0"),
    ],
)
def test_bad_stabiliser_values_name_their_key(override, message):
    cfg = load_config("digits_dcgan.yaml", [override])
    with pytest.raises(ConfigError, match=message):
        experiment.build_model(cfg, SHAPE, 0, jit_compile=False)


def test_stabiliser_keys_are_typed_in_every_gan_config():
    with pytest.raises(ConfigError, match=r"model\.reset_d_every: invalid value 'often'; expected an integer"):
        load_config("mnist5k_cond_gan.yaml", ["model.reset_d_every=often"])
    cfg = load_config("mnist5k_cond_gan.yaml", ["model.instance_noise=0.1", "model.reset_d_every=3"])
    assert cfg.model.params["instance_noise"] == 0.1 and cfg.model.params["reset_d_every"] == 3
