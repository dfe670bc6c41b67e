"""What diffusion (`tfgen.models.ddpm`) and flow matching (`tfgen.models.flow_matching`) share.

Both train one U-Net (`tfgen.models.unet`) to predict, from an image corrupted to a random
time t in [0, 1] (t = 0: the image, t = 1: pure noise), something that points back to the
data, and both sample by stepping image-shaped noise from t = 1 down to t = 0 in `steps`
network calls. This base class holds everything but the corruption and the sampler:

- the U-Net and its exponential moving average (`ema_unet`, moved by `tfgen.models.ema`, the
  GANs' EMA), which samples and exports use;
- image-shaped noise (`noise_shape` = the image shape) and the sampling options `steps`,
  `sampler` and, for the conditional subclasses, `guidance`, declared in `sampling_options`
  with the defaults the config sets (`sampling_steps`, `sampler`, `guidance`);
- classifier-free guidance (Ho & Salimans 2022) for the conditional ones: in training each
  label is replaced by the "no label" class `num_classes` with probability `label_dropout`;
  sampling with `guidance` w predicts p_c + w (p_c - p_u) from the conditional and
  unconditional predictions (w = 0: plain conditional sampling);
- the training step: noise and time drawn, `corrupt` (the family's forward process and
  regression target), a squared error, one Adam update, the EMA.

A family subclasses it and defines `corrupt(images, noise, t)` and `sample(x, labels, steps,
sampler, guidance)`, and lists its samplers in `samplers`.
"""

import tensorflow as tf

from tfgen.models import ema, unet
from tfgen.models.base import GenerativeModel


class DenoisingModel(GenerativeModel):
    """A U-Net trained to denoise, sampled from image-shaped noise in `steps` calls (module doc).

    Args:
        image_shape: (size, size, channels); size divisible by 2**(levels - 1).
        width: channels at full resolution; each lower level doubles them (32-64-128 for
            width 32 and 3 levels, keras-io DDIM's scale).
        levels: resolutions of the U-Net (3: 28, 14 and 7 px at 28 px).
        block_depth: residual blocks per level on the way down and on the way up.
        attention: self-attention at the lowest resolution.
        ema_decay: samples and exports use an exponential moving average of the U-Net's
            weights with this decay (0 disables it: the trained weights are used).
        sampling_steps: the default of the `steps` sampling option: network calls per sample
            (Heun's sampler makes two per step).
        label_dropout: conditional models: the fraction of training labels replaced by "no
            label", so one network also learns the unconditional prediction guidance needs.
        guidance: conditional models: the default of the `guidance` sampling option, the
            classifier-free guidance scale w (0: no guidance).
        seed: seeds the noise and times drawn inside `train_step`.
    """

    optimizer_names = {"optimizer": ("unet",)}
    metric_names = ("loss",)
    # The U-Net's options, which every family accepts through **kwargs (the registry lists
    # them in each one's config schema); conditional families add the guidance options.
    shared_options = ("width", "levels", "block_depth", "attention", "ema_decay", "sampling_steps")
    conditional_options = ("label_dropout", "guidance")
    samplers: tuple = ()

    def __init__(
        self,
        image_shape=(28, 28, 1),
        width: int = 32,
        levels: int = 3,
        block_depth: int = 2,
        attention: bool = False,
        ema_decay: float = 0.999,
        sampling_steps: int = 25,
        sampler: str = "",
        label_dropout: float = 0.1,
        guidance: float = 2.0,
        seed: int | None = None,
        num_classes=0,
        **kwargs,
    ):
        super().__init__(image_shape, 0, seed, self.metric_names, num_classes, **kwargs)
        for name, value in (("width", width), ("block_depth", block_depth), ("sampling_steps", sampling_steps)):
            if value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value}")
        unet.check_levels(self.image_shape[0], levels)
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0 disables it), got {ema_decay}")
        if sampler not in self.samplers:
            raise ValueError(f"sampler must be one of {', '.join(self.samplers)}, got {sampler!r}")
        if self.needs_labels:
            if num_classes < 2:
                raise ValueError(f"a conditional model needs at least 2 classes, the data has {num_classes}")
            if not 0 <= label_dropout < 1:
                raise ValueError(f"label_dropout must be a fraction in [0, 1), got {label_dropout}")
            if guidance < 0:
                raise ValueError(f"guidance must be a scale >= 0 (0: no guidance), got {guidance}")
        self.width = width
        self.levels = levels
        self.block_depth = block_depth
        self.attention = attention
        self.ema_decay = ema_decay
        self.sampling_steps = sampling_steps
        self.sampler = sampler
        self.label_dropout = label_dropout
        self.guidance = guidance
        self._sampling_functions = {}  # (steps, sampler, guidance) -> tf.function
        self.unet = self.build_unet("unet")
        if ema_decay:
            self.ema_unet = self.build_unet("ema_unet")
            self.ema_unet.set_weights(self.unet.get_weights())
        self.built = True

    def build_unet(self, name):
        classes = self.num_classes if self.needs_labels else 0
        return unet.build_unet(
            self.image_shape, self.width, self.levels, self.block_depth, self.attention, classes, name
        )

    # === The contract ===

    @property
    def noise_shape(self):
        return self.image_shape

    @property
    def sampling_options(self):
        options = {"steps": self.sampling_steps, "sampler": self.sampler}
        if self.needs_labels:
            options["guidance"] = self.guidance
        return options

    @property
    def sampling_calls(self):
        return self.sampling_steps

    @property
    def export_networks(self):
        return ("ema_unet",) if self.ema_decay else ("unet",)

    def generate(self, noise, labels=None, training=False, steps=None, sampler=None, guidance=None):
        """Images in [-1, 1] from image-shaped noise [N, H, W, C] (and labels [N] when
        conditional), in `steps` steps of `sampler` with guidance scale `guidance`; each
        option defaults to its `sampling_options` value. The same noise (and options) give
        the same images, whatever else is in the batch."""
        steps = self.sampling_steps if steps is None else steps
        sampler = self.sampler if sampler is None else sampler
        guidance = (self.guidance if guidance is None else guidance) if self.needs_labels else 0.0
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if sampler not in self.samplers:
            raise ValueError(f"sampler must be one of {', '.join(self.samplers)}, got {sampler!r}")
        if not guidance >= 0:
            raise ValueError(f"guidance must be a scale >= 0, got {guidance!r}")
        x = tf.convert_to_tensor(noise, tf.float32)
        inputs = (x, tf.cast(tf.convert_to_tensor(labels), tf.int32)) if self.needs_labels else (x,)
        return self.sampling_function(steps, sampler, float(guidance))(*inputs)

    def sampling_function(self, steps, sampler, guidance):
        """The sampler for these options as a `tf.function` of (noise[, labels]), traced once
        per option set with the export signature's shapes: eager sampling would be slow, and
        this way Python runs the same graph as the SavedModel, so both give the same image."""
        key = (steps, sampler, guidance)
        if key not in self._sampling_functions:
            specs = [tf.TensorSpec([None, *self.image_shape], tf.float32)]
            if self.needs_labels:
                specs.append(tf.TensorSpec([None], tf.int32))

            def run(x, labels=None):
                return tf.clip_by_value(self.sample(x, labels, steps, sampler, guidance), -1.0, 1.0)

            self._sampling_functions[key] = tf.function(run, input_signature=specs, autograph=False)
        return self._sampling_functions[key]

    def call(self, noise, training=False):
        return self.generate(noise, training=training)

    # === The family's parts ===

    def corrupt(self, images, noise, t):
        """(noisy images at times t [B], the network's regression target)."""
        raise NotImplementedError

    def sample(self, x, labels, steps, sampler, guidance):
        """Step noise x (t = 1) to images (t = 0) with `predict`."""
        raise NotImplementedError

    def predict(self, x, t, labels=None, guidance=0.0):
        """The sampling network's prediction at images x and time t (a scalar), guided with
        scale `guidance` (p_c + w (p_c - p_u)) when conditional and `guidance` > 0."""
        network = self.ema_unet if self.ema_decay else self.unet
        batch = tf.shape(x)[0]
        times = tf.fill([batch], tf.cast(t, tf.float32))
        if not self.needs_labels:
            return network([x, times], training=False)
        if not guidance:
            return network([x, times, labels], training=False)
        unlabelled = tf.fill([batch], self.num_classes)
        both = network(
            [tf.concat([x, x], 0), tf.concat([times, times], 0), tf.concat([labels, unlabelled], 0)], training=False
        )
        conditional, unconditional = tf.split(both, 2)
        return conditional + guidance * (conditional - unconditional)

    # === Training ===

    def train_step(self, data):
        """One denoising regression step (Ho et al. 2020, Algorithm 1; Liu et al. 2023)."""
        images, labels = data if isinstance(data, (tuple, list)) else (data, None)
        images = tf.cast(images, tf.float32)
        batch = tf.shape(images)[0]

        # 1. Draw each image's noise and time, and corrupt the image to that time.
        noise = tf.random.stateless_normal(tf.shape(images), seed=self.next_seed())
        t = tf.random.stateless_uniform([batch], seed=self.next_seed())
        noisy, target = self.corrupt(images, noise, t)
        inputs = [noisy, t]
        if self.needs_labels:
            # 2. Classifier-free guidance: hide a fraction of the labels ("no label" = num_classes).
            dropped = tf.random.stateless_uniform([batch], seed=self.next_seed()) < self.label_dropout
            inputs.append(tf.where(dropped, self.num_classes, tf.cast(labels, tf.int32)))

        # 3. Regress the target from the noisy images, and update the U-Net.
        with tf.GradientTape() as tape:
            prediction = self.unet(inputs, training=True)
            loss = self.global_mean(tf.square(tf.cast(prediction, tf.float32) - target))
        self.apply_update("optimizer", tape, loss)

        # 4. Move the EMA U-Net (what samples and exports use) toward the trained one.
        if self.ema_decay:
            ema.update(self.ema_unet, self.unet, ema.decay_at(self.ema_decay, self.optimizer.iterations))

        # 5. Update and return the loss's running mean.
        return self.update_trackers({"loss": loss})

    @staticmethod
    def per_image(t):
        """Times [B] -> [B, 1, 1, 1], to scale images."""
        return tf.reshape(tf.cast(t, tf.float32), [-1, 1, 1, 1])

    def get_config(self):
        config = {
            **super().get_config(),
            "width": self.width,
            "levels": self.levels,
            "block_depth": self.block_depth,
            "attention": self.attention,
            "ema_decay": self.ema_decay,
            "sampling_steps": self.sampling_steps,
            "sampler": self.sampler,
        }
        config.pop("latent_dim")  # no flat latent: the noise is image-shaped
        if self.needs_labels:
            config.update(label_dropout=self.label_dropout, guidance=self.guidance)
        return config


def loop(steps, body, x):
    """x after body(i, x) for i = 0 .. steps - 1, as a `tf.while_loop` (one traced network
    call however many steps, so an export does not unroll the sampler)."""
    _, x = tf.while_loop(lambda i, x: i < steps, lambda i, x: (i + 1, body(i, x)), (tf.constant(0), x))
    return x
