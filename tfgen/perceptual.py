"""A perceptual reconstruction loss: images compared in the features of a fixed random network.

Why: a decoder trained on per-pixel squared error draws the mean of the images it cannot tell
apart, so a thin dark outline whose exact place it is unsure of comes out as a faint grey
ramp; the 64 px Pokemon VAE drew silhouettes without outlines at every KL weight, latent size
and prior tried (README). Compared in the feature maps of a convolutional network, a blurred
line and a sharp one differ in every filter that responds to lines and edges, so the decoder
pays for the blur. Liu et al. (CVPR 2021, "Generic Perceptual Loss for Modeling Structured
Output Dependencies") found a randomly initialised network that is never trained does this
about as well as ImageNet features: no download (this works offline), and a fixed seed makes
it the same network on every machine, so the loss is part of the config, not of the weights.
"""

import math

import keras
import tensorflow as tf

WIDTH = 32
STAGES = 4


def feature_network(image_shape, seed=0):
    """Frozen network: image -> feature maps at 1/2, 1/4 and 1/8 resolution (64, 128, 256 channels).

    One 3x3 convolution + ReLU per scale, average pooling between. The full-resolution
    layer's features are not compared: with a 3 px receptive field they still prefer a grey
    ramp to a line drawn one pixel off, as pixel errors do; from 1/2 resolution on (8, 18
    and 38 px) the committed line costs less than the ramp (tests/test_perceptual.py).
    Computed in float32 whatever the mixed-precision policy, so the loss is exact.
    """
    inputs = keras.Input(image_shape)
    x, outputs = inputs, []
    for stage in range(STAGES):
        if stage:
            x = keras.layers.AveragePooling2D(2, padding="same", dtype="float32")(x)
        x = keras.layers.Conv2D(
            WIDTH * 2**stage,
            3,
            padding="same",
            activation="relu",
            dtype="float32",
            kernel_initializer=keras.initializers.HeNormal(seed + stage),
        )(x)
        if stage:
            outputs.append(x)
    network = keras.Model(inputs, outputs, name="perceptual_features")
    network.trainable = False
    return network


def difference(network, images, reconstructions):
    """Per example: half the mean squared feature difference of each scale, times the number
    of image values, summed over the scales; so weight 1 weighs a scale like the Gaussian
    likelihood's squared error over the pixels."""
    batch = tf.shape(images)[0]
    values = float(math.prod(images.shape[1:]))
    both = tf.concat([tf.cast(images, tf.float32), tf.cast(reconstructions, tf.float32)], 0)
    total = 0.0
    for features in network(both, training=False):
        error = tf.reshape(features[:batch] - features[batch:], [batch, -1])
        total += 0.5 * values * tf.reduce_mean(tf.square(error), axis=1)
    return total
