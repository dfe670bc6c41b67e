"""tfgen.layers' normalisation: Keras' GroupNormalization's values and gradients in fewer ops."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgen.layers import GroupNormalization, InstanceNormalization


def values_and_gradients(layer, x):
    """The layer's output and the gradients of a channel-weighted sum of it (x, gamma, beta)."""
    layer.build(x.shape)
    channels = x.shape[-1]
    layer.gamma.assign(np.linspace(0.5, 2.0, channels))
    layer.beta.assign(np.linspace(-1.0, 1.0, channels))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.range(channels, dtype=tf.float32) ** 2)
    return [y, *tape.gradient(loss, [x, layer.gamma, layer.beta])]


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: InstanceNormalization(), lambda: keras.layers.GroupNormalization(groups=-1, epsilon=1e-5)),
        (lambda: GroupNormalization(groups=4), lambda: keras.layers.GroupNormalization(groups=4, epsilon=1e-5)),
        (lambda: GroupNormalization(groups=1), lambda: keras.layers.GroupNormalization(groups=1, epsilon=1e-5)),
    ],
    ids=["instance", "groups=4", "groups=1"],
)
def test_same_values_and_gradients_as_keras_group_normalization(ours, theirs):
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (3, 5, 4, 8)), tf.float32)
    for mine, keras_values in zip(values_and_gradients(ours(), x), values_and_gradients(theirs(), x)):
        # atol: gamma's gradients are sums of normalised values, near 0 up to rounding
        np.testing.assert_allclose(mine, keras_values, rtol=1e-4, atol=1e-3)


def test_a_checkpoint_of_keras_layer_restores_into_ours_and_the_config_round_trips(tmp_path):
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 4, 4, 8)), tf.float32)
    theirs = keras.layers.GroupNormalization(groups=4, epsilon=1e-5)
    values_and_gradients(theirs, x)
    path = tf.train.Checkpoint(layer=theirs).write(str(tmp_path / "ckpt"))
    ours = GroupNormalization(groups=4)
    ours.build(x.shape)
    tf.train.Checkpoint(layer=ours).read(path).assert_existing_objects_matched()
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    again = GroupNormalization.from_config(ours.get_config())
    assert (again.groups, again.epsilon) == (4, 1e-5)
    assert InstanceNormalization.from_config(InstanceNormalization().get_config()).groups == -1


def test_channels_that_do_not_split_into_the_groups_are_refused():
    with pytest.raises(ValueError, match="6 channels do not split into 4 groups"):
        GroupNormalization(groups=4).build((None, 4, 4, 6))


def test_under_mixed_precision_statistics_and_weights_stay_float32():
    """bfloat16 in and out, as Keras' layer; gamma and beta are not rounded to bfloat16 in the sum."""
    x = tf.constant(np.random.default_rng(2).normal(2.0, 3.0, (2, 4, 4, 8)), tf.float32)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        ours, theirs = GroupNormalization(groups=4), keras.layers.GroupNormalization(groups=4, epsilon=1e-5)
        for layer in (ours, theirs):
            layer.build(x.shape)
            layer.gamma.assign(np.full(8, 1.0 + 2.0**-10))  # not a bfloat16 value
        mine, keras_values = ours(tf.cast(x, tf.bfloat16)), theirs(tf.cast(x, tf.bfloat16))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert mine.dtype == keras_values.dtype == tf.bfloat16 and ours.gamma.dtype == "float32"
    np.testing.assert_array_equal(tf.cast(mine, tf.float32), tf.cast(keras_values, tf.float32))
