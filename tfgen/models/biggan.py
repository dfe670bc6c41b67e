"""BigGAN (Brock et al. 2019) at small scale: class-conditional residual GAN with the paper's parts.

- G: residual up-blocks whose BatchNorms are class-conditional: each block's gains and biases
  are (spectrally normalised) linear maps of [shared class embedding, that block's chunk of
  z]. The latent is hierarchical: z is split into one chunk for the input layer and one per
  block.
- D: residual down-blocks and a projection head (Miyato & Koyama 2018): a linear score plus
  the inner product of the class embedding with D's pooled features.
- A self-attention block (Zhang et al. 2019, SAGAN) in G and D at `attention_resolution`.
- Spectral norm on every weight layer of G and D; hinge loss; Adam(G 1e-4, D 4e-4, betas 0
  and 0.999) in the configs; `d_steps` critic steps (each on a fresh real batch); optional
  orthogonal regularisation of G (`ortho_reg`, the paper's 1e-4); an EMA of G for samples
  and export; the truncation trick at generation (`tfgen.generate --truncation`).

`biggan` needs class labels; `biggan_uncond` is the same network with one class, for folders
without labels (its exports and grids take no label).
"""

import itertools
from typing import Literal

import keras
import tensorflow as tf

from tfgen import layers
from tfgen.models.dcgan import DCGAN
from tfgen.models.registry import register

# DCGAN options with nothing to choose here, and why: G and D are BigGAN's own residual stacks.
NOT_TAKEN = {
    "g_upsample": "chooses a DCGAN generator's upsampling; BigGAN's residual G resizes already",
    "d_minibatch_std": "adds a feature to a DCGAN discriminator; BigGAN's residual D has none",
    "d_depth": "deepens a DCGAN discriminator; BigGAN's residual D has its own depth",
}


def _sn(layer):
    # float32 wrapper, as tfgen.layers._sn explains (half-precision kernel writes lose updates)
    return keras.layers.SpectralNormalization(layer, dtype="float32")


def _ortho_init():
    return keras.initializers.Orthogonal()


@keras.saving.register_keras_serializable(package="tfgen")
class ConditionalBatchNorm(keras.layers.Layer):
    """BatchNorm whose gain and bias come from a conditioning vector: x_hat * (1 + W_g c) + W_b c.

    The gain is centred on 1 so a freshly initialised block starts as plain BatchNorm.
    Statistics are synchronised across replicas, like every BatchNorm in tfgen.
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.norm = keras.layers.BatchNormalization(
            center=False, scale=False, momentum=0.9, epsilon=1e-5, synchronized=True
        )
        self.gain = _sn(keras.layers.Dense(channels, use_bias=False, kernel_initializer="zeros"))
        self.bias = _sn(keras.layers.Dense(channels, use_bias=False, kernel_initializer="zeros"))

    def build(self, input_shape):
        x_shape, c_shape = input_shape
        self.norm.build(x_shape)
        self.gain.build(c_shape)
        self.bias.build(c_shape)

    def call(self, inputs, training=False):
        x, condition = inputs
        normed = self.norm(x, training=training)
        gain = keras.ops.cast(1.0 + self.gain(condition, training=training), normed.dtype)
        bias = keras.ops.cast(self.bias(condition, training=training), normed.dtype)
        return normed * gain[:, None, None, :] + bias[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="tfgen")
class SelfAttention(keras.layers.Layer):
    """SAGAN's self-attention: every position attends to all others (keys and values pooled
    2x2 as in BigGAN), added back through a learned gate `gamma` that starts at 0."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

        def conv(filters):  # a spectrally normalised 1x1 convolution
            return _sn(keras.layers.Conv2D(max(1, filters), 1, use_bias=False, kernel_initializer=_ortho_init()))

        self.theta = conv(channels // 8)
        self.phi = conv(channels // 8)
        self.g = conv(channels // 2)
        self.out = conv(channels)
        self.pool = keras.layers.MaxPooling2D(2)

    def build(self, input_shape):
        self.theta.build(input_shape)
        self.phi.build(input_shape)
        self.g.build(input_shape)
        self.out.build((*input_shape[:-1], max(1, self.channels // 2)))
        self.gamma = self.add_weight(shape=(), initializer="zeros", name="gamma")

    def call(self, x, training=False):
        shape = keras.ops.shape(x)
        batch, height, width = shape[0], shape[1], shape[2]
        # the spectrally normalised convolutions run in float32 (see _sn); so does the softmax
        theta = keras.ops.reshape(self.theta(x, training=training), (batch, height * width, -1))
        phi = keras.ops.reshape(self.pool(self.phi(x, training=training)), (batch, (height // 2) * (width // 2), -1))
        g = keras.ops.reshape(self.pool(self.g(x, training=training)), (batch, (height // 2) * (width // 2), -1))
        keys = keras.ops.transpose(keras.ops.cast(phi, "float32"), (0, 2, 1))
        logits = keras.ops.matmul(keras.ops.cast(theta, "float32"), keys)
        attended = keras.ops.matmul(keras.ops.softmax(logits, axis=-1), keras.ops.cast(g, "float32"))
        attended = keras.ops.cast(keras.ops.reshape(attended, (batch, height, width, -1)), x.dtype)
        out = keras.ops.cast(self.out(attended, training=training), x.dtype)
        return x + keras.ops.cast(self.gamma, x.dtype) * out

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="tfgen")
class SpectralEmbedding(keras.layers.Layer):
    """An embedding table divided by its largest singular value (one power-iteration step per
    training call), for the projection discriminator. Keras' SpectralNormalization wrapper
    cuts the gradient to an Embedding's table, so the table is normalised here, in the graph."""

    def __init__(self, input_dim, output_dim, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = input_dim
        self.output_dim = output_dim

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            shape=(self.input_dim, self.output_dim), initializer=_ortho_init(), name="embeddings"
        )
        self.u = self.add_weight(shape=(1, self.output_dim), initializer="random_normal", trainable=False, name="u")

    def call(self, ids, training=False):
        w = keras.ops.cast(self.embeddings, "float32")
        u = keras.ops.cast(self.u, "float32")
        v = keras.ops.normalize(keras.ops.matmul(u, keras.ops.transpose(w)), axis=-1)
        u_new = keras.ops.normalize(keras.ops.matmul(v, w), axis=-1)
        if training:
            self.u.assign(keras.ops.stop_gradient(u_new))
        sigma = keras.ops.sum(keras.ops.matmul(v, w) * keras.ops.stop_gradient(u_new))
        return keras.ops.take(w / sigma, keras.ops.cast(ids, "int32"), axis=0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim}


def _blocks_for(size):
    """Residual blocks between 4 x 4 and `size`: 3, 4, 5 at 32, 64, 128 px (8 and 16 for tests)."""
    blocks = max(size // 4, 1).bit_length() - 1
    if size < 8 or 4 * 2**blocks != size:
        raise ValueError(f"biggan supports image_size 32, 64 or 128 (4 times a power of two), got {size}")
    return blocks


def _widths(width, blocks):
    """Channels after each of G's blocks (D's in reverse): halving from width * 2**(blocks-1),
    at most 8x; BigGAN's channel multipliers at this scale."""
    return [width * min(8, 2 ** (blocks - 1 - i)) for i in range(blocks)]


def build_generator(latent_dim, image_shape, width, num_classes, embed_dim, attention_resolution, name):
    """[z, label] -> images in [-1, 1]; z is split into blocks + 1 chunks (hierarchical latent)."""
    size, _, channels = image_shape
    blocks = _blocks_for(size)
    if latent_dim < blocks + 1:
        raise ValueError(f"latent_dim must be at least {blocks + 1} (one chunk per block and one for the input)")
    z = keras.Input((latent_dim,), name="z")
    label = keras.Input((), dtype="int32", name="label")
    chunk = latent_dim // (blocks + 1)
    sizes = [latent_dim - chunk * blocks] + [chunk] * blocks
    chunks = keras.ops.split(z, list(itertools.accumulate(sizes[:-1])), axis=1)
    shared = keras.layers.Embedding(max(num_classes, 1), embed_dim, name="shared_embedding")(label)
    widths = _widths(width, blocks)
    h = _sn(keras.layers.Dense(4 * 4 * widths[0] * 2, kernel_initializer=_ortho_init()))(chunks[0])
    h = keras.layers.Reshape((4, 4, widths[0] * 2))(h)
    resolution = 4
    for i in range(blocks):
        condition = keras.layers.Concatenate()([shared, chunks[i + 1]])
        out_ch = widths[i]
        skip = keras.layers.UpSampling2D(2)(h)
        skip = _sn(keras.layers.Conv2D(out_ch, 1, kernel_initializer=_ortho_init()))(skip)
        y = keras.layers.ReLU()(ConditionalBatchNorm(h.shape[-1])([h, condition]))
        y = keras.layers.UpSampling2D(2)(y)
        y = _sn(keras.layers.Conv2D(out_ch, 3, padding="same", kernel_initializer=_ortho_init()))(y)
        y = keras.layers.ReLU()(ConditionalBatchNorm(out_ch)([y, condition]))
        y = _sn(keras.layers.Conv2D(out_ch, 3, padding="same", kernel_initializer=_ortho_init()))(y)
        h = keras.layers.Add()([skip, y])
        resolution *= 2
        if resolution == attention_resolution:
            h = SelfAttention(out_ch)(h)
    h = keras.layers.ReLU()(layers.batch_norm()(h))
    h = _sn(keras.layers.Conv2D(channels, 3, padding="same", kernel_initializer=_ortho_init()))(h)
    images = keras.layers.Activation("tanh", dtype="float32")(h)
    return keras.Model([z, label], images, name=name)


def build_discriminator(image_shape, width, num_classes, attention_resolution, name="discriminator"):
    """[images, label] -> logit: residual down-blocks, ReLU, sum pooling, projection head."""
    size = image_shape[0]
    blocks = _blocks_for(size)
    images = keras.Input(image_shape, name="images")
    label = keras.Input((), dtype="int32", name="label")
    widths = list(reversed(_widths(width, blocks)))
    h = images
    resolution = size
    for i, out_ch in enumerate(widths):
        skip = _sn(keras.layers.Conv2D(out_ch, 1, kernel_initializer=_ortho_init()))(h)
        skip = keras.layers.AveragePooling2D(2)(skip)
        y = h if i == 0 else keras.layers.ReLU()(h)  # the first block sees the image, not an activation
        y = _sn(keras.layers.Conv2D(out_ch, 3, padding="same", kernel_initializer=_ortho_init()))(y)
        y = keras.layers.ReLU()(y)
        y = _sn(keras.layers.Conv2D(out_ch, 3, padding="same", kernel_initializer=_ortho_init()))(y)
        y = keras.layers.AveragePooling2D(2)(y)
        h = keras.layers.Add()([skip, y])
        resolution //= 2
        if resolution == attention_resolution:
            h = SelfAttention(out_ch)(h)
    h = keras.layers.ReLU()(h)
    # BigGAN sums over positions: with spectrally normalised heads the scale matters (a mean
    # would shrink the logits by the number of positions and the hinge margins never be met)
    features = keras.layers.Rescaling(float(resolution * resolution))(keras.layers.GlobalAveragePooling2D()(h))
    logit = _sn(keras.layers.Dense(1, kernel_initializer=_ortho_init(), dtype="float32"))(features)
    embedding = SpectralEmbedding(max(num_classes, 1), features.shape[-1], dtype="float32")(label)
    projection = keras.layers.Dot(axes=1)([embedding, keras.layers.Activation("linear", dtype="float32")(features)])
    return keras.Model([images, label], keras.layers.Add()([logit, projection]), name=name)


@register("biggan")
class BigGAN(DCGAN):
    """BigGAN at 32, 64 or 128 px. Args beyond DCGAN's:

    embed_dim: size of G's shared class embedding (concatenated with each z chunk).
    attention_resolution: the resolution of G's and D's self-attention block (0: none).
    ortho_reg: weight of BigGAN's orthogonal regularisation of G's weights,
        beta * ||W^T W * (1 - I)||_F^2 summed over layers (the paper's 1e-4; 0 disables).
    """

    needs_labels = True
    shared_options = tuple(option for option in DCGAN.shared_options if option not in NOT_TAKEN)

    def __init__(
        self,
        image_shape=(32, 32, 3),
        latent_dim: int = 128,
        g_width: int = 64,
        d_width: int = 64,
        embed_dim: int = 128,
        attention_resolution: int = 16,
        ortho_reg: float = 1e-4,
        loss: Literal["hinge", "non_saturating"] = "hinge",
        d_steps: int = 2,
        ema_decay: float = 0.999,
        diffaugment: str = "",
        seed: int | None = None,
        num_classes=10,
        **kwargs,
    ):
        if self.needs_labels and num_classes < 2:
            raise ValueError(
                f"a conditional model needs at least 2 classes, the data has {num_classes}; "
                "use biggan_uncond for unlabelled images"
            )
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be an integer >= 1, got {embed_dim}")
        if ortho_reg < 0:
            raise ValueError(f"ortho_reg must be >= 0, got {ortho_reg}")
        for option, why in NOT_TAKEN.items():
            if option in kwargs:
                raise ValueError(f"{option} {why}")
        self.embed_dim = embed_dim
        self.attention_resolution = attention_resolution
        self.ortho_reg = ortho_reg
        super().__init__(
            image_shape=image_shape,
            latent_dim=latent_dim,
            g_width=g_width,
            d_width=d_width,
            loss=loss,
            d_norm="spectral",
            d_dropout=0.0,
            label_smoothing=0.0,
            d_steps=d_steps,
            ema_decay=ema_decay,
            diffaugment=diffaugment,
            seed=seed,
            num_classes=num_classes if self.needs_labels else 0,
            **kwargs,
        )

    @property
    def classes(self):
        return self.num_classes if self.needs_labels else 1

    def build_generator_network(self, name):
        return build_generator(
            self.latent_dim,
            self.image_shape,
            self.g_width,
            self.classes,
            self.embed_dim,
            self.attention_resolution,
            name,
        )

    def build_discriminator_network(self):
        return build_discriminator(self.image_shape, self.d_width, self.classes, self.attention_resolution)

    def _labels(self, labels, batch):
        if self.needs_labels:
            return keras.ops.cast(labels, "int32")
        return keras.ops.zeros((batch,), "int32")

    def run_generator(self, network, z, labels, training):
        z = keras.ops.convert_to_tensor(z, "float32")
        return network([z, self._labels(labels, keras.ops.shape(z)[0])], training=training)

    def discriminate(self, images, labels, training=True):
        images = keras.ops.convert_to_tensor(images, "float32")
        return self.discriminator([images, self._labels(labels, keras.ops.shape(images)[0])], training=training)

    def orthogonal_penalty(self):
        """beta * sum over G's kernels of ||W^T W * (1 - I)||_F^2 (BigGAN's relaxed version)."""
        total = 0.0
        for variable in self.generator.trainable_variables:
            if len(variable.shape) < 2 or "kernel" not in variable.path or "embedding" in variable.path:
                continue
            w = tf.reshape(tf.cast(variable, tf.float32), [-1, variable.shape[-1]])
            gram = tf.matmul(w, w, transpose_a=True)
            total += tf.reduce_sum(tf.square(gram * (1.0 - tf.eye(tf.shape(gram)[0]))))
        return self.ortho_reg * total

    def generator_loss(self, fake, labels=None):
        loss = super().generator_loss(fake, labels)
        if not self.ortho_reg:
            return loss
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss + self.orthogonal_penalty() / replicas  # shares: the replicas' sum is the penalty

    def get_config(self):
        config = {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "attention_resolution": self.attention_resolution,
            "ortho_reg": self.ortho_reg,
        }
        for fixed in ("d_norm", "d_dropout", "label_smoothing", *NOT_TAKEN):
            config.pop(fixed)
        return config


@register("biggan_uncond")
class UnconditionalBigGAN(BigGAN):
    """BigGAN with a single class, for image folders without labels (no `label` input anywhere)."""

    needs_labels = False

    def __init__(
        self,
        image_shape=(64, 64, 3),
        latent_dim: int = 128,
        g_width: int = 64,
        d_width: int = 64,
        embed_dim: int = 128,
        attention_resolution: int = 32,
        ortho_reg: float = 1e-4,
        loss: Literal["hinge", "non_saturating"] = "hinge",
        d_steps: int = 2,
        ema_decay: float = 0.999,
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
            embed_dim=embed_dim,
            attention_resolution=attention_resolution,
            ortho_reg=ortho_reg,
            loss=loss,
            d_steps=d_steps,
            ema_decay=ema_decay,
            diffaugment=diffaugment,
            seed=seed,
            num_classes=num_classes,
            **kwargs,
        )
