"""Exponential moving averages of a network's weights, for sampling and export.

One mechanism for every model that samples from an average: the GANs' EMA generator
(`DCGAN.update_ema`) and the diffusion and flow-matching denoisers (`tfgen.models.ddpm`).
The average is a second network of the same architecture (`ema_<network>`, which the
contract test knows is not trained by an optimizer), moved toward the trained one after
every update.
"""

import tensorflow as tf


def decay_at(ema_decay, updates):
    """The decay after `updates` optimizer updates: min(ema_decay, (1 + n) / (10 + n)).

    The warm-up of `tf.train.ExponentialMovingAverage(num_updates=...)`: with a fixed
    0.999 the EMA would still be 79% initial weights after 230 steps, so early sample
    grids (the epochs users look at) would show a flat grey square instead of what the
    network has learned.
    """
    n = tf.cast(updates, tf.float32)
    return tf.minimum(tf.constant(ema_decay, tf.float32), (1.0 + n) / (10.0 + n))


def update(average, network, decay):
    """average <- decay * average + (1 - decay) * network, for every weight (BatchNorm's
    statistics too), inside a training step.

    Done in cross-replica context (`merge_call`) so it is one update of each mirrored
    variable, not one per replica.
    """

    rest = 1.0 - decay  # once, not once a weight (the values are the same)

    def move(strategy):
        for ema, weight in zip(average.weights, network.weights):
            strategy.extended.update(
                ema.value, lambda e, w: e.assign(decay * e + rest * w, read_value=False), args=(weight.value,)
            )

    tf.distribute.get_replica_context().merge_call(move)
