import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgen import fastconv

CASES = [  # (input size, stride, padding): the DCGAN stacks' layers, odd sizes included
    (8, 2, "same"),
    (7, 2, "same"),
    (14, 2, "same"),
    (4, 1, "valid"),
    (7, 1, "valid"),
    (9, 1, "same"),
]
AVAILABLE = fastconv.available
PAIRS = [(fastconv.Conv2D, keras.layers.Conv2D), (fastconv.Conv2DTranspose, keras.layers.Conv2DTranspose)]


@pytest.fixture(autouse=True)
def every_shape_takes_the_product(monkeypatch):
    """The equivalence tests run the product on every shape, not only where it is fast."""
    monkeypatch.setattr(fastconv, "MAX_POSITIONS", 10**6)
    monkeypatch.setattr(fastconv, "MIN_CHANNELS", 1)
    monkeypatch.setattr(fastconv, "available", lambda: True)  # also on GPU machines
    with fastconv.matmul_grad(True):
        yield


def twin_layers(fast_cls, keras_cls, input_shape, stride, padding, kernel=4):
    """The tfgen layer and Keras' own, built with the same weights."""
    fast = fast_cls(6, kernel, stride, padding)
    ref = keras_cls(6, kernel, stride, padding)
    fast.build(input_shape)
    ref.build(input_shape)
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=w.shape).astype("float32") for w in fast.get_weights()]
    fast.set_weights(weights)
    ref.set_weights(weights)
    return fast, ref


def gradients(layer, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.sin(y))  # a non-linear loss: dy differs at every position
    return [y, *tape.gradient(loss, [x, layer.kernel, layer.bias])]


@pytest.mark.parametrize("fast_cls, keras_cls", PAIRS)
@pytest.mark.parametrize("size, stride, padding", CASES)
def test_same_outputs_and_gradients_as_keras(fast_cls, keras_cls, size, stride, padding):
    x = tf.random.stateless_normal((3, size, size, 5), seed=(size, stride))
    fast, ref = twin_layers(fast_cls, keras_cls, x.shape, stride, padding)
    assert fast.matmul_grad  # the case runs the matmul kernel gradient, not a fallback
    for name, a, b in zip(("y", "dx", "dkernel", "dbias"), gradients(fast, x), gradients(ref, x)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(tf.reduce_max(tf.abs(b))), err_msg=name)


@pytest.mark.parametrize("size", [16, 7])
def test_resize_stage_3x3_same_convolution_matches_keras(size):
    """The 3 x 3 stride-1 'same' convolution of the resize generators (odd kernel, even padding)."""
    x = tf.random.stateless_normal((3, size, size, 5), seed=(size, 3))
    fast, ref = twin_layers(fastconv.Conv2D, keras.layers.Conv2D, x.shape, 1, "same", kernel=3)
    assert fast.matmul_grad
    for name, a, b in zip(("y", "dx", "dkernel", "dbias"), gradients(fast, x), gradients(ref, x)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(tf.reduce_max(tf.abs(b))), err_msg=name)


@pytest.mark.parametrize("fast_cls, keras_cls", PAIRS)
def test_second_order_gradients_match(fast_cls, keras_cls):
    """WGAN-GP differentiates d D / d x again with respect to the weights."""
    x = tf.random.stateless_normal((2, 8, 8, 3), seed=(1, 2))
    fast, ref = twin_layers(fast_cls, keras_cls, x.shape, 2, "same")
    results = []
    for layer in (fast, ref):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(x)
                score = tf.reduce_sum(tf.tanh(layer(x)))
            penalty = tf.reduce_sum(tf.square(inner.gradient(score, x)))
        results.append(outer.gradient(penalty, layer.kernel))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-5)


def test_bfloat16_gradient_as_close_to_float32_as_keras_own():
    """In bfloat16 both gradients are several percent off (CPUs without native bfloat16 round
    differently from AMX): the products must be no farther from the float32 gradient."""
    x = tf.random.stateless_normal((4, 16, 16, 8), seed=(3, 4))
    fast, ref = twin_layers(fastconv.Conv2D, keras.layers.Conv2D, x.shape, 2, "same")
    exact = gradients(ref, x)[2]
    fast.dtype_policy = ref.dtype_policy = keras.DTypePolicy("mixed_bfloat16")
    (y, _, a, _), (_, _, b, _) = gradients(fast, x), gradients(ref, x)
    assert y.dtype == tf.bfloat16
    error_fast, error_keras = (float(tf.reduce_max(tf.abs(g - exact))) for g in (a, b))
    assert error_fast < 1.5 * error_keras + 1e-3 * float(tf.reduce_max(tf.abs(exact)))


@pytest.mark.parametrize("kernel, stride", [(3, 2), (4, 3)])
def test_kernel_not_a_multiple_of_stride_keeps_tensorflows_gradient(kernel, stride):
    x = tf.random.stateless_normal((2, 9, 9, 2), seed=(5, 6))
    fast, ref = twin_layers(fastconv.Conv2D, keras.layers.Conv2D, x.shape, stride, "same", kernel)
    assert not fast.matmul_grad
    np.testing.assert_allclose(gradients(fast, x)[2], gradients(ref, x)[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "cls, input_shape, expected",
    [
        (fastconv.Conv2D, (1, 8, 8, 256), True),  # D's last layers: the products won 6x
        (fastconv.Conv2D, (1, 32, 32, 64), True),
        (fastconv.Conv2D, (1, 14, 14, 32), False),  # a tie: TensorFlow's gradient stays
        (fastconv.Conv2D, (1, 64, 64, 64), False),  # larger than measured
        (fastconv.Conv2D, (1, 64, 64, 3), False),  # image layers: the products lost
        (fastconv.Conv2DTranspose, (1, 4, 4, 512), True),  # its conv view: 8 x 8 x 256
        (fastconv.Conv2DTranspose, (1, 32, 32, 64), False),  # view: 64 x 64 x 3
    ],
)
def test_product_only_on_the_shapes_where_it_was_measured_faster(monkeypatch, cls, input_shape, expected):
    monkeypatch.undo()  # the real thresholds
    monkeypatch.setattr(fastconv, "available", lambda: True)  # as on a CPU-only machine
    layer = cls(3 if cls is fastconv.Conv2DTranspose and input_shape[1] == 32 else 256, 4, 2, "same")
    layer.build(input_shape)
    assert layer.matmul_grad == expected


def test_only_layers_built_inside_matmul_grad_take_it():
    with fastconv.matmul_grad(False):
        outside = fastconv.Conv2D(4, 4, 2, "same")
        outside.build((1, 8, 8, 1))
    inside = fastconv.Conv2D(4, 4, 2, "same")
    inside.build((1, 8, 8, 1))
    assert not outside.matmul_grad and inside.matmul_grad
    model = keras.Sequential([keras.Input((8, 8, 1)), inside, keras.layers.Flatten()])
    assert fastconv.layers_taking_it(model) == [inside.name]


def test_gpu_machines_keep_cudnn(monkeypatch):
    monkeypatch.setattr(fastconv, "available", AVAILABLE)
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    layer = fastconv.Conv2D(4, 4, 2, "same")
    layer.build((1, 8, 8, 1))
    assert not layer.matmul_grad


def test_saved_and_loaded_in_safe_mode(tmp_path):
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), fastconv.Conv2D(2, 4, 2, "same"), fastconv.Conv2DTranspose(1, 4, 2, "same")]
    )
    x = tf.random.stateless_normal((2, 8, 8, 1), seed=(7, 8))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert [type(layer) for layer in loaded.layers] == [fastconv.Conv2D, fastconv.Conv2DTranspose]
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
