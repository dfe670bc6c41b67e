"""Convolutional VAE, as in the TensorFlow CVAE tutorial, for any image_size of the DCGAN plan.

Encoder: stride-2 3x3 convolutions (width, 2*width, ...) then a dense mean / log-variance.
Decoder: dense to the smallest feature map, stride-2 transposed convolutions back up, and a
stride-1 transposed convolution to the image channels.
"""

from typing import Literal, Optional

from keras import layers

from tfgen.layers import resolution_plan
from tfgen.models.base import GenerativeModel
from tfgen.models.registry import register
from tfgen.models.vae import VAE


@register("conv_vae")
class ConvVAE(VAE):
    """The tutorial's CVAE; `width` is the first convolution's channels (tutorial: 32)."""

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim: int = 16,
        width: int = 32,
        beta: float = 1.0,
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        seed: Optional[int] = None,
        num_classes=0,
        **kwargs,
    ):
        GenerativeModel.__init__(self, image_shape, latent_dim, seed, self.metric_names, num_classes, **kwargs)
        if width < 1:
            raise ValueError(f"width must be an integer >= 1, got {width}")
        self.width = width
        self.base, self.steps = resolution_plan(self.image_shape[0])
        self.build_vae(beta, likelihood)

    def encoder_body(self, images):
        h = images
        for i in range(self.steps):
            h = layers.Conv2D(self.width * 2**i, 3, 2, "same", activation="relu")(h)
        return layers.Flatten()(h)

    def decoder_body(self, h):
        filters = self.width * 2 ** (self.steps - 1)
        h = layers.Dense(self.base * self.base * filters, activation="relu")(h)
        h = layers.Reshape((self.base, self.base, filters))(h)
        for i in range(self.steps):
            h = layers.Conv2DTranspose(max(filters // 2**i, 1), 3, 2, "same", activation="relu")(h)
        return layers.Conv2DTranspose(self.image_shape[-1], 3, 1, "same", dtype="float32")(h)

    def get_config(self):
        return {**GenerativeModel.get_config(self), "width": self.width, **self.vae_config()}
