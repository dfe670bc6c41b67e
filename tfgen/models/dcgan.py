"""DCGAN (Radford et al. 2016): the baseline convolutional GAN.

`train_step` follows the paper's algorithm box: `d_steps` discriminator updates on the real
batch and fresh fakes, then one generator update. The two halves are public methods
(`discriminator_step`, `generator_step`) so tests and subclasses can run them one at a time.
"""

from typing import Literal, Optional

import keras
import tensorflow as tf

from tfgen import layers, losses
from tfgen.models.registry import register


@register("dcgan")
class DCGAN(keras.Model):
    """Generator + discriminator trained with a GAN loss; `model(z)` generates images.

    Args:
        image_shape: (size, size, channels) of the training images, size as in
            `tfgen.layers.resolution_plan` (28, 32, 64, 128, ...).
        latent_dim: size of the N(0, I) latent vector z.
        g_width, d_width: channels of G's last and D's first convolution; the other
            layers double from there (the paper's ngf / ndf).
        loss: "non_saturating" (the paper's) or "hinge".
        d_dropout: dropout rate after every activation in D (0 disables it).
        label_smoothing: one-sided: D's target for real images is 1 - label_smoothing.
        d_steps: discriminator updates per generator update.
        seed: seeds the latent draws inside `train_step` (state saved with checkpoints).
    """

    # The training script builds one optimizer per name and passes them to compile().
    optimizer_names = ("d_optimizer", "g_optimizer")
    needs_labels = False

    def __init__(
        self,
        image_shape=(32, 32, 1),
        latent_dim: int = 100,
        g_width: int = 64,
        d_width: int = 64,
        loss: Literal["non_saturating", "hinge"] = "non_saturating",
        d_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        d_steps: int = 1,
        seed: Optional[int] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("latent_dim", latent_dim), ("g_width", g_width),
                            ("d_width", d_width), ("d_steps", d_steps)):
            if value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value}")
        if not 0 <= d_dropout < 1:
            raise ValueError(f"d_dropout must be in [0, 1), got {d_dropout}")
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.g_width = g_width
        self.d_width = d_width
        self.loss = loss
        self.d_dropout = d_dropout
        self.label_smoothing = label_smoothing
        self.d_steps = d_steps
        self.seed = seed
        self._d_loss, self._g_loss = losses.gan_loss(loss)
        self.generator = layers.build_generator(latent_dim, self.image_shape, g_width)
        self.discriminator = layers.build_discriminator(self.image_shape, d_width, d_dropout)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("d_loss", "g_loss", "real_score", "fake_score")
        }
        self.built = True

    def call(self, z, training=False):
        """Images in [-1, 1] for latent vectors z [B, latent_dim]."""
        return self.generator(z, training=training)

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        """Attach one optimizer per network and build their slots now.

        Building here, not lazily in the first step, is what lets the step run under XLA
        and `tf.distribute` (slots cannot be created inside a compiled, replicated step).
        """
        super().compile(optimizer=None, **kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        d_optimizer.build(self.discriminator.trainable_variables)
        g_optimizer.build(self.generator.trainable_variables)

    def get_compile_config(self):
        # Optimizers are restored from checkpoints, not from the .keras archive.
        return None

    @property
    def metrics(self):
        return list(self.trackers.values())

    def sample_latent(self, batch_size):
        """N(0, I) latents from the model's seed state, different on every replica."""
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        context = tf.distribute.get_replica_context()
        if context is not None:
            seed = tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)
        return tf.random.stateless_normal((batch_size, self.latent_dim), seed=seed)

    def discriminator_step(self, real):
        """One D update on a real batch and as many fresh fakes. Returns replica-local sums."""
        fake = self.generator(self.sample_latent(tf.shape(real)[0]), training=True)
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            loss = self._global_mean(self._d_loss(real_logits, fake_logits, self.label_smoothing))
        variables = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {
            "d_loss": loss,
            "real_score": self._global_mean(tf.sigmoid(tf.cast(real_logits, tf.float32))),
            "fake_score": self._global_mean(tf.sigmoid(tf.cast(fake_logits, tf.float32))),
        }

    def generator_step(self, batch_size):
        """One G update through a (not updated) D. Returns the replica-local loss share."""
        with tf.GradientTape() as tape:
            fake = self.generator(self.sample_latent(batch_size), training=True)
            loss = self._global_mean(self._g_loss(self.discriminator(fake, training=True)))
        variables = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"g_loss": loss}

    def train_step(self, data):
        real = data[0] if isinstance(data, (tuple, list)) else data
        for _ in range(self.d_steps):
            logs = self.discriminator_step(real)
        logs.update(self.generator_step(tf.shape(real)[0]))
        return self._update_trackers(logs)

    @staticmethod
    def _global_mean(per_example):
        """This replica's share of the mean over the *global* batch.

        Summing the shares over replicas gives the global mean, and the optimizers sum
        gradients over replicas, so one step equals a single-device step on the whole batch.
        """
        per_example = tf.reshape(tf.cast(per_example, tf.float32), [tf.shape(per_example)[0], -1])
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_batch = tf.cast(tf.shape(per_example)[0] * replicas, tf.float32)
        return tf.reduce_sum(tf.reduce_mean(per_example, axis=1)) / global_batch

    def _update_trackers(self, logs):
        # Keras reports only the first replica's values: sum the shares across replicas.
        context = tf.distribute.get_replica_context()
        for name, value in logs.items():
            if context is not None:
                value = context.all_reduce(tf.distribute.ReduceOp.SUM, value)
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": list(self.image_shape),
            "latent_dim": self.latent_dim,
            "g_width": self.g_width,
            "d_width": self.d_width,
            "loss": self.loss,
            "d_dropout": self.d_dropout,
            "label_smoothing": self.label_smoothing,
            "d_steps": self.d_steps,
            "seed": self.seed,
        }
