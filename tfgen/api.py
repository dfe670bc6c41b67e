"""tfgen from other Python code: `tfgen.load` a trained model, `tfgen.build` one to train.

    sampler = tfgen.load("runs/digits_dcgan")            # or a .keras file, or a SavedModel folder
    sampler = tfgen.load("preset:mnist5k_dcgan")         # a pretrained preset (`tfgen presets`)
    images = sampler.sample(16, seed=1)                   # float32 [16, H, W, C] in [-1, 1]
    experiment = tfgen.build("digits_dcgan.yaml", train={"learning_rate": 1e-4})
    experiment.model.fit(experiment.dataset, steps_per_epoch=experiment.steps_per_epoch, epochs=3)

Both go through what the commands use (`tfgen.sampling.Sampler`, `tfgen.experiment.prepare`), so a
notebook gets the same models, data and numerics as `tfgen train` and `tfgen generate`.
"""

import dataclasses
from pathlib import Path

from tfgen import distribute
from tfgen.config import Config, config_from_dict, load_config
from tfgen.errors import ConfigError, RunError


def load(path):
    """A trained generator, ready to `sample(n, seed=..., label=...)`, from any of:

    - a run folder (`runs/<name>`, with its config.yaml and model.keras),
    - a `.keras` file (a run's model.keras, or a `tfgen export --format keras` folder's),
    - an exported SavedModel folder (`runs/<name>/saved_model`, `tfgen export`), which needs
      no tfgen model code,
    - a preset: `"preset:NAME"` for one shipped with tfgen (`tfgen presets` lists them), or a
      preset folder (preset.json and saved_model/; see `tfgen.presets`).

    Returns a `tfgen.sampling.Sampler`; its `model` is the `keras.Model` (run, .keras) whose
    networks (`model.generator`, ...) other Keras code can reuse, or the loaded SavedModel.
    """
    from tfgen import presets  # noqa: PLC0415  (keeps `import tfgen` light)
    from tfgen.sampling import Sampler  # noqa: PLC0415

    if presets.is_handle(path) or (Path(path) / presets.METADATA).is_file():
        return presets.resolve(path).sampler()
    path = Path(path)
    if path.is_dir() and (path / "config.yaml").is_file():
        return Sampler.from_run(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return Sampler.from_export(path)
    if path.is_dir() and (path / "model.keras").is_file():
        return Sampler.from_keras(path / "model.keras")
    if path.is_file() and path.suffix == ".keras":
        return Sampler.from_keras(path)
    raise RunError(
        f"tfgen.load: {path} is not a run folder (config.yaml), a .keras file, an exported "
        "SavedModel folder (saved_model.pb) or a preset (preset:NAME; tfgen presets lists them)"
        + ("" if path.exists() else "; it does not exist")
    )


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What `build` returns: everything a notebook needs to call `fit` itself.

    `model` is compiled with the config's optimizers; `dataset` is the endless training input
    (a pass over the data per `steps_per_epoch` steps, reshuffled every pass), so
    `model.fit(dataset, steps_per_epoch=steps_per_epoch, epochs=N)` trains as `tfgen train`
    does, without its callbacks. `data` (tfgen.data.ImageData) has the class names and
    `data.dataset`, one epoch of real batches; `config` is the resolved config.
    """

    model: object
    dataset: object
    steps_per_epoch: int
    data: object
    config: Config

    def sampler(self):
        """The model as `tfgen.load` would give it once saved: `sampler().sample(n, seed=...)`."""
        from tfgen.sampling import Sampler  # noqa: PLC0415

        return Sampler.from_model(
            self.model, self.data.class_names if self.model.needs_labels else (), self.config.name
        )


def build(config, **overrides):
    """A compiled model and its training data for `config`, without the command line.

    `config` is a shipped config's bare name (`"digits_dcgan.yaml"`), a path to a YAML file,
    or a `tfgen.config.Config`. `overrides` go by section, with Python values:
    `build("digits_dcgan.yaml", model={"latent_dim": 16}, train={"learning_rate": 1e-4},
    name="mine")`; they are validated like the YAML file's. `auto` speed settings are
    resolved as `tfgen train` resolves them, and Keras' global seed and mixed-precision policy
    are set from the config.
    """
    from tfgen import experiment  # noqa: PLC0415  (keeps `import tfgen` light)

    values = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            values.update({f"{key}.{k}": v for k, v in value.items()})
        elif key in ("name", "run_dir"):
            values[key] = value
        else:
            raise ConfigError(
                f"tfgen.build: {key}={value!r}: expected a section as a dict (e.g. {key}={{...}}) or name= / run_dir="
            )
    if isinstance(config, Config):
        cfg = config_from_dict(config.to_dict(), f"config {config.name}", values=values)
    else:
        cfg = load_config(str(config), values=values)
    model, data, cfg = experiment.prepare(cfg, distribute.make_strategy(cfg.train.distribute))
    steps = experiment.steps_per_epoch(cfg, model, data)
    return Experiment(model, data.stream(0, model.real_batches_per_step), steps, data, cfg)
