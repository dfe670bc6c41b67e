"""Shared building blocks: the DCGAN-style up- and down-sampling stacks.

Radford et al. 2016 ("DCGAN") rules, used by every convolutional GAN here: strided
convolutions instead of pooling, BatchNorm in G (all but the output) and in D (all but the
input), ReLU + tanh in G, LeakyReLU(0.2) in D, weights drawn from N(0, 0.02).
BatchNorm is `synchronized`, so under `tf.distribute` the statistics are those of the global
batch and a run behaves the same on one device or eight. The convolutions are
`tfgen.fastconv`'s: Keras' layers, with a matmul kernel gradient when
`train.conv_kernel_grad` resolves to matmul (faster on some CPUs).
"""

import contextlib
import contextvars

import keras

from tfgen import fastconv


def dcgan_init():
    """N(0, 0.02) kernel initializer from the DCGAN paper."""
    return keras.initializers.RandomNormal(0.0, 0.02)


_BATCH_PARTS = contextvars.ContextVar("tfgen_batch_parts", default=1)


@contextlib.contextmanager
def batch_parts(parts):
    """Inside this block, tfgen's `BatchNormalization` layers normalise each of `parts` equal slices
    of their batch with that slice's own statistics (read when a model's call is traced)."""
    token = _BATCH_PARTS.set(parts)
    try:
        yield
    finally:
        _BATCH_PARTS.reset(token)


@keras.saving.register_keras_serializable(package="tfgen")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization, except that in training inside `batch_parts(n)` it
    normalises each of n equal slices of the batch as n separate calls would: with that
    slice's statistics, updating the moving statistics once per slice, in order.

    Named like Keras' class so its layers get the same automatic names, and runs saved
    before it existed still load. Why it exists: D must never mix real and fake statistics,
    which used to cost two D passes per update. With this, D runs once on real and fake
    concatenated, so each convolution sees one batch twice as large (the split passes cost
    about 7 ms of a 70 ms 28 px step in a profile; the gain is not yet benchmarked), and
    every BatchNorm stays exact.
    """

    def call(self, inputs, training=None, mask=None):
        parts = _BATCH_PARTS.get()
        if parts == 1 or not training:
            return super().call(inputs, training=training, mask=mask)
        outputs = []
        for part in keras.ops.split(inputs, parts):
            outputs.append(super().call(part, training=training))
        return keras.ops.concatenate(outputs, axis=0)


def batch_norm():
    """BatchNorm as the DCGAN reference code sets it up (gamma ~ N(1, 0.02))."""
    return BatchNormalization(
        momentum=0.9,
        epsilon=1e-5,
        gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02),
        synchronized=True,
    )


def resolution_plan(image_size):
    """(base, n) with image_size == base * 2**n, base 4 or 7, n >= 1; ValueError otherwise.

    The stacks double (or halve) the resolution n times, so 28 = 7 * 2**2 (MNIST) and
    64 = 4 * 2**4 both work, while a size like 50 has no such plan.
    """
    base, n = image_size, 0
    while base % 2 == 0 and base // 2 >= 4:
        base, n = base // 2, n + 1
    if n < 1 or base not in (4, 7):
        raise ValueError(
            f"image_size {image_size} is not 4 or 7 times a power of two "
            "(valid: 8, 14, 16, 28, 32, 56, 64, 112, 128, ...)"
        )
    return base, n


def check_upsample(mode, option="upsample"):
    """ValueError (naming the model `option`) unless `mode` is a way a decoder here can double
    its resolution."""
    if mode not in ("transposed", "resize"):
        raise ValueError(f"{option} must be 'transposed' or 'resize', got {mode!r}")


def build_generator(latent_dim, image_shape, width, name="generator", upsample="transposed"):
    """z [B, latent_dim] -> images [B, H, W, C] in [-1, 1].

    A dense projection to 4 x 4 x (width * 2**(stages - 1)) channels, then n stride-2 transposed
    convolutions halving the channels each time; the last one emits the image. For sizes
    7 * 2**n the stack starts at 4 x 4 too, with one more stage: a 4 x 4 'valid' transposed
    convolution from 4 to 7 px. Started at 7 x 7 instead, a 28 px G had only two
    convolutions and 64 channels at width 32, and its digits scored an FID twice as far
    from the floor as the 32 px G's three stages (`mnist5k_dcgan`, equal epochs).

    `upsample="resize"` doubles the resolution with a nearest-neighbour resize and a 3 x 3
    convolution instead (Odena et al. 2016, "Deconvolution and checkerboard artifacts"): a
    4 x 4 stride-2 transposed convolution covers output pixels unevenly, and on the 64 px
    Pokemon art its grids kept a honeycomb lattice over every creature. It costs 2.25x the
    multiply-adds per doubling.
    """
    check_upsample(upsample)
    size, _, channels = image_shape
    base, n = resolution_plan(size)
    stages = [("same", 2)] * n
    if base == 7:
        stages.insert(0, ("valid", 1))
    filters = width * 2 ** (len(stages) - 1)
    stack = [
        keras.Input((latent_dim,)),
        keras.layers.Dense(4 * 4 * filters, use_bias=False, kernel_initializer=dcgan_init()),
        batch_norm(),
        keras.layers.ReLU(),
        keras.layers.Reshape((4, 4, filters)),
    ]

    def stage(filters, padding, stride, use_bias):
        if upsample == "transposed" or stride == 1:
            return [
                fastconv.Conv2DTranspose(
                    filters, 4, stride, padding, use_bias=use_bias, kernel_initializer=dcgan_init()
                )
            ]
        return [
            keras.layers.UpSampling2D(stride, interpolation="nearest"),
            fastconv.Conv2D(filters, 3, 1, "same", use_bias=use_bias, kernel_initializer=dcgan_init()),
        ]

    for padding, stride in stages[:-1]:
        filters //= 2
        stack += [*stage(filters, padding, stride, use_bias=False), batch_norm(), keras.layers.ReLU()]
    stack += [
        *stage(channels, "same", 2, use_bias=True),
        # float32 output keeps tanh and the losses exact under mixed precision.
        keras.layers.Activation("tanh", dtype="float32"),
    ]
    return keras.Sequential(stack, name=name)


def _sn(layer, norm):
    """Wrap a weight layer in spectral normalisation (Miyato et al. 2018) when asked.

    The wrapper runs in float32 whatever the mixed-precision policy: Keras' version writes
    W / sigma back into the float32 kernel on every training call, and computed in bfloat16
    or float16 that write rounded the kernel to half precision each step, wiping out the
    optimizer's small updates (SNGAN then never learned under mixed precision). The wrapped
    convolution itself still computes in the policy's half precision.
    """
    return keras.layers.SpectralNormalization(layer, dtype="float32") if norm == "spectral" else layer


@keras.saving.register_keras_serializable(package="tfgen")
class MinibatchStdDev(keras.layers.Layer):
    """Appends one feature map: the standard deviation of each feature across the batch,
    averaged into one number (Karras et al. 2018, ProGAN's minibatch standard deviation).

    Why: a D that sees one image at a time cannot tell a generator that draws the same motif
    in a third of its samples from one that draws a third of the data; this feature can (the
    spread of a batch of fakes falls below that of a real batch). Inside `batch_parts(n)`
    each slice gets its own figure, so real and fake batches concatenated for one D pass
    never mix. Under `tf.distribute` each replica measures its own share of the batch.
    """

    def call(self, x):
        outputs = []
        for part in keras.ops.split(x, _BATCH_PARTS.get()):
            spread = keras.ops.sqrt(keras.ops.var(keras.ops.cast(part, "float32"), axis=0) + 1e-8)
            feature = keras.ops.ones_like(part[..., :1]) * keras.ops.cast(keras.ops.mean(spread), part.dtype)
            outputs.append(keras.ops.concatenate([part, feature], axis=-1))
        return keras.ops.concatenate(outputs, axis=0)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)


def discriminator_body(image_shape, width, dropout=0.0, norm="batch", minibatch_std=False, depth=1):
    """The layers of D from the image to its flattened features.

    G's stages mirrored: n stride-2 convolutions doubling the channels (and from 7 to 4 px
    with a 'valid' one for sizes 7 * 2**n), LeakyReLU(0.2), optional dropout. `norm`:
    "batch" (DCGAN; none on the first layer, as in the paper), "layer" (the WGAN-GP critic,
    where batch statistics would break the per-example gradient penalty), "spectral" (SNGAN:
    every weight layer spectrally normalised, no other normalisation) or "none".

    `depth` > 1 follows each stride-2 convolution with depth - 1 stride-1 3x3 convolutions of
    the same width and normalisation, as in the SNGAN paper's standard CNN discriminator
    (Miyato et al. 2018, table 3). Why: on the 64 px Pokemon art the SNGAN's hinge loss at
    depth 1 was back near 2 (chance) by epoch 100. That is the training dynamics, not D's size:
    the same D trained alone against the frozen G separates real from fake 80% of the time.
    With depth 2 the loss stayed near 1.6 and G drew smoother shapes, but not better ones by
    FID and recall, so `anime_sngan` keeps depth 1 (README). Placed after the downsampling, the
    extra convolutions add about 1.4x D's work at 64 px; before it, at full resolution, they
    would add about 6x.
    """
    base, n = resolution_plan(image_shape[0])
    stages = [("same", 2)] * n + ([("valid", 1)] if base == 7 else [])  # G's stages, mirrored
    body = []
    for i, (padding, stride) in enumerate(stages):
        convs = [(4, stride, padding)] + [(3, 1, "same")] * (depth - 1)
        for j, (kernel, conv_stride, conv_padding) in enumerate(convs):
            conv = fastconv.Conv2D(width * 2**i, kernel, conv_stride, conv_padding, kernel_initializer=dcgan_init())
            body.append(_sn(conv, norm))
            if (i, j) != (0, 0) and norm == "batch":
                body.append(batch_norm())
            elif (i, j) != (0, 0) and norm == "layer":
                body.append(keras.layers.LayerNormalization(axis=[1, 2, 3]))
            body.append(keras.layers.LeakyReLU(0.2))
        if dropout > 0:
            body.append(keras.layers.Dropout(dropout))
    return body + ([MinibatchStdDev()] if minibatch_std else []) + [keras.layers.Flatten()]


def logit_layer(norm="batch"):
    """D's final dense real/fake logit (float32 under mixed precision)."""
    return _sn(keras.layers.Dense(1, kernel_initializer=dcgan_init(), dtype="float32"), norm)


def build_discriminator(
    image_shape, width, dropout=0.0, norm="batch", name="discriminator", minibatch_std=False, depth=1
):
    """images [B, H, W, C] -> one real/fake logit [B, 1]; see `discriminator_body`."""
    body = discriminator_body(image_shape, width, dropout, norm, minibatch_std, depth)
    stack = [keras.Input(image_shape), *body, logit_layer(norm)]
    return keras.Sequential(stack, name=name)


@keras.saving.register_keras_serializable(package="tfgen")
class ReflectionPadding2D(keras.layers.Layer):
    """Pads height and width by mirroring the border (CycleGAN's generators, Zhu et al. 2017).

    Zero padding makes a bright frame the generator must learn to hide; mirroring does
    not. A layer of its own, not a Lambda, so saved models load under `safe_mode`.
    """

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        p = self.padding
        return keras.ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = 2 * self.padding
        return b, None if h is None else h + grow, None if w is None else w + grow, c

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package="tfgen")
class GroupNormalization(keras.layers.Layer):
    """Group normalisation (Wu & He 2018): each image's channels split into `groups`, each
    group normalised over height, width and its channels, then every channel scaled and
    shifted. `groups=-1`: one group per channel, instance normalisation.

    The same values as Keras' GroupNormalization in fewer graph ops (a layer with its
    gradients: 87 against 134 with a group per channel, 103 against 137 with 4 groups): Keras'
    reshapes into groups and broadcasts even when a group is one channel. Keras' layer was 81%
    of a CycleGAN generator's graph (a toy CycleGAN step traced in 11.4 s, 8.7 s with this);
    mnist5k_ddpm's U-Net step went from 6,473 to 6,161 ops. Statistics in float32, as
    Keras' normalisation layers keep them under mixed precision; the weights are Keras'
    `gamma` and `beta`, so checkpoints of either layer restore into the other.
    """

    def __init__(self, groups=32, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.autocast = False  # gamma and beta read in float32 under mixed precision, as Keras' are
        self.groups = int(groups)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        groups = channels if self.groups == -1 else self.groups
        if channels % groups:
            raise ValueError(f"{channels} channels do not split into {groups} groups")
        self._size = channels // groups  # channels a group
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma", autocast=False)
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta", autocast=False)

    def call(self, x):
        x32 = keras.ops.cast(x, "float32")
        if self._size == 1:
            normalised = self._normalise(x32, [1, 2])
        else:  # groups of several channels: a group axis of their own
            shape = keras.ops.shape(x32)
            grouped = keras.ops.reshape(x32, [-1, shape[1], shape[2], shape[3] // self._size, self._size])
            normalised = keras.ops.reshape(self._normalise(grouped, [1, 2, 4]), shape)
        y = normalised * keras.ops.cast(self.gamma, "float32") + keras.ops.cast(self.beta, "float32")
        return keras.ops.cast(y, self.compute_dtype)

    def _normalise(self, x, axes):
        centred = x - keras.ops.mean(x, axis=axes, keepdims=True)
        variance = keras.ops.mean(keras.ops.square(centred), axis=axes, keepdims=True)
        return centred * keras.ops.rsqrt(variance + self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="tfgen")
class InstanceNormalization(GroupNormalization):
    """Instance normalisation (Ulyanov et al. 2016): `GroupNormalization` with a group per
    channel (CycleGAN's generators and critics)."""

    def __init__(self, epsilon=1e-5, **kwargs):
        kwargs.pop("groups", None)
        super().__init__(groups=-1, epsilon=epsilon, **kwargs)


def instance_norm():
    """Instance normalisation, `InstanceNormalization` with the paper's epsilon."""
    return InstanceNormalization(epsilon=1e-5)
