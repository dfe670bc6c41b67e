import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_keras_round_trip, digits, real_images, toy_model

from tfgen import losses, perceptual
from tfgen.export import export_saved_model

SIZES = {
    "vae": dict(latent_dim=2, hidden_dim=16),
    "conv_vae": dict(latent_dim=2, width=4),
    "cond_vae": dict(latent_dim=2, width=4),
}
GAN_SIZES = {"vae_gan": dict(latent_dim=2, width=4, d_width=4)}


@pytest.mark.parametrize("name", sorted(SIZES))
@pytest.mark.parametrize("shape", [(8, 8, 1), (16, 16, 3)])
def test_encode_decode_shapes_and_range(name, shape):
    model = toy_model(name, shape, **SIZES[name])
    labels = tf.constant([1, 2, 3, 4]) if model.needs_labels else None
    mean, log_var = model.encode(real_images(model), labels)
    assert mean.shape == log_var.shape == (4, 2)
    images = model.generate(mean, labels)
    assert images.shape == (4, *shape)
    assert float(tf.reduce_min(images)) >= -1 and float(tf.reduce_max(images)) <= 1


def test_conv_vae_handles_mnist_and_128px_sizes():
    for size in (28, 128):
        model = toy_model("conv_vae", (size, size, 1), latent_dim=2, width=2)
        assert model.generate(tf.zeros((1, 2))).shape == (1, size, size, 1)


@pytest.mark.parametrize("name", ["conv_vae", "cond_vae", "vae_gan"])
def test_resize_decoder_has_no_stride_2_transposed_convolution(name, tmp_path):
    sizes = {**SIZES, **GAN_SIZES}[name]
    model = toy_model(name, (16, 16, 3), upsample="resize", **sizes)
    strided = [l for l in model.decoder.layers if "transpose" in type(l).__name__.lower() and l.strides != (1, 1)]
    assert strided == []
    assert sum("UpSampling2D" == type(l).__name__ for l in model.decoder.layers) == 2
    labels = tf.constant([1, 2]) if model.needs_labels else None
    before = [v.numpy().copy() for v in model.decoder.trainable_variables]
    model.train_step((real_images(model, 2), labels) if labels is not None else real_images(model, 2))
    assert all(not np.allclose(b, a.numpy()) for b, a in zip(before, model.decoder.trainable_variables))
    inputs = (tf.zeros((2, 2)), labels) if labels is not None else (tf.zeros((2, 2)),)
    assert assert_keras_round_trip(model, tmp_path, *inputs).upsample == "resize"
    with pytest.raises(ValueError, match="upsample must be 'transposed' or 'resize', got 'bilinear'"):
        toy_model(name, (16, 16, 3), upsample="bilinear", **sizes)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_loss_falls_over_a_short_run_on_digits(name):
    model = toy_model(name, lr=3e-3, **SIZES[name])
    history = model.fit(digits(), epochs=5, verbose=0, shuffle=False).history
    assert set(history) == {"loss", "reconstruction", "kl"}
    assert history["loss"][-1] < 0.9 * history["loss"][0]
    assert all(k >= 0 for k in history["kl"])


def test_train_step_moves_encoder_and_decoder():
    model = toy_model("conv_vae", **SIZES["conv_vae"])
    before = [v.numpy().copy() for v in model.trainable_variables]
    model.train_step(real_images(model))
    after = model.trainable_variables
    assert all(not np.allclose(b, a.numpy()) for b, a in zip(before, after))
    assert int(model.optimizer.iterations) == 1


def test_beta_weights_the_kl_term():
    plain = toy_model("vae", latent_dim=2, hidden_dim=16)
    heavy = toy_model("vae", latent_dim=2, hidden_dim=16, beta=4.0)
    heavy.set_weights(plain.get_weights())
    logs_plain = plain.train_step(real_images(plain))
    logs_heavy = heavy.train_step(real_images(heavy))
    np.testing.assert_allclose(logs_plain["kl"], logs_heavy["kl"], rtol=1e-5)
    expected = float(logs_heavy["reconstruction"]) + 4.0 * float(logs_heavy["kl"])
    assert float(logs_heavy["loss"]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["vae", "conv_vae"])
def test_edge_weight_adds_the_edge_term_to_the_reconstruction(name):
    size = {"hidden_dim": 16} if name == "vae" else {"width": 4}
    plain, edged, twin = (
        toy_model(name, latent_dim=2, likelihood="gaussian", edge_weight=w, **size) for w in (0.0, 0.5, 0.0)
    )
    edged.set_weights(plain.get_weights())
    twin.set_weights(plain.get_weights())
    images = real_images(plain)
    rec_plain, kl_plain, mean, log_var = plain.elbo_terms(images)
    rec_edged, kl_edged, _, _ = edged.elbo_terms(images)  # the same seed: the same z
    np.testing.assert_allclose(kl_edged, kl_plain, rtol=1e-5)
    decoded = twin.decode(twin.reparameterize(mean, log_var))  # that z's images, via the twin
    edges = losses.edge_difference(images, decoded).numpy()
    assert np.all(edges > 0)
    np.testing.assert_allclose(rec_edged - rec_plain, 0.5 * edges, rtol=1e-4)
    assert edged.get_config()["edge_weight"] == 0.5
    with pytest.raises(ValueError, match="edge_weight must be >= 0"):
        toy_model(name, latent_dim=2, edge_weight=-1.0, **size)


def test_conditional_decoder_output_depends_on_the_label():
    model = toy_model("cond_vae", **SIZES["cond_vae"])
    model.fit(digits(), epochs=1, verbose=0, shuffle=False)
    z = tf.zeros((10, 2))
    images = model.generate(z, tf.range(10)).numpy()
    differences = [np.abs(images[0] - images[k]).mean() for k in range(1, 10)]
    assert min(differences) > 1e-4


def test_conditional_model_refuses_unlabelled_data():
    with pytest.raises(ValueError, match="at least 2 classes"):
        toy_model("cond_vae", num_classes=0, **SIZES["cond_vae"])


@pytest.mark.parametrize("name", sorted(SIZES))
def test_keras_round_trip(name, tmp_path):
    model = toy_model(name, **SIZES[name])
    model.train_step((real_images(model), tf.constant([0, 1, 2, 3], tf.int64)))
    z = tf.random.normal((3, 2))
    labels = tf.constant([1, 5, 9]) if model.needs_labels else None
    loaded = assert_keras_round_trip(model, tmp_path, z, labels)
    np.testing.assert_allclose(
        loaded.encode(real_images(model), None if labels is None else tf.constant([1, 1, 1, 1]))[0],
        model.encode(real_images(model), None if labels is None else tf.constant([1, 1, 1, 1]))[0],
        atol=1e-5,
    )


@pytest.mark.parametrize("name", sorted(SIZES))
def test_saved_model_signatures(name, tmp_path):
    model = toy_model(name, **SIZES[name])
    loaded = tf.saved_model.load(str(export_saved_model(model, tmp_path / "sm", ["a"] * 10)))
    assert {"encode", "decode", "sample"} <= set(loaded.signatures)
    images, z = real_images(model), tf.random.normal((4, 2))
    if model.needs_labels:
        label = tf.constant([3, 3, 3, 3])
        encoded = loaded.signatures["encode"](images=images, label=label)
        decoded = loaded.signatures["decode"](z=z, label=label)
        sampled = loaded.signatures["sample"](count=tf.constant(5), label=tf.constant(3))
        expected_mean = model.encode(images, label)[0]
        expected_images = model.generate(z, label)
    else:
        encoded = loaded.signatures["encode"](images=images)
        decoded = loaded.signatures["decode"](z=z)
        sampled = loaded.signatures["sample"](count=tf.constant(5))
        expected_mean = model.encode(images)[0]
        expected_images = model.generate(z)
    np.testing.assert_allclose(encoded["mean"], expected_mean, atol=1e-5)
    assert encoded["log_var"].shape == (4, 2)
    np.testing.assert_allclose(list(decoded.values())[0], expected_images, atol=1e-5)
    assert list(sampled.values())[0].shape == (5, 8, 8, 1)


def test_perceptual_weight_adds_the_perceptual_term_and_leaves_its_network_alone(tmp_path):
    plain, weighted, twin = (
        toy_model("conv_vae", (8, 8, 3), latent_dim=2, width=4, likelihood="gaussian", perceptual_weight=w)
        for w in (0.0, 2.0, 0.0)
    )
    for other in (weighted, twin):
        other.encoder.set_weights(plain.encoder.get_weights())
        other.decoder.set_weights(plain.decoder.get_weights())
    images = real_images(plain)
    rec_plain, kl_plain, mean, log_var = plain.elbo_terms(images)
    rec_weighted, kl_weighted, _, _ = weighted.elbo_terms(images)  # the same seed: the same z
    np.testing.assert_allclose(kl_weighted, kl_plain, rtol=1e-5)
    decoded = twin.decode(twin.reparameterize(mean, log_var))  # that z's images, via the twin
    term = perceptual.difference(weighted.perceptual_features, images, decoded).numpy()
    assert np.all(term > 0)
    np.testing.assert_allclose(rec_weighted - rec_plain, 2.0 * term, rtol=1e-4)

    frozen = [w.numpy().copy() for w in weighted.perceptual_features.weights]
    trained = [w.numpy().copy() for w in weighted.decoder.trainable_variables]
    weighted.train_step(images)
    assert all(np.array_equal(b, a.numpy()) for b, a in zip(frozen, weighted.perceptual_features.weights))
    assert all(not np.allclose(b, a.numpy()) for b, a in zip(trained, weighted.decoder.trainable_variables))
    assert assert_keras_round_trip(weighted, tmp_path, tf.zeros((2, 2))).perceptual_weight == 2.0
    with pytest.raises(ValueError, match="perceptual_weight must be >= 0"):
        toy_model("conv_vae", latent_dim=2, width=4, perceptual_weight=-1.0)
