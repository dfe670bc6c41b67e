"""Shared building blocks: the DCGAN-style up- and down-sampling stacks.

Radford et al. 2016 ("DCGAN") rules, used by every convolutional GAN here: strided
convolutions instead of pooling, BatchNorm in G (all but the output) and in D (all but the
input), ReLU + tanh in G, LeakyReLU(0.2) in D, weights drawn from N(0, 0.02).
BatchNorm is `synchronized`, so under `tf.distribute` the statistics are those of the global
batch and a run behaves the same on one device or eight.
"""

import keras
from keras import layers


def dcgan_init():
    """N(0, 0.02) kernel initializer from the DCGAN paper."""
    return keras.initializers.RandomNormal(0.0, 0.02)


def batch_norm():
    """BatchNorm as the DCGAN reference code sets it up (gamma ~ N(1, 0.02))."""
    return layers.BatchNormalization(
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


def build_generator(latent_dim, image_shape, width, name="generator"):
    """z [B, latent_dim] -> images [B, H, W, C] in [-1, 1].

    A dense projection to base x base x (width * 2**(n-1)) channels, then n stride-2
    transposed convolutions halving the channels each time; the last one emits the image.
    """
    size, _, channels = image_shape
    base, n = resolution_plan(size)
    filters = width * 2 ** (n - 1)
    stack = [
        keras.Input((latent_dim,)),
        layers.Dense(base * base * filters, use_bias=False, kernel_initializer=dcgan_init()),
        batch_norm(),
        layers.ReLU(),
        layers.Reshape((base, base, filters)),
    ]
    for _ in range(n - 1):
        filters //= 2
        stack += [
            layers.Conv2DTranspose(
                filters, 4, 2, "same", use_bias=False, kernel_initializer=dcgan_init()
            ),
            batch_norm(),
            layers.ReLU(),
        ]
    stack += [
        layers.Conv2DTranspose(channels, 4, 2, "same", kernel_initializer=dcgan_init()),
        # float32 output keeps tanh and the losses exact under mixed precision.
        layers.Activation("tanh", dtype="float32"),
    ]
    return keras.Sequential(stack, name=name)


def build_discriminator(image_shape, width, dropout=0.0, name="discriminator"):
    """images [B, H, W, C] -> one real/fake logit [B, 1].

    n stride-2 convolutions doubling the channels (no BatchNorm on the first, as in the
    paper), optional dropout after each activation, then a dense logit.
    """
    base, n = resolution_plan(image_shape[0])
    stack = [keras.Input(image_shape)]
    for i in range(n):
        stack.append(layers.Conv2D(width * 2**i, 4, 2, "same", kernel_initializer=dcgan_init()))
        if i > 0:
            stack.append(batch_norm())
        stack.append(layers.LeakyReLU(0.2))
        if dropout > 0:
            stack.append(layers.Dropout(dropout))
    stack += [
        layers.Flatten(),
        layers.Dense(1, kernel_initializer=dcgan_init(), dtype="float32"),
    ]
    return keras.Sequential(stack, name=name)
