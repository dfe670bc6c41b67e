"""Flow matching on the straight path: rectified flow (Liu et al. 2023; Lipman et al. 2023).

An image x0 and its noise eps are joined by a straight line, x_t = (1 - t) x0 + t eps, along
which the velocity dx_t/dt = eps - x0 is constant. The U-Net (`tfgen.models.unet`, the one
`ddpm` uses) regresses that velocity from (x_t, t); sampling integrates dx/dt = v(x, t) from
pure noise at t = 1 back to t = 0 in `steps` steps:

- `euler`: x <- x - dt v(x, t), one network call per step;
- `heun`: Euler's step, then the average of the velocities at both ends (second order, two
  calls per step).

Both are deterministic: the same noise gives the same image. `cond_flow_matching` is the
class-conditional variant with classifier-free guidance (`tfgen.models.denoising`).
"""

from typing import Literal

import tensorflow as tf

from tfgen.models.denoising import DenoisingModel, loop
from tfgen.models.registry import register


def euler(velocity, x, steps):
    """x integrated from t = 1 to 0 along `velocity(x, t)` in `steps` Euler steps."""
    dt = 1.0 / steps

    def step(i, x):
        t = 1.0 - tf.cast(i, tf.float32) * dt
        return x - dt * velocity(x, t)

    return loop(steps, step, x)


def heun(velocity, x, steps):
    """x integrated from t = 1 to 0 along `velocity(x, t)` in `steps` Heun steps."""
    dt = 1.0 / steps

    def step(i, x):
        t = 1.0 - tf.cast(i, tf.float32) * dt
        v = velocity(x, t)
        v_next = velocity(x - dt * v, t - dt)
        return x - dt * 0.5 * (v + v_next)

    return loop(steps, step, x)


SAMPLERS = {"euler": euler, "heun": heun}


@register("flow_matching")
class FlowMatching(DenoisingModel):
    """Rectified flow on a U-Net: velocity regression on straight paths (module doc).

    Args (the U-Net's, the EMA's and `sampling_steps` as in `DenoisingModel`):
        sampler: the default of the `sampler` sampling option: "euler" or "heun".

    Examples:

    ```python
    model = FlowMatching(image_shape=(28, 28, 1), width=32, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(2e-4))
    model.fit(images, epochs=1)
    images = model.generate(model.sample_noise(16), steps=10, sampler="heun")
    ```
    """

    samplers = tuple(SAMPLERS)

    def __init__(
        self,
        image_shape=(28, 28, 1),
        sampler: Literal["euler", "heun"] = "euler",
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(image_shape=image_shape, sampler=sampler, seed=seed, **kwargs)

    def corrupt(self, images, noise, t):
        t = self.per_image(t)
        return (1.0 - t) * images + t * noise, noise - images

    def sample(self, x, labels, steps, sampler, guidance):
        return SAMPLERS[sampler](lambda x, t: self.predict(x, t, labels, guidance), x, steps)


@register("cond_flow_matching")
class CondFlowMatching(FlowMatching):
    """Class-conditional flow matching with classifier-free guidance (`label_dropout`,
    `guidance`): sample grids show one row per class."""

    needs_labels = True
    shared_options = FlowMatching.shared_options + DenoisingModel.conditional_options
