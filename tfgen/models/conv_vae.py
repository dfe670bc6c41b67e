"""Convolutional VAE, as in the TensorFlow CVAE tutorial, for any image_size of the DCGAN plan.

Encoder: stride-2 3x3 convolutions (width, 2*width, ...) then a dense mean / log-variance.
Decoder: dense to the smallest feature map, stride-2 transposed convolutions back up, and a
stride-1 transposed convolution to the image channels. With `upsample: resize` each doubling
is a nearest-neighbour resize and a 3x3 convolution instead: a 3x3 stride-2 transposed
convolution reaches every other output pixel from one input pixel and its neighbours from
two, so prior samples of the 64 px Pokemon VAE came out speckled (see
`tfgen.layers.build_generator`).
"""

from typing import Literal

import keras

from tfgen import layers
from tfgen.models.base import GenerativeModel
from tfgen.models.registry import register
from tfgen.models.vae import VAE


@register("conv_vae")
class ConvVAE(VAE):
    """The tutorial's CVAE; `width` is the first convolution's channels (tutorial: 32).

    `upsample`: how the decoder doubles its resolution, "transposed" (the tutorial's) or
    "resize" (module doc).
    """

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim: int = 16,
        width: int = 32,
        beta: float = 1.0,
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        seed: int | None = None,
        num_classes=0,
        upsample: Literal["transposed", "resize"] = "transposed",
        edge_weight: float = 0.0,
        perceptual_weight: float = 0.0,
        **kwargs,
    ):
        GenerativeModel.__init__(self, image_shape, latent_dim, seed, self.metric_names, num_classes, **kwargs)
        if width < 1:
            raise ValueError(f"width must be an integer >= 1, got {width}")
        layers.check_upsample(upsample)
        self.width = width
        self.upsample = upsample
        self.base, self.steps = layers.resolution_plan(self.image_shape[0])
        self.build_vae(beta, likelihood, edge_weight, perceptual_weight)

    def encoder_body(self, images):
        h = images
        for i in range(self.steps):
            h = keras.layers.Conv2D(self.width * 2**i, 3, 2, "same", activation="relu")(h)
        return keras.layers.Flatten()(h)

    def decoder_body(self, h):
        filters = self.width * 2 ** (self.steps - 1)
        h = keras.layers.Dense(self.base * self.base * filters, activation="relu")(h)
        h = keras.layers.Reshape((self.base, self.base, filters))(h)
        for i in range(self.steps):
            channels = max(filters // 2**i, 1)
            if self.upsample == "resize":
                h = keras.layers.UpSampling2D(2, interpolation="nearest")(h)
                h = keras.layers.Conv2D(channels, 3, 1, "same", activation="relu")(h)
            else:
                h = keras.layers.Conv2DTranspose(channels, 3, 2, "same", activation="relu")(h)
        return keras.layers.Conv2DTranspose(self.image_shape[-1], 3, 1, "same", dtype="float32")(h)

    def get_config(self):
        return {**GenerativeModel.get_config(self), "width": self.width, "upsample": self.upsample, **self.vae_config()}
