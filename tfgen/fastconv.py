"""Convolutions whose kernel gradient is a few matrix products, for the DCGAN stacks on CPUs.

Why: profiled with ONEDNN_VERBOSE on the 64 px DCGAN in bfloat16 (Xeon with AMX),
TensorFlow's kernel gradient (Conv2DBackpropFilter, oneDNN's brgconv_bwd_w) ran 2.4-7x
slower than the forward convolution of the same FLOPs and took over half of the training
step. The kernel gradient of a k x k convolution with stride s (k a multiple of s) is
patches(x)^T @ dy; after a space_to_depth of the padded input it is (k / s)^2 products of
row ranges of two matrices (`kernel_gradient`), so no patches are ever built. The products
run at the machine's matmul rate: 30 ms instead of 178 ms for D's 8x8x256 -> 512 layer on
a batch of 128.

`Conv2D` and `Conv2DTranspose` are Keras' layers with that gradient (the forward pass and
the input gradient are unchanged), so weights, configs and checkpoints are those of the
Keras layers. They take it only where it can pay: layers built inside `matmul_grad(True)`,
on CPUs (`available`; on a GPU, cuDNN's kernel gradient is kept, unmeasured), for the layer
shapes where it won (`takes_matmul_grad`). Whether it pays also depends on the CPU: on an
AVX2-only AMD EPYC in float32 the products ran 0.91-0.95x as fast as oneDNN's kernel
gradient on those shapes (0.7-0.8x under XLA). So `train.conv_kernel_grad: auto` times the
model both ways (`tfgen.autotune`). The result is the same gradient up to the order of
float summation.
"""

import contextlib
import contextvars

import keras
import tensorflow as tf

_ENABLED = contextvars.ContextVar("tfgen_matmul_grad", default=False)


@contextlib.contextmanager
def matmul_grad(enabled=True):
    """Layers built inside take the matmul kernel gradient where `takes_matmul_grad`.

    Outside, layers keep TensorFlow's gradient (the forward pass is the same either way),
    so a loaded model trains with TensorFlow's unless rebuilt inside.
    """
    token = _ENABLED.set(enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def layers_taking_it(model):
    """The names of `model`'s layers that compute their kernel gradient as products."""
    return [layer.name for layer in model._flatten_layers() if getattr(layer, "matmul_grad", False)]


def available():
    """Whether this machine can use the products at all: CPU-only machines (module doc)."""
    return not tf.config.list_logical_devices("GPU")


def _padding(size_in, size_out, kernel, stride, padding):
    """(before, after) padding of one spatial axis, as TensorFlow pads 'same' / 'valid'."""
    total = stride * (size_out - 1) + kernel - size_in
    before = total // 2 if padding == "same" else 0
    return before, total - before


def kernel_gradient(x, dy, kernel, stride, padding):
    """d loss / d W [k, k, C, O] for y = conv2d(x, W, stride, padding), given dy = d loss / d y.

    With x padded and folded by space_to_depth into X [B, P, Q, s * s * C] (n = k / s,
    P = out_h + n - 1), y[p, q] = sum over i, j < n of X[p + i, q + j] @ W_ij, so dW_ij is
    the sum over positions of X[p + i, q + j]^T dy[p, q]. With dy zero-padded to P x Q and
    both flattened to rows (batch, p, q), that pairing is X's rows shifted by i * Q + j: a
    contiguous range, so each dW_ij is one product of row slices and nothing is copied n * n
    times. Shifted rows never pair across images: where dy is not padding, p + i < P and
    q + j < Q.
    """
    channels, filters = x.shape[-1], dy.shape[-1]
    n = kernel // stride
    pads = [_padding(x.shape[1 + axis], dy.shape[1 + axis], kernel, stride, padding) for axis in (0, 1)]
    x = tf.pad(x, [[0, 0], *pads, [0, 0]])
    if stride > 1:
        x = tf.nn.space_to_depth(x, stride)
    width = x.shape[2]
    x = tf.reshape(x, [-1, stride * stride * channels])
    dy = tf.reshape(tf.pad(dy, [[0, 0], [0, n - 1], [0, n - 1], [0, 0]]), [-1, filters])
    rows = tf.shape(x)[0] - (n - 1) * (width + 1)
    blocks = [
        tf.linalg.matmul(x[i * width + j : i * width + j + rows], dy[:rows], transpose_a=True)
        for i in range(n)
        for j in range(n)
    ]
    grad = tf.reshape(tf.stack(blocks), [n, n, stride, stride, channels, filters])
    return tf.reshape(tf.transpose(grad, [0, 2, 1, 3, 4, 5]), [kernel, kernel, channels, filters])


# Where the products beat TensorFlow's kernel gradient: measured per layer shape in bfloat16
# on the Xeon (AMX) behind the README's performance table, batches of 64 and 128. They won
# 6x at 8 x 8 x 256, 2-2.4x at 16 x 16 x 128 and 1.1x at 32 x 32 x 64, tied at 7 x 7 x 64
# and 14 x 14 x 32, and lost (0.4x) on the 3-channel image layer, too thin for a product.
MAX_POSITIONS, MIN_CHANNELS = 32 * 32, 64


def takes_matmul_grad(layer, x_shape):
    """Whether `layer` computes its kernel gradient as a product (module doc). `x_shape` is
    the input of the convolution whose kernel gradient it is: the layer's input for Conv2D,
    its output for Conv2DTranspose. Needs a square kernel and stride, k a multiple of s,
    static sizes, and a layer shape where the product was measured to win."""
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    sizes = tuple(x_shape[1:3])
    return (
        _ENABLED.get()
        and available()
        and kh == kw
        and sh == sw
        and kh % sh == 0
        and layer.dilation_rate == (1, 1)
        and layer.data_format == "channels_last"
        and None not in sizes
        and (layer.padding == "same" or all((size - kh) % sh == 0 for size in sizes))
        and sizes[0] * sizes[1] <= MAX_POSITIONS
        and x_shape[-1] >= MIN_CHANNELS
    )


def _conv(x, kernel, stride, padding):
    return tf.nn.conv2d(x, kernel, stride, padding.upper())


def _conv_transpose(x, kernel, stride, padding, out_hw):
    shape = tf.stack([tf.shape(x)[0], out_hw[0], out_hw[1], kernel.shape[2]])
    return tf.nn.conv2d_transpose(x, kernel, shape, stride, padding.upper())


def conv2d(x, kernel, stride, padding):
    """conv2d(x, kernel) with the matmul kernel gradient."""
    k = kernel.shape[0]

    @tf.custom_gradient
    def forward(x, kernel):
        y = _conv(x, kernel, stride, padding)

        def grad(dy):
            dx = _conv_transpose(dy, kernel, stride, padding, x.shape[1:3])
            return dx, kernel_gradient(x, dy, k, stride, padding)

        return y, grad

    return forward(x, kernel)


def conv2d_transpose(x, kernel, stride, padding, out_hw):
    """conv2d_transpose(x, kernel) [k, k, O, C] with the matmul kernel gradient: it is the
    kernel gradient of the convolution that maps the output back onto x."""
    k = kernel.shape[0]

    @tf.custom_gradient
    def forward(x, kernel):
        y = _conv_transpose(x, kernel, stride, padding, out_hw)

        def grad(dy):
            return _conv(dy, kernel, stride, padding), kernel_gradient(dy, x, k, stride, padding)

        return y, grad

    return forward(x, kernel)


@keras.saving.register_keras_serializable(package="tfgen")
class Conv2D(keras.layers.Conv2D):
    """Keras' Conv2D with the matmul kernel gradient where `takes_matmul_grad` (module doc)."""

    def build(self, input_shape):
        super().build(input_shape)
        self.matmul_grad = takes_matmul_grad(self, input_shape)

    def convolution_op(self, inputs, kernel):
        if not self.matmul_grad:
            return super().convolution_op(inputs, kernel)
        kernel = tf.cast(kernel, inputs.dtype)
        return conv2d(inputs, kernel, self.strides[0], self.padding)


@keras.saving.register_keras_serializable(package="tfgen")
class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """Keras' Conv2DTranspose with the matmul kernel gradient where `takes_matmul_grad`."""

    def build(self, input_shape):
        super().build(input_shape)
        self.matmul_grad = self.output_padding is None and takes_matmul_grad(
            self, self.compute_output_shape(input_shape)
        )

    def call(self, inputs):
        if not self.matmul_grad:
            return super().call(inputs)
        out_hw = self.compute_output_shape(inputs.shape)[1:3]
        kernel = tf.cast(self.kernel, inputs.dtype)
        outputs = conv2d_transpose(inputs, kernel, self.strides[0], self.padding, out_hw)
        if self.use_bias:
            outputs = outputs + tf.cast(self.bias, outputs.dtype)
        return self.activation(outputs) if self.activation is not None else outputs
