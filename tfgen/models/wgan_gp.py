"""WGAN-GP (Gulrajani et al. 2017): a Wasserstein critic kept 1-Lipschitz by a gradient penalty.

The critic has no BatchNorm (the penalty is per example, and batch statistics would couple
the examples); layer normalisation takes its place, as the paper suggests. Train it with
Adam(1e-4, beta_1 0, beta_2 0.9) and `d_steps: 5`, the paper's settings.
"""

from typing import Literal

import tensorflow as tf

from tfgen import losses
from tfgen.models.dcgan import DCGAN
from tfgen.models.registry import register


@register("wgan_gp")
class WGANGP(DCGAN):
    """DCGAN networks, Wasserstein loss, gradient penalty weighted by `gp_weight` (lambda)."""

    metric_names = ("d_loss", "g_loss", "real_score", "fake_score", "gradient_penalty")

    def __init__(
        self,
        image_shape=(32, 32, 1),
        latent_dim: int = 100,
        g_width: int = 64,
        d_width: int = 64,
        loss: Literal["wasserstein"] = "wasserstein",
        d_norm: Literal["layer", "none"] = "layer",
        d_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        d_steps: int = 5,
        gp_weight: float = 10.0,
        ema_decay: float = 0.0,
        diffaugment: str = "",
        seed: int | None = None,
        num_classes=0,
        **kwargs,
    ):
        if label_smoothing:
            raise ValueError("label_smoothing does not apply to a Wasserstein critic; leave it at 0")
        if gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight}")
        super().__init__(
            image_shape=image_shape,
            latent_dim=latent_dim,
            g_width=g_width,
            d_width=d_width,
            loss=loss,
            d_norm=d_norm,
            d_dropout=d_dropout,
            label_smoothing=label_smoothing,
            d_steps=d_steps,
            ema_decay=ema_decay,
            diffaugment=diffaugment,
            seed=seed,
            num_classes=num_classes,
            **kwargs,
        )
        self.gp_weight = gp_weight

    def discriminator_penalty(self, real, fake, labels):
        epsilon = tf.random.stateless_uniform([tf.shape(real)[0]], seed=self.next_seed())
        penalty = losses.gradient_penalty(lambda x: self.discriminate(x, labels), real, fake, epsilon)
        return self.gp_weight * penalty, {"gradient_penalty": self.global_mean(penalty)}

    def get_config(self):
        return {**super().get_config(), "gp_weight": self.gp_weight}
