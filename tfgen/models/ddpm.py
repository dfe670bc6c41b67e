"""Denoising diffusion (Ho et al. 2020) with the cosine schedule, sampled by DDIM or ancestrally.

An image x0 is corrupted to time t in [0, 1] as x_t = alpha(t) x0 + sigma(t) eps, with
alpha(t)^2 = alpha_bar(t) the cosine schedule of Nichol & Dhariwal 2021 and
sigma(t)^2 = 1 - alpha_bar(t) (`signal_and_noise`). The U-Net (`tfgen.models.unet`) predicts
either the noise eps (Ho et al.) or v = alpha eps - sigma x0 (Salimans & Ho 2022, better
behaved near pure noise): `prediction`. Sampling goes from t = 1 to 0 in `steps` steps:

- `ddim` (Song et al. 2021, eta = 0): deterministic; the same noise always gives the same
  image, and 25-50 steps are enough.
- `ddpm`: ancestral sampling (eta = 1, the DDPM posterior's noise at every step). The noise
  each step adds is drawn from a stateless generator seeded by the example's own starting
  noise (`step_noise`), so it too is a function of its noise alone, as the studio needs.

At every step the predicted x0 is clipped to [-1, 1] and eps recomputed from it. `cond_ddpm`
is the class-conditional variant with classifier-free guidance (`tfgen.models.denoising`).
"""

import math
from typing import Literal

import tensorflow as tf

from tfgen.models.denoising import DenoisingModel, loop
from tfgen.models.registry import register

COSINE_OFFSET = 0.008  # Nichol & Dhariwal's s: keeps the first steps' noise from being too small
MIN_ALPHA_BAR = 1e-4  # alpha_bar(1) would be 0: x0 = (x - sigma eps) / alpha needs alpha > 0
PREDICTIONS = ("epsilon", "v")


def cosine_alpha_bar(t):
    """Nichol & Dhariwal 2021: alpha_bar(t) = f(t) / f(0), f(t) = cos((t + s) / (1 + s) * pi / 2)^2,
    clipped below at MIN_ALPHA_BAR; t in [0, 1] (a float or a float32 tensor)."""
    t = tf.cast(t, tf.float32)
    f = tf.cos((t + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * math.pi / 2) ** 2
    f0 = math.cos(COSINE_OFFSET / (1.0 + COSINE_OFFSET) * math.pi / 2) ** 2
    return tf.clip_by_value(f / f0, MIN_ALPHA_BAR, 1.0)


def signal_and_noise(t):
    """(alpha, sigma) at time t: x_t = alpha x0 + sigma eps, alpha^2 + sigma^2 = 1."""
    alpha_bar = cosine_alpha_bar(t)
    return tf.sqrt(alpha_bar), tf.sqrt(1.0 - alpha_bar)


def target(images, noise, alpha, sigma, prediction):
    """What the network regresses: the noise ("epsilon") or v = alpha eps - sigma x0 ("v")."""
    return noise if prediction == "epsilon" else alpha * noise - sigma * images


def to_images_and_noise(predicted, x, alpha, sigma, prediction):
    """(x0, eps) that a prediction of `prediction` kind implies at the noisy images x."""
    if prediction == "epsilon":
        return (x - sigma * predicted) / alpha, predicted
    return alpha * x - sigma * predicted, sigma * x + alpha * predicted


def step_noise(noise, step):
    """Fresh N(0, I) noise for ancestral step `step`, one draw per example from a stateless
    generator seeded by the bits of that example's starting noise (its first two numbers):
    an example's image depends on its own noise only, not on its place in the batch."""
    flat = tf.reshape(noise, [tf.shape(noise)[0], -1])
    seeds = tf.cast(tf.bitcast(flat[:, :2], tf.int32), tf.int64)
    shape = tf.shape(noise)[1:]

    def draw(seed):
        return tf.random.stateless_normal(shape, seed=tf.random.experimental.stateless_fold_in(seed, step))

    return tf.map_fn(draw, seeds, fn_output_signature=tf.float32)


@register("ddpm")
class DDPM(DenoisingModel):
    """Cosine-schedule diffusion on a U-Net; samples by DDIM or ancestral DDPM (module doc).

    Args (the U-Net's, the EMA's and `sampling_steps` as in `DenoisingModel`):
        prediction: what the U-Net predicts: "epsilon" (the noise) or "v" (v-prediction).
        sampler: the default of the `sampler` sampling option: "ddim" or "ddpm".

    Examples:

    ```python
    model = DDPM(image_shape=(28, 28, 1), width=32, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(2e-4))
    model.fit(images, epochs=1)
    images = model.generate(model.sample_noise(16), steps=50)
    ```
    """

    samplers = ("ddim", "ddpm")

    def __init__(
        self,
        image_shape=(28, 28, 1),
        prediction: Literal["epsilon", "v"] = "v",
        sampler: Literal["ddim", "ddpm"] = "ddim",
        seed: int | None = None,
        **kwargs,
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
        self.prediction = prediction
        super().__init__(image_shape=image_shape, sampler=sampler, seed=seed, **kwargs)

    def corrupt(self, images, noise, t):
        alpha, sigma = signal_and_noise(self.per_image(t))
        return alpha * images + sigma * noise, target(images, noise, alpha, sigma, self.prediction)

    def sample(self, x, labels, steps, sampler, guidance):
        noise = x

        def step(i, x):
            # from time t down to s, predicting x0 and eps at t (DDIM's update; eta 1 for ddpm)
            t = 1.0 - tf.cast(i, tf.float32) / steps
            s = 1.0 - tf.cast(i + 1, tf.float32) / steps
            alpha_t, sigma_t = signal_and_noise(t)
            alpha_s, sigma_s = signal_and_noise(s)
            predicted = self.predict(x, t, labels, guidance)
            x0, _ = to_images_and_noise(predicted, x, alpha_t, sigma_t, self.prediction)
            x0 = tf.clip_by_value(x0, -1.0, 1.0)
            eps = (x - alpha_t * x0) / sigma_t
            if sampler == "ddim":
                return alpha_s * x0 + sigma_s * eps
            # the DDPM posterior's std: sigma_s / sigma_t * sqrt(1 - alpha_t^2 / alpha_s^2)
            c = sigma_s / sigma_t * tf.sqrt(tf.maximum(1.0 - (alpha_t / alpha_s) ** 2, 0.0))
            kept = tf.sqrt(tf.maximum(sigma_s**2 - c**2, 0.0))
            return alpha_s * x0 + kept * eps + c * step_noise(noise, i)

        return loop(steps, step, x)

    def get_config(self):
        return {**super().get_config(), "prediction": self.prediction}


@register("cond_ddpm")
class CondDDPM(DDPM):
    """Class-conditional DDPM with classifier-free guidance (`label_dropout`, `guidance`):
    sample grids show one row per class."""

    needs_labels = True
    shared_options = DDPM.shared_options + DenoisingModel.conditional_options
