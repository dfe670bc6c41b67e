"""Conditional VAE (Sohn et al. 2015): encoder and decoder both see the class label.

Ask the decoder for "a 7" or "a sneaker" by passing the label with z. The label enters as a
one-hot vector beside the encoder's flat features and beside z.
"""

from typing import Literal

from tfgen.models.conv_vae import ConvVAE
from tfgen.models.registry import register


@register("cond_vae")
class CondVAE(ConvVAE):
    """ConvVAE conditioned on labels; needs a labelled source (TFDS labels, class folders, digits)."""

    needs_labels = True

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim: int = 16,
        width: int = 32,
        beta: float = 1.0,
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        seed: int | None = None,
        num_classes=10,
        upsample: Literal["transposed", "resize"] = "transposed",
        edge_weight: float = 0.0,
        perceptual_weight: float = 0.0,
        **kwargs,
    ):
        if num_classes < 2:
            raise ValueError(f"a conditional model needs at least 2 classes, the data has {num_classes}")
        super().__init__(
            image_shape,
            latent_dim,
            width,
            beta,
            likelihood,
            seed,
            num_classes,
            upsample,
            edge_weight,
            perceptual_weight=perceptual_weight,
            **kwargs,
        )
