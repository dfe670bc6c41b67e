"""The denoising U-Net of the diffusion and flow-matching models, at keras-io `ddim.py` scale.

`build_unet` returns a functional `keras.Model` (noisy images, time[, label]) -> an image-shaped
prediction (noise, v or velocity: the model using it decides). Its parts, after Ho et al. 2020
and keras-io's DDIM example:

- the time t in [0, 1] as a sinusoidal embedding (`SinusoidalEmbedding`) and a two-layer MLP,
  plus a learned class embedding for conditional models (index `num_classes` is the "no label"
  of classifier-free guidance), added to every residual block;
- `levels` resolutions, channels `width * 2**level` (32-64-128 by default), `block_depth`
  residual blocks each (GroupNorm, swish, 3x3 convolution, twice); 2x average pooling down and
  nearest-neighbour upsampling back, with the skips concatenated;
- optional self-attention at the lowest resolution (7 x 7 at 28 px, cheap there);
- a zero-initialised output convolution, so the untrained network predicts 0.

The image side must be divisible by 2**(levels - 1): 28 px works with 3 levels (28, 14, 7)
without padding, 64 px with up to 7.
"""

import math

import keras

from tfgen import fastconv, layers


@keras.saving.register_keras_serializable(package="tfgen")
class SinusoidalEmbedding(keras.layers.Layer):
    """t [B] -> [B, dim]: sin and cos of t at `dim / 2` angular speeds spaced geometrically
    from 2 pi * 1 to 2 pi * 1000 (keras-io DDIM's noise embedding), for t in [0, 1]."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim

    def call(self, t):
        t = keras.ops.cast(keras.ops.reshape(t, (-1, 1)), "float32")
        speeds = 2.0 * math.pi * keras.ops.exp(keras.ops.linspace(math.log(1.0), math.log(1000.0), self.dim // 2))
        angles = t * keras.ops.cast(speeds[None, :], "float32")
        return keras.ops.cast(
            keras.ops.concatenate([keras.ops.sin(angles), keras.ops.cos(angles)], axis=-1), self.compute_dtype
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim // 2 * 2)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


def check_levels(image_size, levels, option="levels"):
    """ValueError unless `levels` >= 1 halvings-plus-one fit `image_size` exactly (no padding)."""
    if levels < 1:
        raise ValueError(f"{option} must be an integer >= 1, got {levels}")
    if image_size % 2 ** (levels - 1):
        fits = [n for n in range(1, 8) if image_size % 2 ** (n - 1) == 0]
        raise ValueError(
            f"{option} {levels} halves the image {levels - 1} times, but image_size {image_size} is not "
            f"divisible by {2 ** (levels - 1)}; at {image_size} px {option} can be {', '.join(map(str, fits))}"
        )


def _group_norm(channels):
    return layers.GroupNormalization(groups=math.gcd(8, channels), epsilon=1e-5)


def _residual_block(h, embedding, channels):
    """GroupNorm-swish-conv twice, the time (and class) embedding added in between."""
    skip = h if h.shape[-1] == channels else fastconv.Conv2D(channels, 1)(h)
    h = keras.layers.Activation("swish")(_group_norm(h.shape[-1])(h))
    h = fastconv.Conv2D(channels, 3, padding="same")(h)
    shift = keras.layers.Reshape((1, 1, channels))(keras.layers.Dense(channels)(embedding))
    h = keras.layers.Add()([h, shift])
    h = keras.layers.Activation("swish")(_group_norm(channels)(h))
    h = fastconv.Conv2D(channels, 3, padding="same")(h)
    return keras.layers.Add()([skip, h])


def _attention_block(h, heads=4):
    """Residual self-attention over the feature map's positions."""
    height, width, channels = h.shape[1:]
    tokens = keras.layers.Reshape((height * width, channels))(_group_norm(channels)(h))
    attended = keras.layers.MultiHeadAttention(heads, max(1, channels // heads))(tokens, tokens)
    return keras.layers.Add()([h, keras.layers.Reshape((height, width, channels))(attended)])


def build_unet(image_shape, width=32, levels=3, block_depth=2, attention=False, num_classes=0, name="unet"):
    """The U-Net (module doc): inputs `noisy_images` [B, H, W, C], `time` [B] (and `label` [B],
    int, `num_classes` meaning no label, when `num_classes` > 0); output [B, H, W, C] float32."""
    check_levels(image_shape[0], levels)
    noisy = keras.Input(image_shape, name="noisy_images")
    time = keras.Input((), name="time")
    inputs = [noisy, time]
    embedding = SinusoidalEmbedding(width)(time)
    embedding = keras.layers.Dense(4 * width, activation="swish")(embedding)
    embedding = keras.layers.Dense(4 * width)(embedding)
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        inputs.append(label)
        embedding = keras.layers.Add()([embedding, keras.layers.Embedding(num_classes + 1, 4 * width)(label)])
    embedding = keras.layers.Activation("swish")(embedding)

    h = fastconv.Conv2D(width, 3, padding="same")(noisy)
    skips = []
    for level in range(levels):
        for _ in range(block_depth):
            h = _residual_block(h, embedding, width * 2**level)
            skips.append(h)
        if level < levels - 1:
            h = keras.layers.AveragePooling2D(2)(h)
    if attention:
        h = _attention_block(h)
        h = _residual_block(h, embedding, h.shape[-1])
    for level in reversed(range(levels)):
        for _ in range(block_depth):
            h = keras.layers.Concatenate()([h, skips.pop()])
            h = _residual_block(h, embedding, width * 2**level)
        if level > 0:
            h = keras.layers.UpSampling2D(2, interpolation="nearest")(h)
    h = keras.layers.Activation("swish")(_group_norm(h.shape[-1])(h))
    out = fastconv.Conv2D(image_shape[-1], 3, padding="same", kernel_initializer="zeros", dtype="float32")(h)
    return keras.Model(inputs, out, name=name)
