"""VAE-GAN (Larsen et al. 2016): a VAE whose decoder doubles as a GAN generator.

A discriminator judges real images, reconstructions and samples from the prior, and the
reconstruction error is measured in the discriminator's feature space instead of pixels,
which is what makes the samples sharper than a plain VAE's. The paper's three losses, one
optimizer each:

    encoder:       beta * KL + L_feature
    decoder (G):   gamma * L_feature + L_GAN(G)
    discriminator: L_GAN(D) on real vs. reconstructed and prior samples
"""

from typing import Literal

import keras
import tensorflow as tf

from tfgen import augment, layers, losses
from tfgen.models.base import GenerativeModel
from tfgen.models.conv_vae import ConvVAE
from tfgen.models.registry import register


@register("vae_gan")
class VAEGAN(ConvVAE):
    """Convolutional encoder, DCGAN generator as decoder, DCGAN discriminator with a feature head.

    Args:
        width: encoder's first convolution channels and decoder's last (as DCGAN's g_width).
        d_width: discriminator's first convolution channels.
        beta: weight of the KL term in the encoder's loss.
        gamma: weight of the feature-space reconstruction in the decoder's loss, against the
            GAN term (the paper's gamma: lower it for sharper, less faithful images).
        upsample: how the decoder doubles its resolution: "transposed" or "resize", as the
            DCGAN's `g_upsample` (see `tfgen.layers.build_generator`).
        diffaugment: DiffAugment policy for every image D sees, as the DCGAN's (`tfgen.augment`);
            "" disables it. A real image and its reconstruction get the same augmentation, so
            the feature reconstruction still compares like with like.
    """

    optimizer_names = {
        "e_optimizer": ("encoder",),
        "g_optimizer": ("decoder",),
        "d_optimizer": ("discriminator",),
    }
    metric_names = ("kl", "feature_reconstruction", "d_loss", "g_loss", "real_score", "fake_score")

    def __init__(
        self,
        image_shape=(64, 64, 3),
        latent_dim: int = 128,
        width: int = 64,
        d_width: int = 64,
        beta: float = 1.0,
        gamma: float = 0.01,
        seed: int | None = None,
        upsample: Literal["transposed", "resize"] = "transposed",
        diffaugment: str = "",
        **kwargs,
    ):
        GenerativeModel.__init__(self, image_shape, latent_dim, seed, self.metric_names, **kwargs)
        for name, value in (("width", width), ("d_width", d_width)):
            if value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        layers.check_upsample(upsample)
        self.upsample = upsample
        self.diffaugment = diffaugment
        self._policy = augment.parse_policy(diffaugment)
        self.width = width
        self.d_width = d_width
        self.gamma = gamma
        self.base, self.steps = layers.resolution_plan(self.image_shape[0])
        plain = layers.build_discriminator(self.image_shape, d_width, name="discriminator_stack")
        flatten = next(layer for layer in plain.layers if isinstance(layer, keras.layers.Flatten))
        self.discriminator = keras.Model(plain.inputs, [flatten.input, plain.outputs[0]], name="discriminator")
        self.build_vae(beta, "gaussian")

    def _build_decoder(self):
        return layers.build_generator(self.latent_dim, self.image_shape, self.width, "decoder", self.upsample)

    def decode(self, z, labels=None, training=False):
        return self.decoder(z, training=training)

    def augment(self, *image_batches):
        """DiffAugment the batches with one fresh seed, so paired batches get the same
        transform (identity when no policy is set)."""
        if not self._policy:
            return image_batches
        seed = self.next_seed()
        return tuple(augment.diff_augment(x, self._policy, seed) for x in image_batches)

    def train_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        batch = tf.shape(images)[0]
        with tf.GradientTape(persistent=True) as tape:
            mean, log_var = self.encode(images, training=True)
            reconstructions = self.decoder(self.reparameterize(mean, log_var), training=True)
            samples = self.decoder(self.sample_latent(batch), training=True)
            seen_real, seen_rec = self.augment(images, reconstructions)
            (seen_samples,) = self.augment(samples)
            real_features, real_logits = self.discriminator(seen_real, training=True)
            rec_features, rec_logits = self.discriminator(seen_rec, training=True)
            _, sample_logits = self.discriminator(seen_samples, training=True)

            kl = losses.kl_standard_normal(mean, log_var)
            feature_error = tf.reshape(real_features - rec_features, [batch, -1])
            feature_rec = 0.5 * tf.reduce_sum(tf.square(tf.cast(feature_error, tf.float32)), axis=1)
            fake_logits = tf.concat([rec_logits, sample_logits], axis=1)
            d_gan = losses.non_saturating_d(real_logits, fake_logits)
            g_gan = losses.non_saturating_g(fake_logits)

            e_loss = self.global_mean(self.beta * kl + feature_rec)
            g_loss = self.global_mean(self.gamma * feature_rec + g_gan)
            d_loss = self.global_mean(d_gan)
        self.apply_update("e_optimizer", tape, e_loss)
        self.apply_update("g_optimizer", tape, g_loss)
        self.apply_update("d_optimizer", tape, d_loss)
        del tape
        return self.update_trackers(
            {
                "kl": self.global_mean(kl),
                "feature_reconstruction": self.global_mean(feature_rec),
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
            "beta": self.beta,
            "gamma": self.gamma,
            "upsample": self.upsample,
            "diffaugment": self.diffaugment,
        }
