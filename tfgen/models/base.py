"""What every tfgen model shares: seeded latents, optimizers, replica-correct losses and metrics.

A model subclasses `GenerativeModel`, builds its networks in `__init__`, writes
`train_step`, and declares:

- `optimizer_names`: {compile() argument: the sub-networks that optimizer trains};
  the training script builds one Adam per entry.
- `needs_labels`: whether batches must carry class labels (conditional models).
- `pictures`: the picture callbacks its runs draw, by name in `tfgen.callbacks.PICTURES`
  ("samples" grids from fixed latents; VAEs add "reconstructions"; a translator draws
  "translations"); the training script asks for these instead of checking model types.
- `domains`: 1, or 2 for a translator between two image domains (CycleGAN), whose batches
  are (domain A batch, domain B batch) pairs.
- `samples_from_latent`: whether `generate(z)` draws images from latents (every model but
  a translator); sample grids, scoring and `tfgen.generate` need it.
- `real_batches_per_step`: how many batches of real images one `train_step` consumes
  (a GAN with `d_steps` critic updates takes a fresh batch for each); the training
  script feeds that many at once, concatenated.
- `generate(z, labels=None)`: images in [-1, 1]; `model(z)` calls it.
- `export_endpoints()`: the SavedModel signatures (see `tfgen.export`).
"""

import keras
import tensorflow as tf

from tfgen.distribute import is_multi_worker


class GenerativeModel(keras.Model):
    """Base class; see the module docstring for what subclasses provide."""

    optimizer_names: dict = {}
    needs_labels = False
    # Pictures a run draws, by name in tfgen.callbacks.PICTURES.
    pictures: tuple = ("samples",)
    # Real batches one train_step consumes, fed concatenated (see the module docstring).
    real_batches_per_step = 1
    domains = 1
    samples_from_latent = True
    reconstructs = False

    def __init__(self, image_shape, latent_dim, seed, metric_names, num_classes=0, **kwargs):
        super().__init__(**kwargs)
        if self.samples_from_latent and latent_dim < 1:
            raise ValueError(f"latent_dim must be an integer >= 1, got {latent_dim}")
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in metric_names}

    def begin_epoch(self, epoch):
        """Called as each 0-based `epoch` begins (tfgen.callbacks.EpochStart): for what a
        model schedules per epoch, e.g. top-k's k. Nothing by default."""

    def call(self, z, training=False):
        """Images in [-1, 1] for latent vectors z [B, latent_dim] (unconditional models)."""
        return self.generate(z, training=training)

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
        """(fn, input_signature) of generate(z [B, latent_dim] [, label [B]]) -> images in [-1, 1],
        the export signature every model offers (see `export_endpoints`)."""
        z_spec = tf.TensorSpec([None, self.latent_dim], tf.float32, name="z")
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
        """N(0, I) latents [batch_size, latent_dim] from `next_seed`."""
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
