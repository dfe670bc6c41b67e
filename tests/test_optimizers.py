"""tfgen.optimizers.Adam: Keras' Adam, bit for bit, in fewer graph ops."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgen import distribute, optimizers
from tfgen.config import load_config
from tfgen.experiment import build_model

SHAPES = [(3, 3, 4, 8), (8,), (5, 2)]


def initial_values_and_gradients(steps=4, seed=0):
    rng = np.random.default_rng(seed)
    values = [rng.normal(size=shape).astype(np.float32) for shape in SHAPES]
    gradients = [[rng.normal(size=shape).astype(np.float32) for shape in SHAPES] for _ in range(steps)]
    return values, gradients


def train(optimizer, values, gradients, new_rate_at=None):
    """`optimizer` applied to `gradients` in a tf.function, from `values`: the variables' values,
    the slots' and the step count. At step `new_rate_at` the learning rate is lowered, as a
    NaN rollback does."""
    variables = [keras.Variable(v) for v in values]
    optimizer.build(variables)

    @tf.function
    def step(grads):
        optimizer.apply(grads, variables)

    for i, grads in enumerate(gradients):
        if i == new_rate_at:
            optimizer.learning_rate.assign(optimizer.learning_rate * 0.1)
        step([tf.constant(g) for g in grads])
    return [v.numpy() for v in [*variables, *optimizer.variables]]


@pytest.mark.parametrize(
    "kwargs",
    [dict(learning_rate=2e-4, beta_1=0.5), dict(learning_rate=3e-3, beta_1=0.9, beta_2=0.99, epsilon=1e-5)],
)
def test_updates_are_bit_for_bit_keras_adam(kwargs):
    values, gradients = initial_values_and_gradients()
    want = train(keras.optimizers.Adam(**kwargs), values, gradients, new_rate_at=2)
    got = train(optimizers.Adam(**kwargs), values, gradients, new_rate_at=2)
    # the variables, then the optimizer's: step count, learning rate, m and v for each variable
    assert len(got) == len(want) == 3 * len(SHAPES) + 2
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert not np.array_equal(got[0], values[0])


def test_amsgrad_takes_keras_path_and_matches_it():
    values, gradients = initial_values_and_gradients()
    want = train(keras.optimizers.Adam(1e-2, amsgrad=True), values, gradients)
    got = train(optimizers.Adam(1e-2, amsgrad=True), values, gradients)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def train_mirrored(strategy, cls, values, gradients):
    """`cls(1e-2)` under `strategy`, each replica given half of every gradient: each replica's
    copy of each variable."""
    with strategy.scope():
        variables = [keras.Variable(v) for v in values]
        optimizer = cls(1e-2, beta_1=0.5)
        optimizer.build(variables)

    @tf.function
    def step(grads):
        strategy.run(lambda: optimizer.apply([g * 0.5 for g in grads], variables))

    for grads in gradients:
        step([tf.constant(g) for g in grads])
    return [[t.numpy() for t in v.value.values] for v in variables]


def test_under_mirrored_strategy_replicas_match_keras():
    """Two replicas (conftest's two logical CPUs), the gradients summed across them: each copy
    of each variable ends as under Keras' Adam."""
    strategy = distribute.make_strategy("mirrored")  # one per process: their collectives would clash
    assert strategy.num_replicas_in_sync == 2
    values, gradients = initial_values_and_gradients(steps=3)
    want = train_mirrored(strategy, keras.optimizers.Adam, values, gradients)
    got = train_mirrored(strategy, optimizers.Adam, values, gradients)
    for replicas_got, replicas_want in zip(got, want):
        assert len(replicas_got) == 2
        for g, w in zip(replicas_got, replicas_want):
            np.testing.assert_array_equal(g, w)


def test_a_keras_adam_checkpoint_restores_and_training_goes_on_identically(tmp_path):
    values, gradients = initial_values_and_gradients(steps=4)
    keras_adam = keras.optimizers.Adam(1e-2)
    variables = [keras.Variable(v) for v in values]
    keras_adam.build(variables)
    for grads in gradients[:2]:
        keras_adam.apply([tf.constant(g) for g in grads], variables)
    path = tf.train.Checkpoint(optimizer=keras_adam, variables=variables).save(tmp_path / "ckpt")

    def go_on(optimizer):
        restored = [keras.Variable(np.zeros_like(v)) for v in values]
        optimizer.build(restored)
        tf.train.Checkpoint(optimizer=optimizer, variables=restored).restore(path).assert_consumed()
        for grads in gradients[2:]:
            optimizer.apply([tf.constant(g) for g in grads], restored)
        return [v.numpy() for v in [*restored, *optimizer.variables]]

    for g, w in zip(go_on(optimizers.Adam(1e-2)), go_on(keras.optimizers.Adam(1e-2))):
        np.testing.assert_array_equal(g, w)


def traced_ops(optimizer, count=10):
    variables = [keras.Variable(np.ones((4, 4), np.float32)) for _ in range(count)]
    optimizer.build(variables)
    step = tf.function(lambda grads: optimizer.apply(grads, variables))
    graph = step.get_concrete_function([tf.TensorSpec((4, 4), tf.float32)] * count).graph
    return len(graph.get_operations())


def test_an_update_traces_far_fewer_ops_than_keras():
    keras_ops, ops = traced_ops(keras.optimizers.Adam(1e-3)), traced_ops(optimizers.Adam(1e-3))
    # measured: 418 against 238 for 10 variables (37 ops a variable against 17, and the shared scalars)
    assert ops < 0.6 * keras_ops, (ops, keras_ops)


@pytest.mark.parametrize("policy, wrapped", [("float32", False), ("mixed_float16", True)])
def test_training_builds_each_optimizer_as_tfgen_adam(policy, wrapped):
    """experiment.build_model's optimizers (a LossScaleOptimizer around one under
    mixed_float16, whose float16 gradients need loss scaling)."""
    cfg = load_config("digits_dcgan.yaml", ["train.beta_1=0.3", "train.d_learning_rate=0.004"])
    try:
        model = build_model(cfg, (8, 8, 1), 10, policy=policy, jit_compile=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for name in model.optimizer_names:
        optimizer = getattr(model, name)
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == wrapped
        inner = optimizer.inner_optimizer if wrapped else optimizer
        assert type(inner) is optimizers.Adam and inner.beta_1 == 0.3
    assert float(model.d_optimizer.learning_rate) == pytest.approx(0.004)
