"""BigGAN at toy size: conditional BN, hierarchical z, attention, spectral norm, projection D."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_model

from tfgen.models.biggan import ConditionalBatchNorm, SelfAttention, SpectralEmbedding

SIZE = dict(latent_dim=8, g_width=4, d_width=4, embed_dim=4)


def model(name="biggan", **kwargs):
    params = dict(SIZE, num_classes=3) if name == "biggan" else dict(SIZE)
    params.update(kwargs)
    return toy_model(name, (32, 32, 3), **params)


def layers_of(network):
    found = []
    for layer in network.layers:
        found.append(layer)
        found += [getattr(layer, "layer", None)] if hasattr(layer, "layer") else []
    return found


def test_parts_are_there():
    m = model()
    g, d = layers_of(m.generator), layers_of(m.discriminator)
    assert sum(isinstance(layer, ConditionalBatchNorm) for layer in g) == 2 * 3  # two per block, 3 blocks
    assert any(isinstance(layer, SelfAttention) for layer in g) and any(isinstance(layer, SelfAttention) for layer in d)
    assert any(isinstance(layer, SpectralEmbedding) for layer in d)
    for network in (m.generator, m.discriminator):
        for layer in network.layers:  # every weight layer is spectrally normalised
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
                pytest.fail(f"{network.name}: {layer.name} is not spectrally normalised")


def test_the_class_changes_the_image_through_conditional_batch_norm():
    m = model()
    real = tf.random.stateless_uniform((8, 32, 32, 3), seed=(1, 0), minval=-1, maxval=1)
    m.train_step((real, tf.constant([0, 1, 2, 0, 1, 2, 0, 1], tf.int64)))  # gains move off 1
    z = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    zeros, twos = m.generate(z, np.array([0, 0])), m.generate(z, np.array([2, 2]))
    assert float(tf.reduce_max(tf.abs(zeros - twos))) > 1e-4
    out = m.generate(z, np.array([1, 1]))
    assert out.shape == (2, 32, 32, 3) and float(tf.reduce_max(tf.abs(out))) <= 1.0


def test_each_block_gets_its_own_chunk_of_z():
    """Changing only the last chunk of z (the last block's) changes the image."""
    m = model(latent_dim=12)  # 4 chunks of 3
    z = np.zeros((1, 12), np.float32)
    other = z.copy()
    other[0, -3:] = 3.0
    labels = np.array([1])
    real = tf.random.stateless_uniform((8, 32, 32, 3), seed=(1, 0), minval=-1, maxval=1)
    m.train_step((real, tf.constant([0, 1, 2, 0, 1, 2, 0, 1], tf.int64)))
    assert float(tf.reduce_max(tf.abs(m.generate(z, labels) - m.generate(other, labels)))) > 1e-5
    with pytest.raises(ValueError, match="latent_dim must be at least 4"):
        model(latent_dim=3)


def test_training_steps_move_g_and_d_and_orthogonal_penalty_counts():
    m = model(d_steps=2)
    before_g = [w.numpy().copy() for w in m.generator.trainable_weights]
    before_d = [w.numpy().copy() for w in m.discriminator.trainable_weights]
    real = tf.random.stateless_uniform((16, 32, 32, 3), seed=(2, 0), minval=-1, maxval=1)
    logs = m.train_step((real, tf.constant([0, 1, 2, 0] * 4, tf.int64)))
    assert int(m.d_optimizer.iterations) == 2 and int(m.g_optimizer.iterations) == 1
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before_g, m.generator.trainable_weights))
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before_d, m.discriminator.trainable_weights))
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert float(m.orthogonal_penalty()) > 0
    assert float(model(ortho_reg=0.0).orthogonal_penalty()) == 0.0


def test_the_unconditional_variant_needs_no_labels():
    """(The .keras round trips of both variants are tests/test_contract.py's, over the registry.)"""
    u = model("biggan_uncond", attention_resolution=16)
    assert not u.needs_labels and "num_classes" not in u.get_config()
    u.train_step(tf.random.stateless_uniform((8, 32, 32, 3), seed=(3, 0), minval=-1, maxval=1))
    _, inputs = u.generate_endpoint()
    assert [spec.name for spec in inputs] == ["z"]
    _, inputs = model().generate_endpoint()
    assert [spec.name for spec in inputs] == ["z", "label"]
    with pytest.raises(ValueError, match="use biggan_uncond"):
        model(num_classes=1)
    with pytest.raises(ValueError, match="image_size 32, 64 or 128"):  # 28 is 7 x 4
        toy_model("biggan", (28, 28, 1), num_classes=3, **SIZE)


def test_trains_under_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        m = model()
        real = tf.random.stateless_uniform((8, 32, 32, 3), seed=(1, 0), minval=-1, maxval=1)
        logs = m.train_step((real, tf.constant([0, 1, 2, 0, 1, 2, 0, 1], tf.int64)))
        assert all(np.isfinite(float(v)) for v in logs.values())
        assert m.generate(np.zeros((2, 8), np.float32), np.array([0, 1])).dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")
