"""SNGAN (Miyato et al. 2018): hinge loss and spectral normalisation on every D layer.

Spectral normalisation divides each weight by its largest singular value (one power
iteration per step), bounding D's Lipschitz constant without a gradient penalty.
"""

from typing import Literal

from tfgen.models.dcgan import DCGAN
from tfgen.models.registry import register


@register("sngan")
class SNGAN(DCGAN):
    """DCGAN with SNGAN's defaults: `loss: hinge`, `d_norm: spectral`."""

    def __init__(
        self,
        image_shape=(32, 32, 3),
        latent_dim: int = 128,
        g_width: int = 64,
        d_width: int = 64,
        loss: Literal["hinge", "non_saturating", "least_squares"] = "hinge",
        d_norm: Literal["spectral"] = "spectral",
        d_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        d_steps: int = 1,
        ema_decay: float = 0.0,
        diffaugment: str = "",
        seed: int | None = None,
        num_classes=0,
        **kwargs,
    ):
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
