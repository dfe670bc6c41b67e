"""The adversarial autoencoder (`aae`): its step trains encoder, decoder and the latent
discriminator, codes are judged against the prior, and a run draws the VAE's pictures."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import digits, toy_model

from tfgen import callbacks

TOY = dict(latent_dim=2, width=4, d_width=8)


def test_a_step_moves_encoder_decoder_and_latent_discriminator():
    model = toy_model("aae", **TOY)
    networks = ("encoder", "decoder", "latent_discriminator")
    before = {net: [v.numpy().copy() for v in getattr(model, net).trainable_variables] for net in networks}
    history = model.fit(digits(), epochs=1, steps_per_epoch=2, verbose=0).history
    assert set(history) == {"reconstruction", "d_loss", "g_loss", "real_score", "fake_score"}
    for net in networks:
        after = getattr(model, net).trainable_variables
        kernels = [i for i, v in enumerate(after) if v.path.endswith("kernel")]
        assert all(not np.array_equal(before[net][i], after[i].numpy()) for i in kernels), net


def test_the_latent_discriminator_judges_codes_against_the_prior():
    """D's 'real' inputs are prior draws and its 'fake' ones the codes: with the encoder far
    from the prior (codes shifted by 5), D learns to tell them apart within a few steps."""
    model = toy_model("aae", lr=1e-2, adversarial_weight=0.0, **TOY)
    shift = model.encoder.layers[-1].bias
    shift.assign(tf.concat([tf.fill([2], 5.0), tf.fill([2], -6.0)], 0))  # mean 5, tiny variance
    model.fit(digits(), epochs=8, steps_per_epoch=4, verbose=0)
    images = next(iter(digits()))[0]
    codes, _ = model.encode(images)
    prior = model.sample_noise(256, np.random.default_rng(0))
    real_score = float(tf.reduce_mean(tf.sigmoid(model.latent_discriminator(prior))))
    fake_score = float(tf.reduce_mean(tf.sigmoid(model.latent_discriminator(codes))))
    assert real_score > 0.7 and fake_score < 0.3, (real_score, fake_score)


def test_a_run_draws_reconstructions_and_prior_samples(tmp_path):
    model = toy_model("aae", **TOY)
    assert model.reconstructs and model.encodes and set(model.pictures) == {"samples", "reconstructions"}
    real = next(iter(digits()))[0].numpy()
    pictures = callbacks.VAEPictures(tmp_path, real, np.zeros(len(real)), every=1, last_epoch=1)
    grid = callbacks.SampleGrid(tmp_path, model.sample_noise(8, np.random.default_rng(0)), 1, 1)
    model.fit(digits(), epochs=1, steps_per_epoch=1, verbose=0, callbacks=[pictures, grid])
    for name in ("reconstructions.png", "interpolation.png", "samples/epoch_001.png", "manifold.png"):
        assert (tmp_path / name).is_file(), name
    rebuilt = model.reconstruct(real[:4]).numpy()
    assert rebuilt.shape == real[:4].shape and np.abs(rebuilt).max() <= 1.0


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="adversarial_weight must be >= 0, got -1"):
        toy_model("aae", adversarial_weight=-1.0, **TOY)
    with pytest.raises(ValueError, match="d_width must be an integer >= 1, got 0"):
        toy_model("aae", latent_dim=2, width=4, d_width=0)
