"""SDPC, Sparse Deep Predictive Coding (Boutin et al., PLoS Comput Biol 2021; the two-layer
form: Boutin et al., "Effect of top-down connections in hierarchical sparse coding", Neural
Computation 2020).

A hierarchy of convolutional sparse codes. Layer i holds a non-negative code gamma_i and a
dictionary D_i of L2-normalised atoms; it predicts the layer below through a transposed
convolution, D_i^T gamma_i ~ gamma_{i-1}, with gamma_0 the image. Inference minimises, for
fixed dictionaries,

    E = sum_i w_i [ 1/2 ||gamma_{i-1} - D_i^T gamma_i||^2 + lambda_i ||gamma_i||_1 ],   w_i = k_fb^(i-1)

by (F)ISTA with the non-negative soft threshold relu(x - eta * lambda). Scaled per layer,
each code's update is the paper's: a bottom-up term (its own prediction error, passed up by
D_i) and a top-down term, k_fb times the error of the layer above's prediction of it, that
pulls it towards what the upper layer expects (the feedback). k_fb = 1 is the joint energy
of the 2020 paper; k_fb = 0 turns the feedback off and the layers become independent
layer-wise sparse codings (each layer codes the one below, nothing flows down). Learning is
the paper's alternation: inference to convergence, then one gradient step of each layer's
prediction error with respect to its dictionary alone (the codes are constants there), and
the atoms renormalised (a UnitNorm constraint, which the optimizer applies after each update).

Not in the papers: a learned per-channel `offset` subtracted from the image before coding.
The papers whiten or contrast-normalise their images first; without that, non-negative codes
would spend most of their L1 budget painting a flat background (black on MNIST, white on
the Pokemon art), so the offset takes the background and the atoms take the structure.
"""

import keras
import numpy as np
import tensorflow as tf

from tfgen.models.base import GenerativeModel
from tfgen.models.registry import register

# Power-iteration estimates of ||D_i||^2 can only fall short of the truth; the steps leave
# this margin (ISTA still decreases E for any step below 2 / Lipschitz).
STEP_SAFETY = 1.1


@keras.saving.register_keras_serializable(package="tfgen")
class ConvDictionaries(keras.layers.Layer):
    """The SDPC generative path: one dictionary of conv-transpose atoms per layer, plus an offset.

    Kernel i has shape [k_i, k_i, C_{i-1}, C_i] (C_0: image channels): atom j is
    kernel[..., j], kept at unit L2 norm by a UnitNorm constraint. `predict(i, code)` is
    D_i^T code (a transposed convolution, the prediction of layer i-1) and `project(i, error)`
    its adjoint D_i error (the convolution with the same kernel). The power-iteration vectors
    behind the step sizes are non-trainable weights, so a reloaded model infers identically.
    """

    def __init__(self, image_shape, channels, kernel_sizes, strides, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(image_shape)
        self.channels = tuple(channels)
        self.kernel_sizes = tuple(kernel_sizes)
        self.strides = tuple(strides)
        # spatial size of every level: the image, then each code map
        self.shapes = [self.image_shape]
        for c, s in zip(self.channels, self.strides):
            h, w, _ = self.shapes[-1]
            self.shapes.append((-(-h // s), -(-w // s), c))
        below = [self.image_shape[-1], *self.channels[:-1]]
        init = keras.initializers.RandomNormal(0.0, 1.0, seed=0)
        self.kernels = []
        for i, (k, c_in, c) in enumerate(zip(self.kernel_sizes, below, self.channels), 1):
            kernel = self.add_weight(
                shape=(k, k, c_in, c),
                initializer=init,
                name=f"atoms_{i}",
                constraint=keras.constraints.UnitNorm(axis=[0, 1, 2]),
            )
            kernel.assign(kernel.constraint(kernel))
            self.kernels.append(kernel)
        self.offset = self.add_weight(shape=(self.image_shape[-1],), initializer="zeros", name="offset")
        self.power_vectors = [
            self.add_weight(
                shape=(1, *shape),
                initializer=keras.initializers.Ones(),
                trainable=False,
                name=f"power_vector_{i}",
                aggregation="only_first_replica",
            )
            for i, shape in enumerate(self.shapes[1:], 1)
        ]
        self.built = True

    @property
    def num_layers(self):
        return len(self.channels)

    def predict(self, i, code):
        """D_i^T code: layer i's prediction of level i-1 (1-based i; level 0 is the image)."""
        h, w, c = self.shapes[i - 1]
        shape = tf.stack([tf.shape(code)[0], h, w, c])
        kernel = tf.cast(self.kernels[i - 1], code.dtype)
        return tf.nn.conv2d_transpose(code, kernel, shape, self.strides[i - 1], padding="SAME")

    def project(self, i, error):
        """D_i error: an error at level i-1 carried up to layer i's code space (the adjoint)."""
        return tf.nn.conv2d(error, tf.cast(self.kernels[i - 1], error.dtype), self.strides[i - 1], padding="SAME")

    def squared_norms(self, iterations=1, update=False):
        """Estimates of ||D_i||^2 (the largest eigenvalue of D_i D_i^T), one per layer.

        Power iteration, warm-started from the stored vectors: the dictionaries change a
        little per update, so one or two iterations per step keep the estimate tight.
        With `update` the vectors are stored back (in training).
        """
        norms = []
        for i, vector in enumerate(self.power_vectors, 1):
            v = tf.convert_to_tensor(vector)
            for _ in range(iterations):
                v = self.project(i, self.predict(i, v))
                v = v / (tf.norm(v) + 1e-12)
            if update:
                vector.assign(v)
            norms.append(tf.reduce_sum(tf.square(self.predict(i, v))))
        return norms

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": list(self.image_shape),
            "channels": list(self.channels),
            "kernel_sizes": list(self.kernel_sizes),
            "strides": list(self.strides),
        }


@register("sdpc")
class SDPC(GenerativeModel):
    """Sparse Deep Predictive Coding: `encode(images)` infers the sparse codes, `decode` predicts pixels.

    Args:
        image_shape: (height, width, channels) of the training images.
        channels: atoms per layer (one entry per layer; two layers is the papers' form).
        kernel_sizes: atom size of each layer, in that layer's input units.
        strides: stride of each layer's transposed convolution.
        lambdas: L1 weight of each layer's code (higher: sparser codes).
        k_fb: strength of the top-down feedback (0: independent layer-wise coding; 1: the
            joint energy).
        iterations: (F)ISTA iterations of one inference.
        fista: FISTA's momentum (Beck & Teboulle 2009) on, else plain ISTA, which is slower
            but lowers the energy at every iteration.
        power_iterations: power-iteration steps per train_step that track ||D_i||^2.
        seed: unused by the algorithm (inference is deterministic); kept for the registry.

    Not a sampler (`samples_from_noise = False`): it encodes and reconstructs. The GAN that
    samples from its dictionaries is `sdpc_gan`.
    """

    optimizer_names = {"optimizer": ("dictionaries",)}
    samples_from_noise = False
    reconstructs = True
    encodes = True
    has_atoms = True
    pictures = ("atoms", "corrupted_reconstructions")
    export_networks = ("dictionaries",)

    def __init__(
        self,
        image_shape=(28, 28, 1),
        channels: tuple[int, ...] = (32, 64),
        kernel_sizes: tuple[int, ...] = (7, 5),
        strides: tuple[int, ...] = (2, 2),
        lambdas: tuple[float, ...] = (0.3, 0.3),
        k_fb: float = 1.0,
        iterations: int = 30,
        fista: bool = True,
        power_iterations: int = 2,
        seed: int | None = None,
        **kwargs,
    ):
        GenerativeModel.__init__(self, image_shape, 0, seed, self.sdpc_metric_names(len(channels)), **kwargs)
        self.build_sdpc(channels, kernel_sizes, strides, lambdas, k_fb, iterations, fista, power_iterations)
        self.built = True

    @staticmethod
    def sdpc_metric_names(num_layers):
        """The metrics of `sdpc_step`: pixel error, energy, each layer's fraction of active units."""
        return ("reconstruction", "energy", *(f"active_{i}" for i in range(1, num_layers + 1)))

    def build_sdpc(self, channels, kernel_sizes, strides, lambdas, k_fb, iterations, fista, power_iterations):
        """Check the SDPC options and build the dictionaries; every SDPC model's __init__ calls it."""
        channels, kernel_sizes, strides, lambdas = (
            [int(v) for v in channels],
            [int(v) for v in kernel_sizes],
            [int(v) for v in strides],
            [float(v) for v in lambdas],
        )
        if not channels or not len(channels) == len(kernel_sizes) == len(strides) == len(lambdas):
            raise ValueError(
                f"channels, kernel_sizes, strides and lambdas need one entry per layer (at least one), got "
                f"{channels}, {kernel_sizes}, {strides}, {lambdas}"
            )
        if min(channels + kernel_sizes + strides) < 1:
            raise ValueError("channels, kernel_sizes and strides must be integers >= 1")
        if min(lambdas) < 0 or k_fb < 0:
            raise ValueError(f"lambdas and k_fb must be >= 0, got {lambdas}, {k_fb}")
        if iterations < 1 or power_iterations < 1:
            raise ValueError(f"iterations and power_iterations must be >= 1, got {iterations}, {power_iterations}")
        self.num_layers = len(channels)
        self.channels, self.kernel_sizes, self.strides, self.lambdas = channels, kernel_sizes, strides, lambdas
        self.k_fb = float(k_fb)
        self.iterations = iterations
        self.fista = fista
        self.power_iterations = power_iterations
        self.dictionaries = ConvDictionaries(self.image_shape, channels, kernel_sizes, strides, name="dictionaries")
        self.dictionaries.squared_norms(iterations=50, update=True)  # a tight start for the step sizes

    # -- inference -------------------------------------------------------------------------

    def step_sizes(self, squared_norms):
        """One step per layer, 1 / (a bound on the Lipschitz constant of its code's gradient).

        Layer i's gradient moves with its own code (||D_i||^2, + k_fb from its top-down
        error), the code below (||D_i||) and the code above (k_fb ||D_{i+1}||); their sum
        bounds the rows of the (scaled) Hessian, so these steps make ISTA a descent method.
        """
        norms = [tf.sqrt(n) for n in squared_norms]
        steps = []
        for i in range(self.num_layers):
            bound = squared_norms[i] + (norms[i] if i > 0 else 0.0)
            if i + 1 < self.num_layers:
                bound += self.k_fb * (1.0 + norms[i + 1])
            steps.append(1.0 / (STEP_SAFETY * bound))
        return steps

    def _centred(self, images):
        return tf.cast(images, tf.float32) - self.dictionaries.offset

    def errors(self, x, codes):
        """Prediction errors e_i = gamma_{i-1} - D_i^T gamma_i, i = 1..L (gamma_0 = x, centred)."""
        below = [x, *codes[:-1]]
        return [b - self.dictionaries.predict(i, c) for i, (b, c) in enumerate(zip(below, codes), 1)]

    def gradients(self, x, codes):
        """Each code's update direction (the smooth part of E, divided by that layer's weight w_i)."""
        errors = self.errors(x, codes)
        grads = []
        for i in range(self.num_layers):
            g = -self.dictionaries.project(i + 1, errors[i])
            if i + 1 < self.num_layers:
                g += self.k_fb * errors[i + 1]
            grads.append(g)
        return grads

    def infer(self, images, iterations=None, squared_norms=None):
        """The sparse codes [gamma_1, ..., gamma_L] of images in [-1, 1], by (F)ISTA from zero codes."""
        x = self._centred(images)
        batch = tf.shape(x)[0]
        if squared_norms is None:
            squared_norms = self.dictionaries.squared_norms(iterations=1)
        steps = self.step_sizes(squared_norms)
        codes = [tf.zeros(tf.stack([batch, *shape])) for shape in self.dictionaries.shapes[1:]]
        iterations = self.iterations if iterations is None else iterations

        def body(t, momentum, codes, previous):
            grads = self.gradients(x, momentum)
            new = [tf.nn.relu(m - eta * g - eta * lam) for m, g, eta, lam in zip(momentum, grads, steps, self.lambdas)]
            if self.fista:
                t_next = 0.5 * (1.0 + tf.sqrt(1.0 + 4.0 * t * t))
                beta = (t - 1.0) / t_next
                momentum = [n + beta * (n - c) for n, c in zip(new, codes)]
            else:
                t_next, momentum = t, new
            return t_next, momentum, new, codes

        loop_vars = (tf.constant(1.0), codes, codes, codes)
        _, _, codes, _ = tf.while_loop(lambda *_: tf.constant(True), body, loop_vars, maximum_iterations=iterations)
        return codes

    def layer_energies(self, images, codes):
        """Per-example [1/2 ||gamma_{i-1} - D_i^T gamma_i||^2 + lambda_i ||gamma_i||_1] for each layer i."""
        x = self._centred(images)
        energies = []
        for e, c, lam in zip(self.errors(x, codes), codes, self.lambdas):
            flat_e = tf.reshape(e, [tf.shape(e)[0], -1])
            flat_c = tf.reshape(c, [tf.shape(c)[0], -1])
            energies.append(0.5 * tf.reduce_sum(tf.square(flat_e), 1) + lam * tf.reduce_sum(tf.abs(flat_c), 1))
        return energies

    def energy(self, images, codes):
        """Per-example E = sum_i k_fb^(i-1) * layer i's energy: what (F)ISTA minimises (see the module doc)."""
        return tf.add_n([self.k_fb**i * e for i, e in enumerate(self.layer_energies(images, codes))])

    # -- the model's vocabulary ------------------------------------------------------------

    def encode(self, images, training=False):
        """The sparse codes, a list [gamma_1 ([B, h_1, w_1, C_1]), ..., gamma_L]."""
        return self.infer(images)

    def decode(self, code, layer=None):
        """Pixels in [-1, 1] predicted by one layer's code (default: the top layer), down
        through every dictionary below it: D_1^T ... D_i^T gamma_i + offset."""
        return tf.clip_by_value(self.synthesize(code, layer), -1.0, 1.0)

    def synthesize(self, code, layer=None):
        """`decode` without the clipping to [-1, 1] (what a discriminator sees, gradients intact)."""
        layer = self.num_layers if layer is None else layer
        h = tf.cast(code, tf.float32)
        for i in range(layer, 0, -1):
            h = self.dictionaries.predict(i, h)
        return h + self.dictionaries.offset

    def reconstruct(self, images, labels=None):
        """The first layer's prediction of the image from its inferred code (the best
        reconstruction SDPC makes; with feedback, the upper layers have shaped that code)."""
        return self.decode(self.infer(images)[0], layer=1)

    def generate(self, images, labels=None, training=False):
        return self.reconstruct(images)

    def call(self, images, training=False):
        return self.reconstruct(images)

    def atoms(self, layer):
        """Layer `layer`'s atoms in pixel space, [C_layer, r, r, C_0], each scaled to [-1, 1].

        Layer 1's are its kernels; a higher layer's are the images one active unit at the
        centre of its map predicts through all the dictionaries below (the papers' "back-
        projected" receptive fields), cropped to the receptive field r.
        """
        if layer == 1:
            fields = tf.transpose(self.dictionaries.kernels[0], [3, 0, 1, 2])
        else:
            h, w, c = self.dictionaries.shapes[layer]
            one_hot = np.zeros((c, h, w, c), np.float32)
            one_hot[np.arange(c), h // 2, w // 2, np.arange(c)] = 1.0
            field = tf.convert_to_tensor(one_hot)
            for i in range(layer, 0, -1):
                field = self.dictionaries.predict(i, field)
            r, scale = self.kernel_sizes[0], 1
            for k, s in zip(self.kernel_sizes[1:layer], self.strides[: layer - 1]):
                scale *= s
                r += (k - 1) * scale
            centre_y, centre_x = (h // 2) * scale * self.strides[layer - 1], (w // 2) * scale * self.strides[layer - 1]
            top, left = max(centre_y - r // 2, 0), max(centre_x - r // 2, 0)
            fields = field[:, top : top + r, left : left + r, :]
        peak = tf.reduce_max(tf.abs(fields), axis=[1, 2, 3], keepdims=True)
        return fields / (peak + 1e-12)

    # -- learning --------------------------------------------------------------------------

    def dictionary_loss(self, images, codes):
        """Per-example sum over layers of 1/2 ||gamma_{i-1} - D_i^T gamma_i||^2 with the codes
        held fixed (stop_gradient): the papers' dictionary update after inference."""
        codes = [tf.stop_gradient(c) for c in codes]
        x = self._centred(images)
        below = [x, *codes[:-1]]
        total = 0.0
        for i, (b, c) in enumerate(zip(below, codes), 1):
            e = tf.reshape(b - self.dictionaries.predict(i, c), [tf.shape(c)[0], -1])
            total += 0.5 * tf.reduce_sum(tf.square(e), 1)
        return total

    def sdpc_step(self, images, optimizer_name="optimizer"):
        """Inference, one dictionary update (atoms renormalised by their constraint), the
        power iterations that follow the dictionaries; returns replica-local metric shares."""
        images = tf.cast(images, tf.float32)
        norms = self.dictionaries.squared_norms(self.power_iterations, update=True)
        codes = self.infer(images, squared_norms=norms)
        with tf.GradientTape() as tape:
            loss = self.global_mean(self.dictionary_loss(images, codes))
        self.apply_update(optimizer_name, tape, loss)
        prediction = self.dictionaries.predict(1, codes[0]) + self.dictionaries.offset
        logs = {
            "reconstruction": self.global_mean(tf.square(prediction - images)),
            "energy": self.global_mean(self.energy(images, codes)),
        }
        for i, c in enumerate(codes, 1):
            logs[f"active_{i}"] = self.global_mean(tf.cast(c > 0, tf.float32))
        return logs

    def train_step(self, data):
        """Inference to (near) convergence, then one dictionary update: the papers' alternation."""
        images = data[0] if isinstance(data, (tuple, list)) else data
        return self.update_trackers(self.sdpc_step(images))

    # -- export ----------------------------------------------------------------------------

    def code_endpoints(self):
        """`encode(images)` -> {code_1, ..., code_L} and `decode(code)` (top layer) -> images."""
        image_spec = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")
        top = self.dictionaries.shapes[-1]
        code_spec = tf.TensorSpec([None, *top], tf.float32, name="code")
        return {
            "encode": (lambda images: {f"code_{i}": c for i, c in enumerate(self.infer(images), 1)}, [image_spec]),
            "decode": (lambda code: self.decode(code), [code_spec]),
        }

    def export_endpoints(self):
        image_spec = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")
        return {"reconstruct": (lambda images: self.reconstruct(images), [image_spec]), **self.code_endpoints()}

    def sdpc_config(self):
        return {
            "channels": list(self.channels),
            "kernel_sizes": list(self.kernel_sizes),
            "strides": list(self.strides),
            "lambdas": list(self.lambdas),
            "k_fb": self.k_fb,
            "iterations": self.iterations,
            "fista": self.fista,
            "power_iterations": self.power_iterations,
        }

    def get_config(self):
        config = {**super().get_config(), **self.sdpc_config()}
        config.pop("latent_dim")
        return config
