"""Adversarial autoencoder (Makhzani et al. 2015): an autoencoder whose codes a GAN shapes.

Where a VAE pulls each code toward the prior N(0, I) with a KL term, the AAE trains a small
discriminator on the latent code to tell codes of real images from draws of the prior, and
the encoder to fool it, so the codes as a whole come to fill the prior; the decoder then
draws new images from prior samples. The paper's two phases, in one step:

    reconstruction: encoder + decoder minimise the reconstruction error;
    regularisation: the latent discriminator learns prior draws (real) from codes (fake),
                    and the encoder, through it, the non-saturating GAN loss.

The encoder is the paper's "Gaussian posterior" choice (its mean and log-variance, sampled by
reparameterisation), and the networks are `ConvVAE`'s, so the VAE's pictures
(reconstructions, interpolations, the latent plane for `latent_dim` 2), `encode` and the
exports work unchanged.
"""

from typing import Literal

import keras
import tensorflow as tf

from tfgen import layers, losses
from tfgen.models.base import GenerativeModel
from tfgen.models.conv_vae import ConvVAE
from tfgen.models.registry import register


@register("aae")
class AAE(ConvVAE):
    """Convolutional encoder and decoder, and an MLP discriminator on their latent code.

    Args:
        image_shape: (size, size, channels), size as in `tfgen.layers.resolution_plan`.
        latent_dim: size of the code and of the N(0, I) prior.
        width: the encoder's first convolution's channels (doubling per stage), as `conv_vae`'s.
        d_width: units of each of the latent discriminator's two hidden layers (the paper: 1000).
        adversarial_weight: weight of the encoder's GAN loss against the reconstruction error.
        likelihood: the reconstruction error: "bernoulli" (sigmoid cross-entropy) or
            "gaussian" (squared error), as the VAEs'.
        upsample: how the decoder doubles its resolution, "transposed" or "resize" (`conv_vae`).
        seed: seeds the prior draws and the reparameterisation noise inside `train_step`.

    Examples:

    ```python
    model = AAE(image_shape=(28, 28, 1), latent_dim=8, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), d_optimizer=keras.optimizers.Adam(1e-3))
    model.fit(images, epochs=1)
    samples = model.generate(model.sample_noise(16))
    ```
    """

    optimizer_names = {"optimizer": ("encoder", "decoder"), "d_optimizer": ("latent_discriminator",)}
    metric_names = ("reconstruction", "d_loss", "g_loss", "real_score", "fake_score")

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim: int = 8,
        width: int = 32,
        d_width: int = 256,
        adversarial_weight: float = 1.0,
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        upsample: Literal["transposed", "resize"] = "transposed",
        seed: int | None = None,
        **kwargs,
    ):
        GenerativeModel.__init__(self, image_shape, latent_dim, seed, self.metric_names, **kwargs)
        for name, value in (("width", width), ("d_width", d_width)):
            if value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value}")
        if adversarial_weight < 0:
            raise ValueError(f"adversarial_weight must be >= 0, got {adversarial_weight}")
        layers.check_upsample(upsample)
        self.width = width
        self.d_width = d_width
        self.adversarial_weight = adversarial_weight
        self.upsample = upsample
        self.base, self.steps = layers.resolution_plan(self.image_shape[0])
        self.latent_discriminator = keras.Sequential(
            [
                keras.Input((latent_dim,), name="code"),
                keras.layers.Dense(d_width),
                keras.layers.LeakyReLU(0.2),
                keras.layers.Dense(d_width),
                keras.layers.LeakyReLU(0.2),
                keras.layers.Dense(1, dtype="float32"),
            ],
            name="latent_discriminator",
        )
        self.build_vae(beta=0.0, likelihood=likelihood)  # no KL term: the discriminator replaces it

    def train_step(self, data):
        images = tf.cast(data[0] if isinstance(data, (tuple, list)) else data, tf.float32)
        batch = tf.shape(images)[0]
        with tf.GradientTape(persistent=True) as tape:
            # 1. Reconstruction phase: encode (sampling the Gaussian posterior) and decode.
            mean, log_var = self.encode(images, training=True)
            codes = self.reparameterize(mean, log_var)
            reconstruction = self._nll(images, self.decoder(codes, training=True))

            # 2. Regularisation phase: the discriminator tells prior draws from codes...
            real_logits = self.latent_discriminator(self.sample_latent(batch), training=True)
            fake_logits = self.latent_discriminator(codes, training=True)
            d_loss = self.global_mean(losses.non_saturating_d(real_logits, fake_logits))

            # 3. ...and the encoder learns to fool it, alongside the reconstruction.
            g_loss = self.global_mean(losses.non_saturating_g(fake_logits))
            ae_loss = self.global_mean(reconstruction) + self.adversarial_weight * g_loss
        self.apply_update("d_optimizer", tape, d_loss)
        self.apply_update("optimizer", tape, ae_loss)
        del tape

        # 4. Update and return the metrics' running means.
        return self.update_trackers(
            {
                "reconstruction": self.global_mean(reconstruction),
                "d_loss": d_loss,
                "g_loss": g_loss,
                "real_score": self.global_mean(tf.sigmoid(real_logits)),
                "fake_score": self.global_mean(tf.sigmoid(fake_logits)),
            }
        )

    def get_config(self):
        return {
            **GenerativeModel.get_config(self),
            "width": self.width,
            "d_width": self.d_width,
            "adversarial_weight": self.adversarial_weight,
            "likelihood": self.likelihood,
            "upsample": self.upsample,
        }
