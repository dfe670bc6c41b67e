"""The model contract: what every tfgen model declares and what the rest of tfgen may call.

A model subclasses `GenerativeModel`, builds its networks in `__init__`, writes
`train_step`, and declares what it can do. Every other module (the training script, the
picture callbacks, `Sampler`, `tfgen evaluate`, export, the studio, the uniqueness ledger)
asks these declarations instead of checking model types or guessing with `hasattr`.

Capabilities (class attributes; `check_contract` enforces that each declared one has its
method):

- `samples_from_noise`: `generate(noise)` draws new images from random noise of shape
  `[N, *noise_shape]` (every model but a translator and SDPC). Sample grids, FID/KID/PR,
  `tfgen generate`, the studio and the `generate` export signature need it.
- `needs_labels`: conditional; batches carry class labels and `generate` takes `labels`.
- `reconstructs`: `reconstruct(images, labels=None)` rebuilds images (VAEs, SDPC); the
  reconstruction pictures and the `rec` metric need it.
- `encodes`: `encode(images, ...)` gives the model's code of an image (VAEs: the posterior's
  mean and log-variance; SDPC: its sparse codes); the latent-space pictures need it.
- `translates`: `translate(images, direction)` maps one image domain to the other
  ("a2b"/"b2a"); such a model trains on `domains = 2` (pairs of batches, one per domain).
- `has_atoms`: `atoms(layer)` gives a dictionary's atoms as images (SDPC's pictures).

Training hooks:

- `optimizer_names`: {compile() argument: the sub-networks that optimizer trains}; the
  training script builds one Adam per entry.
- `real_batches_per_step`: how many batches of real images one `train_step` consumes (a GAN
  with `d_steps` critic updates takes a fresh batch for each); they are fed concatenated.
- `begin_epoch(epoch)`: per-epoch schedules (top-k's k).

Outputs:

- `pictures`: the picture callbacks its runs draw, by name in `tfgen.callbacks.PICTURES`.
- `export_networks`: the sub-networks a SavedModel stores (a GAN's discriminator stays behind).
- `export_endpoints()`: the SavedModel signatures {name: (fn, input_signature)}; the first is
  also `serving_default`, and for a sampling model it is `generate_endpoint()`.

Sampling, not tied to a flat latent:

- `noise_shape`: the per-example shape of the noise `generate` takes: `(latent_dim,)` for
  the GANs and VAEs, an image shape for a diffusion model. Callers draw standard normal
  noise of shape `[N, *noise_shape]` (`sample_noise`) and store it flattened.
- `sampling_options`: {name: default} of the keyword options `generate` accepts beyond
  noise and labels (e.g. a diffusion sampler's `steps`); empty for one-pass generators.
  `Sampler` checks and passes them through (naming an unknown one); exports and scores use
  the defaults.
- `generate(noise, labels=None, training=False, **options)`: images in [-1, 1]; `model(noise)`
  calls it.
- `sampling_calls`: network calls per image with the default options: 1 for a one-pass
  generator, a diffusion sampler's steps. The sample grid draws its fixed batch (and
  `sample_diversity`) every epoch where that is cheap, only on the grids' epochs otherwise.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from tfgen.distribute import is_multi_worker

# Each capability flag and the method a model declaring it must override.
CAPABILITY_METHODS = {
    "samples_from_noise": "generate",
    "reconstructs": "reconstruct",
    "encodes": "encode",
    "translates": "translate",
    "has_atoms": "atoms",
}


def draw_noise(rng, count, noise_shape, truncation=None):
    """Standard normal noise [count, *noise_shape] as float32 numpy from the numpy Generator
    `rng`. With `truncation` T, entries with |value| > T are redrawn (the truncation trick).

    Every caller outside a training step draws noise here (grids, scores, `Sampler`, the
    studio), so a seed gives the same images everywhere.
    """
    noise = rng.standard_normal((count, *noise_shape))
    if truncation is not None:
        outside = np.abs(noise) > truncation
        while outside.any():
            noise[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(noise) > truncation
    return noise.astype(np.float32)


class GenerativeModel(keras.Model):
    """Base class of every tfgen model; the module docstring is the contract it declares."""

    # === Capabilities ===
    samples_from_noise = True
    needs_labels = False
    reconstructs = False
    encodes = False
    translates = False
    has_atoms = False

    # === Training hooks ===
    optimizer_names: dict = {}
    real_batches_per_step = 1
    domains = 1

    # === Outputs ===
    pictures: tuple = ("samples",)
    export_networks: tuple = ()

    # === Sampling ===
    sampling_options: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_contract(cls)

    def __init__(self, image_shape, latent_dim, seed, metric_names, num_classes=0, **kwargs):
        super().__init__(**kwargs)
        flat_latent = type(self).noise_shape is GenerativeModel.noise_shape
        if self.samples_from_noise and flat_latent and latent_dim < 1:
            raise ValueError(f"latent_dim must be an integer >= 1, got {latent_dim}")
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in metric_names}

    # === The contract's methods ===

    @property
    def noise_shape(self):
        """Per-example shape of the noise `generate` takes; `(latent_dim,)` unless overridden."""
        return (self.latent_dim,)

    @property
    def noise_size(self):
        """Numbers in one example's noise (its flattened length, as ledgers store it)."""
        return math.prod(self.noise_shape)

    @property
    def sampling_calls(self):
        """Network calls per generated image with the default `sampling_options` (1: one pass)."""
        return 1

    def sample_noise(self, count, rng=None, truncation=None):
        """Standard normal noise [count, *noise_shape] (float32 numpy) from `rng`; see `draw_noise`."""
        return draw_noise(rng if rng is not None else np.random.default_rng(), count, self.noise_shape, truncation)

    def generate(self, noise, labels=None, training=False, **options):
        """Images in [-1, 1] for noise [N, *noise_shape] (and labels [N] when conditional)."""
        raise NotImplementedError(f"{type(self).__name__} does not sample from noise")

    def reconstruct(self, images, labels=None):
        """Images in [-1, 1] rebuilt from `images` (declared by `reconstructs`)."""
        raise NotImplementedError(f"{type(self).__name__} does not reconstruct")

    def encode(self, images, labels=None, training=False):
        """The model's code of `images` (declared by `encodes`)."""
        raise NotImplementedError(f"{type(self).__name__} does not encode")

    def translate(self, images, direction="a2b", training=False):
        """Images of one domain -> the other's, "a2b" or "b2a" (declared by `translates`)."""
        raise NotImplementedError(f"{type(self).__name__} does not translate")

    def atoms(self, layer):
        """One dictionary layer's atoms as images (declared by `has_atoms`)."""
        raise NotImplementedError(f"{type(self).__name__} has no dictionary atoms")

    def export_endpoints(self):
        """{signature name: (fn, input_signature)} for the SavedModel; `generate` by default."""
        return {"generate": self.generate_endpoint()}

    def begin_epoch(self, epoch):
        """Called as each 0-based `epoch` begins (tfgen.callbacks.EpochStart): for what a
        model schedules per epoch, e.g. top-k's k. Nothing by default."""

    def call(self, noise, training=False):
        """Images in [-1, 1] for noise (unconditional models)."""
        return self.generate(noise, training=training)

    def compile(self, jit_compile="auto", **optimizers):
        """Attach the optimizers named in `optimizer_names` and build their slots now.

        Building here, not lazily in the first step, is what lets the step run under XLA
        and `tf.distribute` (slots cannot be created inside a compiled, replicated step).
        """
        if set(optimizers) != set(self.optimizer_names):
            raise TypeError(f"{type(self).__name__}.compile takes {sorted(self.optimizer_names)}")
        super().compile(optimizer=None, jit_compile=jit_compile)
        for name, networks in self.optimizer_names.items():
            setattr(self, name, optimizers[name])
            optimizers[name].build(self.trainable_variables_of(networks))

    def trainable_variables_of(self, networks):
        """Trainable variables of the named sub-networks, in order."""
        return [v for net in networks for v in getattr(self, net).trainable_variables]

    def apply_update(self, optimizer_name, tape, loss):
        """One optimizer update of `loss` w.r.t. that optimizer's networks.

        Under mixed_float16 the optimizer is a LossScaleOptimizer: the gradient is taken of
        scale * loss (as `output_gradients`, since the tape has closed) so small float16
        gradients do not flush to zero, and apply_gradients unscales them (and skips the
        step if they overflowed). For other optimizers the scale is 1.
        """
        optimizer = getattr(self, optimizer_name)
        variables = self.trainable_variables_of(self.optimizer_names[optimizer_name])
        scale = tf.cast(optimizer.scale_loss(tf.constant(1.0)), loss.dtype)
        gradients = tape.gradient(loss, variables, output_gradients=scale)
        optimizer.apply_gradients(zip(gradients, variables))

    def generate_endpoint(self):
        """(fn, input_signature) of generate(z [B, *noise_shape] [, label [B]]) -> images in [-1, 1],
        with the default `sampling_options`: the export signature every sampling model offers.
        The noise input keeps the name `z` that exports have always used."""
        z_spec = tf.TensorSpec([None, *self.noise_shape], tf.float32, name="z")
        if self.needs_labels:
            return (
                lambda z, label: self.generate(z, label, training=False),
                [z_spec, tf.TensorSpec([None], tf.int32, name="label")],
            )
        return lambda z: self.generate(z, training=False), [z_spec]

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Every variable and optimizer slot exists after __init__ and compile, so there is
        # nothing to build; Keras' version would also strategy.reduce() a whole (images,
        # labels) batch, which fails under MultiWorkerMirroredStrategy (keras-team/keras#20585).
        pass

    def get_compile_config(self):
        # Optimizers are restored from checkpoints, not from the .keras archive.
        return None

    @property
    def metrics(self):
        return list(self.trackers.values())

    def next_seed(self):
        """A fresh stateless-RNG seed from the model's seed state, different on every replica."""
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        context = tf.distribute.get_replica_context()
        if context is not None:
            seed = tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)
        return seed

    def sample_latent(self, batch_size):
        """N(0, I) latents [batch_size, latent_dim] from `next_seed`, inside a training step."""
        return tf.random.stateless_normal((batch_size, self.latent_dim), seed=self.next_seed())

    @staticmethod
    def global_mean(per_example):
        """This replica's share of the mean over the *global* batch.

        Summing the shares over replicas gives the global mean, and the optimizers sum
        gradients over replicas, so one step equals a single-device step on the whole batch.
        """
        per_example = tf.reshape(tf.cast(per_example, tf.float32), [tf.shape(per_example)[0], -1])
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_batch = tf.cast(tf.shape(per_example)[0] * replicas, tf.float32)
        return tf.reduce_sum(tf.reduce_mean(per_example, axis=1)) / global_batch

    def update_trackers(self, logs):
        """Add each replica's share (from `global_mean`) and update the running means.

        Keras reports only the first replica's values, so the sum across replicas is taken here.
        """
        context = tf.distribute.get_replica_context()
        for name, value in logs.items():
            if context is not None:
                value = context.all_reduce(tf.distribute.ReduceOp.SUM, value)
            self.trackers[name].update_state(value)
        results = {name: tracker.result() for name, tracker in self.trackers.items()}
        if is_multi_worker(tf.distribute.get_strategy()):
            # Across workers Keras reduces these with strategy.reduce("MEAN", v, axis=0),
            # which rejects scalars (tensorflow#72388); shape [1] reduces to the same scalar.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def get_config(self):
        config = {
            **super().get_config(),
            "image_shape": list(self.image_shape),
            "latent_dim": self.latent_dim,
            "seed": self.seed,
        }
        if self.needs_labels:
            config["num_classes"] = self.num_classes
        return config


def check_contract(cls):
    """TypeError unless each capability `cls` declares has its method overridden, and a
    translator trains on two domains. Run on every subclass as it is defined."""
    for flag, method in CAPABILITY_METHODS.items():
        if getattr(cls, flag) and getattr(cls, method) is getattr(GenerativeModel, method):
            raise TypeError(f"{cls.__name__} declares {flag} = True but does not define {method}()")
    if cls.translates != (cls.domains == 2):
        raise TypeError(
            f"{cls.__name__}: a translator trains on two domains (translates = {cls.translates}, "
            f"domains = {cls.domains})"
        )
