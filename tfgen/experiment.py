"""Config -> data -> model: what `tfgen train`, `tfgen.build` and `tfgen bench` all start from.

`prepare(cfg, strategy)` opens the config's dataset, resolves its `auto` speed settings by
measurement (`speed_settings`, `tfgen.autotune`) and builds the registered model with its
optimizers (`build_model`); the config it returns records what `auto` chose. Nothing here
touches a run folder (`tfgen.runs`) or runs `fit` (`tfgen.training`).
"""

import dataclasses

import keras

from tfgen import autotune, distribute, fastconv
from tfgen.data import build_dataset
from tfgen.errors import ConfigError
from tfgen.models import get_model_class
from tfgen.optimizers import Adam


def prepare(cfg, strategy):
    """(model, data, cfg) for `cfg`: its dataset and its model, compiled, under `strategy`.

    `auto` speed settings are resolved first (by measurement, `tfgen.autotune`) and the
    returned config records what was chosen. Sets Keras' global seed and mixed-precision
    policy, as a run needs them. Shared by `tfgen train` and `tfgen.build`.
    """
    model_cls = get_model_class(cfg.model.name)
    data = build_dataset(
        cfg.data, seed=cfg.train.seed, require_labels=model_cls.needs_labels, domains=model_cls.domains
    )
    if cfg.eval.every_epochs and not model_cls.samples_from_noise:
        raise ConfigError(
            f"eval.every_epochs: scoring compares samples drawn from latents with real images; "
            f"{cfg.model.name} does not sample from latents: set eval.every_epochs: 0"
        )
    jit_compile, policy, grad = speed_settings(cfg, data, strategy)
    cfg = dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, jit_compile=jit_compile, mixed_precision=policy, conv_kernel_grad=grad),
    )
    keras.utils.set_random_seed(cfg.train.seed)  # after any timing runs, which draw initial weights
    keras.mixed_precision.set_global_policy(autotune.keras_policy(policy))
    with strategy.scope():
        model = build_model(cfg, data.image_shape, len(data.class_names), jit_compile, policy)
    data.require_steps(model.real_batches_per_step)
    return model, data, cfg


def steps_per_epoch(cfg, model, data):
    """Training steps in one epoch: `train.steps_per_epoch`, or one pass over the data."""
    return cfg.train.steps_per_epoch or data.steps_per_pass(model.real_batches_per_step)


def build_model(cfg, image_shape, num_classes, jit_compile, policy="none"):
    """The registered model with its optimizers, variables and optimizer slots all built.

    `policy` is the resolved mixed-precision policy, already set as Keras' global policy;
    convolutions take `tfgen.fastconv`'s kernel gradient if `train.conv_kernel_grad` is
    matmul (auto must be resolved first, else it means TensorFlow's).
    """
    cls = get_model_class(cfg.model.name)
    kwargs = dict(cfg.model.params, image_shape=image_shape, seed=cfg.train.seed)
    if cls.needs_labels:
        kwargs["num_classes"] = num_classes
    try:
        with fastconv.matmul_grad(cfg.train.conv_kernel_grad == "matmul"):
            model = cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"model ({cfg.model.name}): {exc}") from None
    train = cfg.train
    optimizers = {}
    for name in cls.optimizer_names:
        optimizer = Adam(learning_rate_for(name, train), beta_1=train.beta_1, beta_2=train.beta_2)
        if policy == "mixed_float16":  # float16 gradients need loss scaling
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizers[name] = optimizer
    model.compile(**optimizers, jit_compile=jit_compile)
    return model


def learning_rate_for(optimizer_name, train_cfg):
    """The configured rate of one optimizer: d_learning_rate for the discriminator's, if set."""
    if optimizer_name.startswith("d_") and train_cfg.d_learning_rate:
        return train_cfg.d_learning_rate
    return train_cfg.learning_rate


def speed_settings(cfg, data, strategy):
    """(jit_compile, mixed-precision policy, conv_kernel_grad) for this model on this device,
    `auto` resolved by measurement (`tfgen.autotune`, which builds throw-away copies of the
    model)."""
    key = {
        "model": {"name": cfg.model.name, **cfg.model.params},
        "image_shape": list(data.image_shape),
        "batch_size": cfg.data.batch_size,
        "replicas": strategy.num_replicas_in_sync,
    }

    def build(jit_compile, policy, grad="native"):
        with strategy.scope():
            grad_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, conv_kernel_grad=grad))
            return build_model(grad_cfg, data.image_shape, len(data.class_names), jit_compile, policy)

    def stream(model):
        return iter(strategy.experimental_distribute_dataset(data.stream(0, model.real_batches_per_step)))

    jit_options = distribute.jit_compile_options(cfg.train.jit_compile, strategy)
    grad = cfg.train.conv_kernel_grad
    if distribute.is_multi_worker(strategy):
        # Timed steps are collective: workers that measured (or cached) differently would
        # hang or compile different steps. Use the plain setting for whatever is auto.
        policy = "none" if cfg.train.mixed_precision == "auto" else cfg.train.mixed_precision
        return jit_options[0], policy, "native" if grad == "auto" else grad
    grad_options = [grad]
    if grad == "auto":
        grad_options = ["native"]
        if fastconv.available():  # worth timing only if some layer would take the products
            grad_options += ["matmul"] if fastconv.layers_taking_it(build(jit_options[0], "none", "matmul")) else []
    return autotune.resolve(jit_options, cfg.train.mixed_precision, key, build, stream, grad_options)
