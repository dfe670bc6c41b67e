"""DCGAN (Radford et al. 2016), the convolutional GAN every other GAN here extends.

`train_step` is the papers' algorithm box, numbered: `d_steps` discriminator updates, each on
its own real batch and fresh fakes; one generator update on the last fakes, through the
updated discriminator; the EMA of G; the metrics. A GAN built on this class changes the step
through hooks, not by copying it: its networks (`build_generator_network`,
`build_discriminator_network`, `run_generator`, `discriminate`: the conditional GANs'
labels), `discriminator_penalty` (WGAN-GP's gradient penalty), `generator_loss` (top-k, the
threshold rule, BigGAN's orthogonal regularisation) and `augment` (DiffAugment).
The classic stabilisers are options: the loss, D's normalisation, dropout, one-sided label
smoothing, an exponential moving average of G (used for samples and export), DiffAugment,
instance noise on D's inputs and resetting D every few epochs.
"""

import random
from typing import Literal

import keras
import tensorflow as tf

from tfgen import augment, layers, losses
from tfgen.models import ema
from tfgen.models.base import GenerativeModel
from tfgen.models.registry import register


@register("dcgan")
class DCGAN(GenerativeModel):
    """Generator + discriminator trained with a GAN loss; `model(z)` generates images.

    Args:
        image_shape: (size, size, channels) of the training images, size as in
            `tfgen.layers.resolution_plan` (28, 32, 64, 128, ...).
        latent_dim: size of the N(0, I) latent vector z.
        g_width, d_width: channels of G's last and D's first convolution; the other
            layers double from there (the paper's ngf / ndf).
        loss: "non_saturating" (the paper's), "hinge" or "least_squares" (LSGAN).
        d_norm: D's normalisation: "batch", "spectral", "layer" or "none".
        d_dropout: dropout rate after every activation in D (0 disables it).
        label_smoothing: one-sided: D's target for real images is 1 - label_smoothing.
        d_steps: discriminator updates per generator update, each on a fresh real batch
            (as in Gulrajani et al.): `train_step` takes d_steps batches concatenated, so
            one step (and one epoch) consumes d_steps times as many images.
        ema_decay: if > 0, samples and exports use an exponential moving average of G's
            weights with this decay (e.g. 0.999), updated after every G step.
        diffaugment: DiffAugment policy, e.g. "color,translation,cutout"; "" disables it.
        seed: seeds the latent draws inside `train_step` (state saved with checkpoints).
        top_k: top-k training (Sinha et al. 2020): G's loss is averaged over only the k fakes
            D rates most real. k starts at the whole batch and is multiplied by `top_k_decay`
            every epoch, down to `top_k_min` of the batch. Under `tf.distribute` each
            replica selects among its own share of the batch.
        g_threshold: the seed project's rule, a fraction T in [0, 0.5] of the batch (0 turns
            it off; non-saturating loss only): in G's step the T fakes D rates highest get
            the target 1, the T it rates lowest 0, the rest 0.5 (`g_threshold_rule:
            reward_punish`); or the later variant (`soft`): the worst T get 0.5, the rest 0.95.
        g_upsample: how G doubles its resolution: "transposed" (the paper's 4 x 4 stride-2
            transposed convolutions) or "resize" (nearest-neighbour resize + 3 x 3
            convolution, free of the checkerboard lattice; see `tfgen.layers.build_generator`).
        d_minibatch_std: give D ProGAN's minibatch standard deviation feature
            (`tfgen.layers.MinibatchStdDev`), so it can see a batch of fakes repeat itself.
        d_depth: convolutions per D resolution stage: 1 is DCGAN's; more adds stride-1 3x3
            convolutions after each downsampling, as the SNGAN paper's D has (see
            `tfgen.layers.discriminator_body` for what they did on the Pokemon art).
        instance_noise: std of Gaussian noise added to every image D sees, real and fake
            (Sonderby et al. 2017; Arjovsky & Bottou 2017), falling linearly to 0 over
            `instance_noise_steps` G updates; 0 disables it.
        reset_d_every: re-initialise D and its optimizer's state every this many epochs
            (`reset_discriminator`), so a D that has won starts over against the current G;
            0 never resets it.
    """

    # Options every GAN built on this class accepts through **kwargs (the registry adds them
    # to a subclass's config schema), so they need not be repeated in every constructor.
    shared_options = (
        "top_k",
        "top_k_decay",
        "top_k_min",
        "g_threshold",
        "g_threshold_rule",
        "g_upsample",
        "d_minibatch_std",
        "d_depth",
        "instance_noise",
        "instance_noise_steps",
        "reset_d_every",
    )

    optimizer_names = {"d_optimizer": ("discriminator",), "g_optimizer": ("generator",)}
    metric_names = ("d_loss", "g_loss", "real_score", "fake_score")

    def __init__(
        self,
        image_shape=(32, 32, 1),
        latent_dim: int = 100,
        g_width: int = 64,
        d_width: int = 64,
        loss: Literal["non_saturating", "hinge", "least_squares"] = "non_saturating",
        d_norm: Literal["batch", "spectral", "layer", "none"] = "batch",
        d_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        d_steps: int = 1,
        ema_decay: float = 0.0,
        diffaugment: str = "",
        seed: int | None = None,
        num_classes=0,
        top_k: bool = False,
        top_k_decay: float = 0.99,
        top_k_min: float = 0.5,
        g_threshold: float = 0.0,
        g_threshold_rule: Literal["reward_punish", "soft"] = "reward_punish",
        g_upsample: Literal["transposed", "resize"] = "transposed",
        d_minibatch_std: bool = False,
        d_depth: int = 1,
        instance_noise: float = 0.0,
        instance_noise_steps: int = 10000,
        reset_d_every: int = 0,
        **kwargs,
    ):
        super().__init__(
            image_shape=image_shape,
            latent_dim=latent_dim,
            seed=seed,
            metric_names=self.metric_names,
            num_classes=num_classes,
            **kwargs,
        )
        if not 0 < top_k_decay <= 1 or not 0 < top_k_min <= 1:
            raise ValueError(f"top_k_decay and top_k_min must be in (0, 1], got {top_k_decay}, {top_k_min}")
        if not 0 <= g_threshold <= 0.5:
            raise ValueError(f"g_threshold must be a fraction of the batch in [0, 0.5], got {g_threshold}")
        if g_threshold and top_k:
            raise ValueError("top_k and g_threshold are two ways to weight G's fakes; choose one")
        if g_threshold and loss != "non_saturating":
            raise ValueError(f"g_threshold sets binary cross-entropy targets: it needs loss non_saturating, not {loss}")
        self.top_k = top_k
        self.top_k_decay = top_k_decay
        self.top_k_min = top_k_min
        self.g_threshold = g_threshold
        self.g_threshold_rule = g_threshold_rule
        layers.check_upsample(g_upsample, "g_upsample")
        self.g_upsample = g_upsample
        self.d_minibatch_std = d_minibatch_std
        self.d_depth = d_depth
        if instance_noise < 0:
            raise ValueError(f"instance_noise must be a standard deviation >= 0 (0 disables it), got {instance_noise}")
        if instance_noise_steps < 1:
            raise ValueError(f"instance_noise_steps must be an integer >= 1, got {instance_noise_steps}")
        if reset_d_every < 0:
            raise ValueError(f"reset_d_every must be a number of epochs >= 0 (0 never resets D), got {reset_d_every}")
        self.instance_noise = instance_noise
        self.instance_noise_steps = instance_noise_steps
        self.reset_d_every = reset_d_every
        if reset_d_every:  # the epoch D was last reset at (checkpointed, so a resume does not repeat it)
            self.last_d_reset = keras.Variable(0, dtype="int64", trainable=False, name="last_d_reset")
        if top_k:  # the fraction of the batch kept this epoch (set by begin_epoch; checkpointed)
            self.top_k_fraction = keras.Variable(1.0, trainable=False, name="top_k_fraction")
        for name, value in (("g_width", g_width), ("d_width", d_width), ("d_steps", d_steps), ("d_depth", d_depth)):
            if value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value}")
        if not 0 <= d_dropout < 1:
            raise ValueError(f"d_dropout must be in [0, 1), got {d_dropout}")
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0 disables it), got {ema_decay}")
        self.g_width = g_width
        self.d_width = d_width
        self.loss = loss
        self.d_norm = d_norm
        self.d_dropout = d_dropout
        self.label_smoothing = label_smoothing
        self.d_steps = d_steps
        self.ema_decay = ema_decay
        self.diffaugment = diffaugment
        self._policy = augment.parse_policy(diffaugment)
        self._d_loss, self._g_loss = losses.gan_loss(loss)
        self.generator = self.build_generator_network("generator")
        self.discriminator = self.build_discriminator_network()
        if ema_decay:
            self.ema_generator = self.build_generator_network("ema_generator")
            self.ema_generator.set_weights(self.generator.get_weights())
        self.built = True

    # -- networks: conditional models override these four ----------------------------------

    def build_generator_network(self, name):
        return layers.build_generator(self.latent_dim, self.image_shape, self.g_width, name, self.g_upsample)

    def build_discriminator_network(self):
        return layers.build_discriminator(
            self.image_shape,
            self.d_width,
            self.d_dropout,
            self.d_norm,
            minibatch_std=self.d_minibatch_std,
            depth=self.d_depth,
        )

    def run_generator(self, network, z, labels, training):
        return network(z, training=training)

    def discriminate(self, images, labels, training=True):
        return self.discriminator(images, training=training)

    # -- the training step -----------------------------------------------------------------

    @property
    def real_batches_per_step(self):
        return self.d_steps

    def train_step(self, data):
        """One step of the alternating algorithm (Goodfellow et al. 2014, Algorithm 1).

        `data` holds `d_steps` real batches concatenated (see `real_batches_per_step`), so each
        discriminator update has real images of its own (Gulrajani et al. 2017). G learns from
        the fakes of the last D update, as in the PyTorch DCGAN example: G runs forward once per
        D update and not again for its own, and its gradient still goes through the freshly
        updated D, as in the paper.
        """
        reals, labels = self.split_real_batches(data)
        batch_size = tf.shape(reals[0])[0]

        # 1. Train the discriminator d_steps times, each time on a real batch of its own and
        #    fresh fakes. G's forward pass is taped: step 2 differentiates the last one.
        for real, label in zip(reals, labels):
            with tf.GradientTape() as g_tape:
                fake = self.run_generator(self.generator, self.sample_latent(batch_size), label, training=True)
            seen_real, seen_fake = self.augment(real), self.augment(tf.stop_gradient(fake))
            with tf.GradientTape() as d_tape:
                real_logits, fake_logits = self.discriminate_pair(seen_real, seen_fake, label)
                penalty, penalty_logs = self.discriminator_penalty(seen_real, seen_fake, label)
                d_loss = self.global_mean(self._d_loss(real_logits, fake_logits, self.label_smoothing) + penalty)
            self.apply_update("d_optimizer", d_tape, d_loss)

        # 2. Train the generator on those last fakes, through the updated discriminator.
        with g_tape:  # resumes recording after G's forward pass in step 1
            g_loss = self.generator_loss(fake, label)
        self.apply_update("g_optimizer", g_tape, g_loss)

        # 3. Move the EMA generator (what samples and exports use) toward G.
        self.update_ema()

        # 4. Update and return the metrics' running means (D's from its last update).
        return self.update_trackers(
            {
                "d_loss": d_loss,
                "g_loss": g_loss,
                "real_score": self.global_mean(tf.sigmoid(real_logits)),
                "fake_score": self.global_mean(tf.sigmoid(fake_logits)),
                **penalty_logs,
            }
        )

    def split_real_batches(self, data):
        """The `d_steps` real batches of one step and their labels (None each when unconditional)."""
        real, labels = data if isinstance(data, (tuple, list)) else (data, None)
        if real.shape[0] is not None and real.shape[0] % self.d_steps:
            raise ValueError(
                f"train_step takes d_steps = {self.d_steps} real batches concatenated (one per critic "
                f"update), so a multiple of {self.d_steps} images; got {real.shape[0]}"
            )
        label_batches = tf.split(labels, self.d_steps) if self.needs_labels else [None] * self.d_steps
        return tf.split(real, self.d_steps), label_batches

    # -- the step's hooks: what a GAN built on this class overrides ------------------------

    def augment(self, images):
        """What D sees of a batch: DiffAugment with a fresh seed (when a policy is set), then
        instance noise of std `instance_noise_std()` (when `instance_noise` is set)."""
        images = augment.diff_augment(images, self._policy, self.next_seed()) if self._policy else images
        if self.instance_noise:  # on every image D sees, in D's updates and in G's
            noise = tf.random.stateless_normal(tf.shape(images), seed=self.next_seed(), dtype=images.dtype)
            images = images + tf.cast(self.instance_noise_std(), images.dtype) * noise
        return images

    def discriminate_pair(self, real, fake, labels):
        """D's logits on the real and the fake batch, from one D pass over both concatenated.

        Exact: BatchNorm layers (`tfgen.layers.BatchNormalization`) normalise each half with its own
        statistics inside `batch_parts(2)`, so real and fake statistics never mix, and every
        other normalisation is per example. One large convolution is faster than two small.
        """
        both_labels = None if labels is None else tf.concat([labels, labels], 0)
        with layers.batch_parts(2):
            return tf.split(self.discriminate(tf.concat([real, fake], 0), both_labels), 2)

    def discriminator_penalty(self, real, fake, labels):
        """Extra per-example D loss terms and their metrics; WGAN-GP adds its gradient penalty.

        Called on D's tape with the (augmented) images D's update sees."""
        return 0.0, {}

    def generator_loss(self, fake, labels=None):
        """G's loss share on fakes that are still connected to G (D is not updated), over
        the top-k fakes or with the threshold rule's targets when those are on."""
        logits = self.discriminate(self.augment(fake), labels)
        if self.g_threshold:
            return self.global_mean(self.threshold_loss(logits))
        per_example = self._g_loss(logits)
        if not self.top_k:
            return self.global_mean(per_example)
        batch = tf.shape(per_example)[0]
        k = tf.maximum(1, tf.cast(tf.round(self.top_k_fraction * tf.cast(batch, tf.float32)), tf.int32))
        # the k fakes D rates most real, by rank (a mask, not tf.math.top_k: XLA needs a static k)
        chosen = tf.cast(_ranks(tf.stop_gradient(_scores(logits))) < k, tf.float32)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return tf.reduce_sum(per_example * chosen) / tf.cast(k * replicas, tf.float32)

    def threshold_loss(self, logits):
        """The seed's rule: per-example BCE against targets set by D's ranking of the fakes."""
        scores = tf.stop_gradient(_scores(logits))
        batch = tf.shape(scores)[0]
        count = tf.cast(tf.floor(self.g_threshold * tf.cast(batch, tf.float32)), tf.int32)
        rank = _ranks(scores)
        best, worst = rank < count, rank >= batch - count
        if self.g_threshold_rule == "reward_punish":
            targets = tf.where(best, 1.0, tf.where(worst, 0.0, 0.5))
        else:  # "soft": the later variant
            targets = tf.where(worst, 0.5, 0.95)
        flat = tf.reshape(tf.cast(logits, tf.float32), [batch, -1])
        targets = tf.broadcast_to(targets[:, None], tf.shape(flat))
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=flat), axis=1)

    def update_ema(self):
        """Move the EMA generator toward G (`tfgen.models.ema.update`), with the warm-up of
        `ema_decay_at`; nothing when `ema_decay` is 0."""
        if self.ema_decay:
            ema.update(self.ema_generator, self.generator, self.ema_decay_at(self.g_optimizer.iterations))

    def ema_decay_at(self, updates):
        """The decay after `updates` G updates (`tfgen.models.ema.decay_at`)."""
        return ema.decay_at(self.ema_decay, updates)

    # -- stabilisers: instance noise and discriminator resets ------------------------------

    def instance_noise_std(self):
        """The std of the instance noise this step: `instance_noise` at the first G update,
        falling linearly to 0 at `instance_noise_steps` G updates (and 0 from then on)."""
        if not self.instance_noise:
            return tf.constant(0.0)
        done = tf.cast(self.g_optimizer.iterations, tf.float32) / float(self.instance_noise_steps)
        return self.instance_noise * tf.maximum(0.0, 1.0 - done)

    def begin_epoch(self, epoch):
        """Top-k's k for the 0-based `epoch` (top_k_decay ** epoch of the batch, at least
        top_k_min), and D's reset every `reset_d_every` epochs."""
        if self.top_k:
            self.top_k_fraction.assign(max(self.top_k_min, self.top_k_decay**epoch))
        # the epoch of the last reset is checkpointed, so a run resumed inside a reset epoch
        # does not reset D a second time
        if self.reset_d_every and epoch and not epoch % self.reset_d_every and int(self.last_d_reset.numpy()) < epoch:
            self.reset_discriminator(epoch)
            self.last_d_reset.assign(epoch)

    def reset_discriminator(self, epoch=0):
        """Re-initialise D's weights and its optimizer's state, leaving G (and its optimizer) alone.

        The new weights are those a freshly built D draws, from a seed fixed by the model's
        seed and `epoch` (so a resumed run resets to the same D); the optimizer's moments and
        update count are those of a new optimizer of the same configuration, its learning
        rate (set by the run's schedule) kept. Under mixed_float16 the loss scale is kept too.
        """
        state = random.getstate()
        random.seed(f"tfgen-reset-d-{self.seed}-{epoch}")  # Keras draws unseeded initializers' seeds here
        try:
            fresh = self.build_discriminator_network()
        finally:
            random.setstate(state)
        self.discriminator.set_weights(fresh.get_weights())
        optimizer = getattr(self.d_optimizer, "inner_optimizer", self.d_optimizer)
        new = type(optimizer).from_config(optimizer.get_config())
        new.build(self.discriminator.trainable_variables)
        for variable, initial in zip(optimizer.variables, new.variables):
            if not variable.path.endswith("/learning_rate"):
                variable.assign(initial)

    # -- sampling and export ---------------------------------------------------------------

    @property
    def export_networks(self):
        return ("ema_generator",) if self.ema_decay else ("generator",)

    def generate(self, z, labels=None, training=False):
        """Images in [-1, 1] for latents z (from the EMA generator when enabled)."""
        network = self.ema_generator if self.ema_decay else self.generator
        return self.run_generator(network, z, labels, training)

    def get_config(self):
        return {
            **super().get_config(),
            "g_width": self.g_width,
            "d_width": self.d_width,
            "loss": self.loss,
            "d_norm": self.d_norm,
            "d_dropout": self.d_dropout,
            "label_smoothing": self.label_smoothing,
            "d_steps": self.d_steps,
            "ema_decay": self.ema_decay,
            "diffaugment": self.diffaugment,
            "top_k": self.top_k,
            "top_k_decay": self.top_k_decay,
            "top_k_min": self.top_k_min,
            "g_threshold": self.g_threshold,
            "g_threshold_rule": self.g_threshold_rule,
            "g_upsample": self.g_upsample,
            "d_minibatch_std": self.d_minibatch_std,
            "d_depth": self.d_depth,
            "instance_noise": self.instance_noise,
            "instance_noise_steps": self.instance_noise_steps,
            "reset_d_every": self.reset_d_every,
        }


def _ranks(scores):
    """Each example's rank by score, 0 for the one D rates most real."""
    return tf.argsort(tf.argsort(scores, direction="DESCENDING", stable=True), stable=True)


def _scores(logits):
    """One realness score per example (the mean over a patch map's logits)."""
    return tf.reduce_mean(tf.reshape(tf.cast(logits, tf.float32), [tf.shape(logits)[0], -1]), axis=1)
