"""DCGAN (Radford et al. 2016): the baseline convolutional GAN.

`train_step` follows the paper's algorithm box: `d_steps` discriminator updates on the real
batch and fresh fakes, then one generator update. The two halves are public methods
(`discriminator_step`, `generator_step`) so tests and subclasses can run them one at a time.
"""

from typing import Literal, Optional

import tensorflow as tf

from tfgen import export, layers, losses
from tfgen.models.base import GenerativeModel
from tfgen.models.registry import register


@register("dcgan")
class DCGAN(GenerativeModel):
    """Generator + discriminator trained with a GAN loss; `model(z)` generates images.

    Args:
        image_shape: (size, size, channels) of the training images, size as in
            `tfgen.layers.resolution_plan` (28, 32, 64, 128, ...).
        latent_dim: size of the N(0, I) latent vector z.
        g_width, d_width: channels of G's last and D's first convolution; the other
            layers double from there (the paper's ngf / ndf).
        loss: "non_saturating" (the paper's) or "hinge".
        d_dropout: dropout rate after every activation in D (0 disables it).
        label_smoothing: one-sided: D's target for real images is 1 - label_smoothing.
        d_steps: discriminator updates per generator update.
        seed: seeds the latent draws inside `train_step` (state saved with checkpoints).
    """

    optimizer_names = {"d_optimizer": ("discriminator",), "g_optimizer": ("generator",)}
    export_networks = ("generator",)

    def __init__(
        self,
        image_shape=(32, 32, 1),
        latent_dim: int = 100,
        g_width: int = 64,
        d_width: int = 64,
        loss: Literal["non_saturating", "hinge"] = "non_saturating",
        d_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        d_steps: int = 1,
        seed: Optional[int] = None,
        **kwargs,
    ):
        super().__init__(
            image_shape, latent_dim, seed, ("d_loss", "g_loss", "real_score", "fake_score"), **kwargs
        )
        for name, value in (("g_width", g_width), ("d_width", d_width), ("d_steps", d_steps)):
            if value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value}")
        if not 0 <= d_dropout < 1:
            raise ValueError(f"d_dropout must be in [0, 1), got {d_dropout}")
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.g_width = g_width
        self.d_width = d_width
        self.loss = loss
        self.d_dropout = d_dropout
        self.label_smoothing = label_smoothing
        self.d_steps = d_steps
        self._d_loss, self._g_loss = losses.gan_loss(loss)
        self.generator = layers.build_generator(latent_dim, self.image_shape, g_width)
        self.discriminator = layers.build_discriminator(self.image_shape, d_width, d_dropout)
        self.built = True

    def generate(self, z, labels=None, training=False):
        """Images in [-1, 1] for latent vectors z [B, latent_dim]."""
        return self.generator(z, training=training)

    def discriminator_step(self, real):
        """One D update on a real batch and as many fresh fakes. Returns replica-local shares."""
        fake = self.generator(self.sample_latent(tf.shape(real)[0]), training=True)
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            loss = self.global_mean(self._d_loss(real_logits, fake_logits, self.label_smoothing))
        self.apply_update("d_optimizer", tape, loss)
        return {
            "d_loss": loss,
            "real_score": self.global_mean(tf.sigmoid(real_logits)),
            "fake_score": self.global_mean(tf.sigmoid(fake_logits)),
        }

    def generator_step(self, batch_size):
        """One G update through a (not updated) D. Returns the replica-local loss share."""
        with tf.GradientTape() as tape:
            fake = self.generator(self.sample_latent(batch_size), training=True)
            loss = self.global_mean(self._g_loss(self.discriminator(fake, training=True)))
        self.apply_update("g_optimizer", tape, loss)
        return {"g_loss": loss}

    def train_step(self, data):
        real = data[0] if isinstance(data, (tuple, list)) else data
        for _ in range(self.d_steps):
            logs = self.discriminator_step(real)
        logs.update(self.generator_step(tf.shape(real)[0]))
        return self.update_trackers(logs)

    def export_endpoints(self):
        return {"generate": export.generate_endpoint(self)}

    def get_config(self):
        return {
            **super().get_config(),
            "g_width": self.g_width,
            "d_width": self.d_width,
            "loss": self.loss,
            "d_dropout": self.d_dropout,
            "label_smoothing": self.label_smoothing,
            "d_steps": self.d_steps,
        }
