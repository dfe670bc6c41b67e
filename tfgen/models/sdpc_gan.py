"""SDPC-GAN: a GAN whose generator writes SDPC's top-layer sparse codes, decoded by SDPC's
learned dictionaries into pixels.

Why this fusion, of the three candidates (a generator of codes; SDPC inference as a VAE-GAN
encoder; SDPC codes as the discriminator's features):

- SDPC (Boutin et al. 2020, 2021) is a generative model without a sampler: its top-down
  path D_1^T ... D_L^T turns a sparse, non-negative top-layer code into an image, but it has
  no prior over codes to draw from. A GAN (Goodfellow et al. 2014; DCGAN, Radford et al.
  2016) learns exactly that, a map from N(0, I) to a distribution it cannot write down. Here
  it learns the distribution of *codes*, and SDPC keeps what it is good at, the parts.
- The generator's job shrinks: it emits a low-resolution map (image / 4 at the default
  strides) of non-negative part activations, and every sample is a sparse combination of
  atoms learned from real images by inference, not shaped by the discriminator. This is the
  "sparse dictionary as the generator's last layer" idea of Mahdizadehaghdam, Panahi and Krim
  ("Sparse Generative Adversarial Network", ICCV Workshops 2019), with SDPC's convolutional,
  hierarchical, feedback-inferred dictionaries in place of their patch dictionary.
- It keeps SDPC whole: the model still encodes (inference with feedback) and reconstructs,
  so it can be scored both as a sampler (FID) and on (corrupted) reconstructions. The
  VAE-GAN route would replace SDPC's inference by an amortised encoder trained through a
  reparameterised Gaussian, which non-negative sparse codes do not have; SDPC codes as D's
  features would leave a plain DCGAN generator and test only the discriminator.

One `train_step`: the SDPC step on the real batch (inference, dictionary update: the
dictionaries learn only from real images), a discriminator update on real images vs decoded
fakes, and a generator update whose gradient flows through the (not updated) dictionaries.
"""

from typing import Literal

import keras
import tensorflow as tf

from tfgen import layers, losses
from tfgen.models.base import GenerativeModel
from tfgen.models.registry import register
from tfgen.models.sdpc import SDPC


def build_code_generator(latent_dim, code_shape, width, name="generator"):
    """z [B, latent_dim] -> a non-negative code map [B, h, w, C] (SDPC's top layer).

    A dense projection to the code's resolution and two 3x3 convolution blocks (batch norm,
    ReLU, as in DCGAN's generator), then a 1x1 convolution to the code channels with a ReLU:
    codes are non-negative, and exact zeros make them sparse.
    """
    h, w, c = code_shape
    z = keras.Input((latent_dim,))
    x = keras.layers.Dense(h * w * width * 2, use_bias=False)(z)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Reshape((h, w, width * 2))(x)))
    for filters in (width * 2, width):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    code = keras.layers.Conv2D(c, 1, activation="relu", dtype="float32")(x)
    return keras.Model(z, code, name=name)


@register("sdpc_gan")
class SDPCGAN(SDPC):
    """SDPC whose top-layer codes a GAN generator learns to sample; `model(z)` generates images.

    Args:
        latent_dim: size of the N(0, I) latent vector z.
        g_width: channels of the code generator's last convolution block (the first has twice).
        d_width: channels of D's first convolution (a DCGAN discriminator on pixels).
        d_norm: D's normalisation: "batch", "spectral", "layer" or "none".
        channels, kernel_sizes, strides, lambdas, k_fb, iterations, fista, power_iterations:
            the SDPC options (see `tfgen.models.sdpc.SDPC`).
    """

    optimizer_names = {
        "optimizer": ("dictionaries",),
        "d_optimizer": ("discriminator",),
        "g_optimizer": ("generator",),
    }
    samples_from_noise = True
    pictures = ("samples", "atoms", "corrupted_reconstructions")
    export_networks = ("dictionaries", "generator")

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim: int = 64,
        g_width: int = 64,
        d_width: int = 32,
        d_norm: Literal["batch", "spectral", "layer", "none"] = "batch",
        channels: tuple[int, ...] = (32, 64),
        kernel_sizes: tuple[int, ...] = (7, 5),
        strides: tuple[int, ...] = (2, 2),
        lambdas: tuple[float, ...] = (0.3, 0.3),
        k_fb: float = 1.0,
        iterations: int = 30,
        fista: bool = True,
        power_iterations: int = 2,
        seed: int | None = None,
        **kwargs,
    ):
        names = (*self.sdpc_metric_names(len(channels)), "d_loss", "g_loss", "real_score", "fake_score", "fake_active")
        GenerativeModel.__init__(self, image_shape, latent_dim, seed, names, **kwargs)
        for name, value in (("g_width", g_width), ("d_width", d_width)):
            if value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value}")
        self.build_sdpc(channels, kernel_sizes, strides, lambdas, k_fb, iterations, fista, power_iterations)
        self.g_width = g_width
        self.d_width = d_width
        self.d_norm = d_norm
        self.generator = build_code_generator(latent_dim, self.dictionaries.shapes[-1], g_width)
        self.discriminator = layers.build_discriminator(self.image_shape, d_width, norm=d_norm)
        self.built = True

    def call(self, z, training=False):
        return self.generate(z, training=training)

    def generate(self, z, labels=None, training=False):
        """Images in [-1, 1]: the generator's top-layer codes through every dictionary."""
        return self.decode(self.generator(z, training=training))

    def train_step(self, data):
        """SDPC on the real batch (its dictionaries learn from real images only), then one D
        and one G update on fakes decoded through those dictionaries (DCGAN's alternation)."""
        images = tf.cast(data[0] if isinstance(data, (tuple, list)) else data, tf.float32)
        logs = self.sdpc_step(images)
        batch = tf.shape(images)[0]
        with tf.GradientTape() as g_tape:
            codes = self.generator(self.sample_latent(batch), training=True)
            fake = self.synthesize(codes)
            with g_tape.stop_recording():
                with tf.GradientTape() as d_tape:
                    real_logits = self.discriminator(images, training=True)
                    fake_logits = self.discriminator(tf.stop_gradient(fake), training=True)
                    d_loss = self.global_mean(losses.non_saturating_d(real_logits, fake_logits))
                self.apply_update("d_optimizer", d_tape, d_loss)
            # through the freshly updated D, as in DCGAN's alternating algorithm
            g_loss = self.global_mean(losses.non_saturating_g(self.discriminator(fake, training=True)))
        self.apply_update("g_optimizer", g_tape, g_loss)
        logs.update(
            {
                "d_loss": d_loss,
                "g_loss": g_loss,
                "real_score": self.global_mean(tf.sigmoid(real_logits)),
                "fake_score": self.global_mean(tf.sigmoid(fake_logits)),
                "fake_active": self.global_mean(tf.cast(codes > 0, tf.float32)),
            }
        )
        return self.update_trackers(logs)

    def export_endpoints(self):
        image_spec = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")
        return {
            "generate": self.generate_endpoint(),
            "reconstruct": (lambda images: self.reconstruct(images), [image_spec]),
            **self.code_endpoints(),
        }

    def get_config(self):
        return {
            **GenerativeModel.get_config(self),
            "g_width": self.g_width,
            "d_width": self.d_width,
            "d_norm": self.d_norm,
            **self.sdpc_config(),
        }
