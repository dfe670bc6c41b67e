"""Sampling is not tied to a flat latent: a model that declares image-shaped noise and a
`steps` sampling option goes through `Sampler`, export, the studio's predict parsing and the
uniqueness store with no code of its own; today's flat-latent models draw as before.

The toy denoiser below is registered here, so the registry-wide contract test
(tests/test_contract.py) runs it too.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import issue

from tfgen import serve, store, uniqueness
from tfgen.errors import ConfigError
from tfgen.export import export_saved_model
from tfgen.models.base import GenerativeModel
from tfgen.models.registry import register
from tfgen.sampling import Sampler


@register("toy_denoiser")
class ToyDenoiser(GenerativeModel):
    """Image-shaped noise refined `steps` times by one convolution: a diffusion sampler's shape."""

    optimizer_names = {"optimizer": ("denoiser",)}
    export_networks = ("denoiser",)
    sampling_options = {"steps": 2}

    def __init__(self, image_shape=(8, 8, 1), seed=0, **kwargs):
        super().__init__(image_shape, latent_dim=0, seed=seed, metric_names=("loss",), **kwargs)
        self.denoiser = keras.Sequential(
            [keras.Input(image_shape), keras.layers.Conv2D(image_shape[-1], 3, padding="same")], name="denoiser"
        )

    @property
    def noise_shape(self):
        return self.image_shape

    def generate(self, noise, labels=None, training=False, steps=2):
        x = tf.convert_to_tensor(noise, tf.float32)
        for _ in range(steps):
            x = x - 0.5 * self.denoiser(x, training=training)
        return tf.tanh(x)

    def train_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        noise = tf.random.stateless_normal(tf.shape(images), seed=self.next_seed())
        with tf.GradientTape() as tape:
            loss = self.global_mean(tf.square(self.denoiser(images + noise, training=True) - noise))
        self.apply_update("optimizer", tape, loss)
        return self.update_trackers({"loss": loss})

    def get_config(self):
        config = super().get_config()
        config.pop("latent_dim")  # no flat latent: the noise is image-shaped
        return config


def toy_sampler():
    model = ToyDenoiser(seed=1)
    return model, Sampler.from_model(model, description="toy denoiser")


def test_noise_has_the_declared_shape_and_options_reach_generate():
    model, sampler = toy_sampler()
    assert sampler.noise_shape == (8, 8, 1) and sampler.noise_size == 64
    assert sampler.noise(np.random.default_rng(0), 3).shape == (3, 8, 8, 1)
    two, five = sampler.sample(3, seed=4), sampler.sample(3, seed=4, steps=5)
    assert two.shape == five.shape == (3, 8, 8, 1)
    np.testing.assert_allclose(five, model.generate(sampler.noise(np.random.default_rng(4), 3), steps=5), atol=1e-6)
    assert np.abs(two - five).max() > 1e-3
    with pytest.raises(ConfigError, match=r"no sampling option guidance; its options: steps \(default 2\)"):
        sampler.sample(1, guidance=3.0)


def test_flat_noise_as_the_store_holds_it_gives_the_same_images():
    _, sampler = toy_sampler()
    z = sampler.noise(np.random.default_rng(2), 4)
    np.testing.assert_array_equal(sampler.images(z.reshape(4, -1)), sampler.images(z))


def test_export_records_the_noise_shape_and_samples_the_same(tmp_path):
    model, sampler = toy_sampler()
    exported = Sampler.from_export(export_saved_model(model, tmp_path / "saved_model"))
    assert exported.noise_shape == (8, 8, 1) and exported.sampling_options == {}
    np.testing.assert_allclose(exported.sample(3, seed=9), sampler.sample(3, seed=9), atol=1e-5)


def test_the_studio_takes_flat_or_shaped_noise_for_predict(tmp_path):
    _, sampler = toy_sampler()
    space = uniqueness.FeatureSpace("pixels")
    db = store.Store(tmp_path / "avatars.db")
    db.register("toy", space.name, 64, sampler.noise_size)
    source = serve.Source("toy", sampler, space, space.features(sampler.sample(4, seed=0)), db, "toy")
    theme = serve.Theme("toy", "toy", "toy", source, None)
    z = np.random.default_rng(0).standard_normal((2, 8, 8, 1)).round(3)
    flat, _ = serve._instances(theme, z.reshape(2, -1).tolist())
    shaped, _ = serve._instances(theme, z.tolist())
    assert flat.shape == shaped.shape == (2, 8, 8, 1)
    np.testing.assert_array_equal(flat, shaped)
    with pytest.raises(serve.BadRequest, match="each z needs 64 numbers"):
        serve._instances(theme, [[0.0] * 8])


def test_the_store_keeps_image_shaped_noise_flat(tmp_path):
    _, sampler = toy_sampler()
    space = uniqueness.FeatureSpace("pixels")
    train = space.features(sampler.sample(20, seed=0))
    issued, _ = issue(tmp_path / "avatars.db", sampler, space, train, 3, 0.0, seed=5, options={"steps": 3})
    z = store.Store(tmp_path / "avatars.db").export("toy")["z"]
    assert z.shape == (3, 64)
    again = sampler.images(z, steps=3)
    np.testing.assert_allclose(again, np.stack([r["image"] for r in issued]), atol=1e-6)


@pytest.mark.parametrize("truncation", [None, 0.7])
def test_flat_latents_are_drawn_exactly_as_before(truncation):
    """The draw every flat-latent model's grids, scores, exports and ledgers used before the
    noise shape was declared (the old `Sampler.latents`), so a seed gives the same images."""

    def old_latents(rng, count, latent_dim):
        z = rng.standard_normal((count, latent_dim))
        if truncation is not None:
            outside = np.abs(z) > truncation
            while outside.any():
                z[outside] = rng.standard_normal(int(outside.sum()))
                outside = np.abs(z) > truncation
        return z.astype(np.float32)

    sampler = Sampler(
        lambda z, labels: np.tanh(z[:, :1, None, None]).repeat(4, 1).repeat(4, 2), 16, (4, 4, 1), (), "flat"
    )
    new = sampler.noise(np.random.default_rng(11), 50, truncation)
    np.testing.assert_array_equal(new, old_latents(np.random.default_rng(11), 50, 16))
