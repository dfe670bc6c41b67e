import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_keras_round_trip, digits, real_images, toy_model

from tfgen import augment
from tfgen.export import export_saved_model

SIZE = dict(latent_dim=4, width=4, d_width=4)


def test_shapes_and_feature_head():
    model = toy_model("vae_gan", (16, 16, 3), **SIZE)
    images = model.generate(tf.random.normal((2, 4)))
    assert images.shape == (2, 16, 16, 3)
    features, logits = model.discriminator(images)
    assert logits.shape == (2, 1) and features.shape[0] == 2 and features.shape.rank == 4


def test_three_optimizers_each_move_only_their_network():
    model = toy_model("vae_gan", **SIZE)
    snapshot = {
        net: [v.numpy().copy() for v in getattr(model, net).trainable_variables]
        for net in ("encoder", "decoder", "discriminator")
    }
    logs = model.train_step(real_images(model, 8))
    for net, before in snapshot.items():
        after = getattr(model, net).trainable_variables
        assert all(not np.allclose(b, a.numpy()) for b, a in zip(before, after)), net
    for name in ("e_optimizer", "g_optimizer", "d_optimizer"):
        assert int(getattr(model, name).iterations) == 1
    assert set(logs) == {"kl", "feature_reconstruction", "d_loss", "g_loss", "real_score", "fake_score"}


def test_encoder_gradient_ignores_the_gan_term():
    """The encoder's loss is beta * KL + feature reconstruction only (Larsen et al.)."""
    a = toy_model("vae_gan", gamma=0.0, **SIZE)
    b = toy_model("vae_gan", gamma=5.0, **SIZE)
    b.set_weights(a.get_weights())
    images = real_images(a, 8)
    a.train_step(images)
    b.train_step(images)
    for va, vb in zip(a.encoder.trainable_variables, b.encoder.trainable_variables):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), atol=1e-6)
    moved = [
        not np.allclose(va.numpy(), vb.numpy())
        for va, vb in zip(a.decoder.trainable_variables, b.decoder.trainable_variables)
    ]
    assert any(moved)  # gamma does reach the decoder


def test_reconstructions_improve_over_a_short_run_on_digits():
    """D's features move as D trains, so judge the reconstructions in pixel space."""
    model = toy_model("vae_gan", lr=2e-3, **SIZE)
    data = digits()
    images, _ = next(iter(data))

    def pixel_error():
        return float(tf.reduce_mean(tf.square(model.reconstruct(images) - images)))

    before = pixel_error()
    model.fit(data, epochs=5, verbose=0, shuffle=False)
    assert pixel_error() < 0.8 * before


def test_keras_and_saved_model_round_trips(tmp_path):
    model = toy_model("vae_gan", **SIZE)
    model.train_step(real_images(model, 8))
    z = tf.random.normal((3, 4))
    assert_keras_round_trip(model, tmp_path, z)
    loaded = tf.saved_model.load(str(export_saved_model(model, tmp_path / "sm")))
    np.testing.assert_allclose(list(loaded.signatures["decode"](z=z).values())[0], model.generate(z), atol=1e-5)
    encoded = loaded.signatures["encode"](images=real_images(model))
    np.testing.assert_allclose(encoded["mean"], model.encode(real_images(model))[0], atol=1e-5)


def test_diffaugment_pairs_each_real_image_with_its_reconstruction(monkeypatch):
    """D sees augmented images only; a real image and its reconstruction share one transform,
    so the feature reconstruction compares like with like, and the prior samples get another."""
    model = toy_model("vae_gan", diffaugment="translation,cutout", **SIZE)
    calls = []
    original = augment.diff_augment

    def spy(images, policy, seed):
        calls.append((images, seed))
        return original(images, policy, seed)

    monkeypatch.setattr(augment, "diff_augment", spy)
    real = real_images(model, 8)
    model.train_step(real)
    assert len(calls) == 3
    (real_in, real_seed), (_, rec_seed), (_, sample_seed) = calls
    np.testing.assert_array_equal(real_in, real)
    np.testing.assert_array_equal(real_seed, rec_seed)
    assert not np.array_equal(real_seed, sample_seed)


def test_discriminator_judges_the_augmented_images(monkeypatch):
    model = toy_model("vae_gan", diffaugment="cutout", **SIZE)
    blank = tf.zeros((8,) + model.image_shape)
    expected = float(tf.reduce_mean(tf.sigmoid(model.discriminator(blank)[1])))
    monkeypatch.setattr(augment, "diff_augment", lambda images, policy, seed: images * 0.0)
    logs = model.train_step(real_images(model, 8))
    np.testing.assert_allclose(float(logs["real_score"]), expected, rtol=1e-5)


def test_diffaugment_round_trips_and_bad_policy_is_named(tmp_path):
    model = toy_model("vae_gan", diffaugment="color", **SIZE)
    loaded = assert_keras_round_trip(model, tmp_path, tf.random.normal((3, 4)))
    assert loaded.diffaugment == "color" and loaded._policy == ("color",)
    with pytest.raises(ValueError, match="'blur'"):
        toy_model("vae_gan", diffaugment="color,blur", **SIZE)
