import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_keras_round_trip, digits, real_images, toy_model

from tfgen.export import export_saved_model

SIZE = dict(latent_dim=4, g_width=4, d_width=4, embed_dim=4)


def test_generator_output_changes_with_the_label():
    model = toy_model("cond_gan", **SIZE)
    model.fit(digits(), epochs=1, verbose=0, shuffle=False)
    z = tf.repeat(tf.random.normal((1, 4)), 10, axis=0)
    images = model.generate(z, tf.range(10)).numpy()
    assert min(np.abs(images[0] - images[k]).max() for k in range(1, 10)) > 1e-5


def test_projection_discriminator_score_depends_on_the_label():
    model = toy_model("cond_gan", **SIZE)
    model.train_step((real_images(model, 8), tf.range(8, dtype=tf.int64)))
    images = real_images(model, 2)
    a = model.discriminate(images, tf.constant([0, 0]), training=False)
    b = model.discriminate(images, tf.constant([5, 5]), training=False)
    assert not np.allclose(a, b)


def test_needs_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        toy_model("cond_gan", num_classes=1, **SIZE)


def test_round_trip_and_export_take_labels(tmp_path):
    model = toy_model("cond_gan", ema_decay=0.5, **SIZE)
    model.train_step((real_images(model, 8), tf.range(8, dtype=tf.int64)))
    z, labels = tf.random.normal((3, 4)), tf.constant([1, 4, 7])
    assert_keras_round_trip(model, tmp_path, z, labels)
    loaded = tf.saved_model.load(str(export_saved_model(model, tmp_path / "sm", [str(i) for i in range(10)])))
    out = list(loaded.signatures["generate"](z=z, label=labels).values())[0]
    np.testing.assert_allclose(out, model.generate(z, labels), atol=1e-5)
