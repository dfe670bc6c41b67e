"""Class-conditional GAN: a label-embedding generator and a projection discriminator.

G sees [z, embedding(label)]; D scores an image as w . phi(x) + embedding(label) . phi(x)
(Miyato & Koyama 2018, "cGANs with projection discriminator"), so each class is judged on
its own. Sample grids show one row per class; the class names come from the data (TFDS
label names or the sub-folder names of an image folder: the "themes" an app offers).
"""

from typing import Literal

import keras

from tfgen import layers
from tfgen.models.dcgan import DCGAN
from tfgen.models.registry import register


@register("cond_gan")
class CondGAN(DCGAN):
    """DCGAN conditioned on class labels; `embed_dim` is the size of G's label embedding."""

    needs_labels = True

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim: int = 100,
        g_width: int = 64,
        d_width: int = 64,
        embed_dim: int = 32,
        loss: Literal["non_saturating", "hinge", "least_squares"] = "hinge",
        d_norm: Literal["batch", "spectral", "layer", "none"] = "spectral",
        d_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        d_steps: int = 1,
        ema_decay: float = 0.0,
        diffaugment: str = "",
        seed: int | None = None,
        num_classes=10,
        **kwargs,
    ):
        if num_classes < 2:
            raise ValueError(f"a conditional model needs at least 2 classes, the data has {num_classes}")
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be an integer >= 1, got {embed_dim}")
        self.embed_dim = embed_dim
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

    def build_generator_network(self, name):
        z = keras.Input((self.latent_dim,), name="z")
        label = keras.Input((), dtype="int32", name="label")
        embedding = keras.layers.Embedding(self.num_classes, self.embed_dim)(label)
        stack = layers.build_generator(
            self.latent_dim + self.embed_dim, self.image_shape, self.g_width, f"{name}_stack", self.g_upsample
        )
        images = stack(keras.layers.Concatenate()([z, embedding]))
        return keras.Model([z, label], images, name=name)

    def build_discriminator_network(self):
        images = keras.Input(self.image_shape, name="images")
        label = keras.Input((), dtype="int32", name="label")
        h = images
        for layer in layers.discriminator_body(
            self.image_shape, self.d_width, self.d_dropout, self.d_norm, self.d_minibatch_std, self.d_depth
        ):
            h = layer(h)
        logit = layers.logit_layer(self.d_norm)(h)
        class_embedding = keras.layers.Embedding(self.num_classes, h.shape[-1])(label)
        projection = keras.layers.Dot(axes=1)([class_embedding, h])
        return keras.Model([images, label], keras.layers.Add()([logit, projection]), name="discriminator")

    def run_generator(self, network, z, labels, training):
        return network([keras.ops.convert_to_tensor(z, "float32"), keras.ops.cast(labels, "int32")], training=training)

    def discriminate(self, images, labels, training=True):
        images = keras.ops.convert_to_tensor(images, "float32")
        return self.discriminator([images, keras.ops.cast(labels, "int32")], training=training)

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim}
