"""Experiment configs: one YAML file -> validated, typed dataclasses.

An experiment is one small YAML file with the sections `model`, `data`,
`train`, `export` and `eval`. Any value can be overridden on the command line with
`--set section.key=value` (the value is parsed as YAML, then converted to the field's type).
Every problem is reported as a `ConfigError` naming the file (or the `--set` flag), the key,
the bad value and what would be valid, so a typo never surfaces as a traceback mid-run.

The `model` section is schema-less here on purpose: its keys are the registered model
class's constructor arguments (see `tfgen.models.registry`), so adding a model needs no
change to this file.
"""

import copy
import dataclasses
import datetime
import difflib
import importlib.resources
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import yaml

from tfgen.errors import ConfigError

# The shipped configs are package data, so a wheel installed anywhere finds them by bare name.
# pip installs packages as files, so this is a pathlib.Path: `tfgen sweep` hands it to its
# training processes as one.
CONFIG_DIR = importlib.resources.files(__package__) / "configs"
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class DataConfig:
    """Where images come from and how they become batches of [-1, 1] float images."""

    source: Literal["digits", "mnist5k", "tfds", "folder", "kaggle"] = "digits"
    name: str = ""  # TFDS dataset name ("mnist") or Kaggle slug ("owner/dataset")
    path: str = ""  # image folder; for kaggle, the sub-folder inside the download
    split: str = "train"  # TFDS split, slicing allowed ("train[:10%]")
    image_key: str = "image"  # TFDS feature holding the image
    label_key: str = "label"  # TFDS feature holding the class label
    data_dir: str = ""  # TFDS data_dir; empty means TFDS's default (~/tensorflow_datasets)
    image_size: int = 32
    fit: Literal["crop", "pad"] = "crop"  # non-square images: centre-crop, or pad with white
    channels: Literal[1, 3] = 1
    batch_size: int = 64
    random_flip: bool = False
    cache: bool = True
    shuffle_buffer: int = 10000
    limit: int = 0  # use only the first N images; 0 means all
    # Two-domain models (CycleGAN): each domain is a source of its own; its keys override
    # the ones above (typically source, name, path, split, fit), the rest are shared.
    domain_a: Optional["DataConfig"] = None
    domain_b: Optional["DataConfig"] = None

    def problems(self):
        """(key, expectation) for each out-of-range value."""
        if self.source in ("tfds", "kaggle") and not self.name:
            yield "name", f"a dataset name (required when source is {self.source!r})"
        if self.source == "folder" and not self.path:
            yield (
                "path",
                (
                    "this config reads a folder of images that tfgen does not ship (the comment at the top "
                    "of the config says which images and where such data comes from, e.g. a Kaggle dataset)"
                ),
            )
        if self.image_size < 8:
            yield "image_size", "an integer >= 8"
        if self.batch_size < 1:
            yield "batch_size", "an integer >= 1"
        if self.shuffle_buffer < 1:
            yield "shuffle_buffer", "an integer >= 1"
        if self.limit < 0:
            yield "limit", "an integer >= 0 (0 means all images)"


@dataclass
class TrainConfig:
    """Optimisation, distribution and how often the run directory is written to."""

    epochs: int = 50
    time_budget_minutes: float = 0.0  # > 0: finish (and export) after the epoch that passes it
    steps_per_epoch: int = 0  # 0 means one pass over the data
    learning_rate: float = 2e-4
    lr_schedule: Literal["constant", "linear_decay"] = "constant"  # linear_decay: to 0 over the second half
    d_learning_rate: Optional[float] = None  # discriminator's rate if it differs (TTUR)
    beta_1: float = 0.5
    beta_2: float = 0.999
    seed: int = 0
    distribute: Literal["auto", "none", "mirrored", "multi_worker", "tpu"] = "auto"
    jit_compile: Literal["auto", True, False] = "auto"  # auto: tfgen.autotune
    mixed_precision: Literal["none", "auto", "mixed_float16", "mixed_bfloat16"] = "none"  # auto: tfgen.autotune
    conv_kernel_grad: Literal["auto", "matmul", "native"] = "auto"  # matmul: tfgen.fastconv; auto: tfgen.autotune
    sample_every: int = 5  # epochs between sample grids
    num_samples: int = 64  # images in each sample grid (fixed latent batch)
    checkpoint_every: int = 1  # epochs between checkpoints
    checkpoint_every_steps: int = 0  # also every N steps, mid-epoch (0: only at epoch ends)
    keep_checkpoints: int = 3
    on_nan: Literal["stop", "rollback"] = "stop"  # what a NaN / infinite loss does
    rollback_lr_factor: float = 0.5  # rollback: learning rates are multiplied by this
    max_rollbacks: int = 3

    def problems(self):
        """(key, expectation) for each out-of-range value."""
        if self.epochs < 1:
            yield "epochs", "an integer >= 1"
        if self.time_budget_minutes < 0:
            yield "time_budget_minutes", "a number of minutes >= 0 (0: no budget, train.epochs decides)"
        if self.steps_per_epoch < 0:
            yield "steps_per_epoch", "an integer >= 0 (0 means one pass over the data)"
        if not self.learning_rate > 0:
            yield "learning_rate", "a number > 0"
        if self.d_learning_rate is not None and not self.d_learning_rate > 0:
            yield "d_learning_rate", "a number > 0, or null to use learning_rate"
        for key in ("beta_1", "beta_2"):
            if not 0 <= getattr(self, key) < 1:
                yield key, "a number in [0, 1)"
        for key in ("sample_every", "num_samples", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, key) < 1:
                yield key, "an integer >= 1"
        if not 0 < self.rollback_lr_factor < 1:
            yield "rollback_lr_factor", "a number in (0, 1)"
        if self.max_rollbacks < 0:
            yield "max_rollbacks", "an integer >= 0"
        if self.checkpoint_every_steps < 0:
            yield "checkpoint_every_steps", "an integer >= 0 (0: checkpoints only at epoch ends)"


@dataclass
class ExportConfig:
    """What is exported at the end of training."""

    saved_model: bool = True  # the generator as a TF SavedModel (plain TF can load it)
    keras: bool = True  # the whole model as a .keras archive

    def problems(self):
        return ()


@dataclass
class EvalConfig:
    """Sample-quality scoring during training (see tfgen.evaluate); off while every_epochs is 0."""

    every_epochs: int = 0
    metrics: str = "fid"  # comma-separated: fid, kid, is, pr
    num_samples: int = 2000
    extractor: Literal["classifier", "inception"] = "classifier"
    best_metric: Literal["fid", "kid", "is", "precision", "recall"] = "fid"  # checkpoints/best/ keeps the best

    def problems(self):
        """(key, expectation) for each out-of-range value."""
        if self.every_epochs < 0:
            yield "every_epochs", "an integer >= 0 (0 turns scoring off)"
        if self.num_samples < 10:
            yield "num_samples", "an integer >= 10"
        try:
            from tfgen import metrics  # noqa: PLC0415  (TensorFlow: `tfgen configs` stays light)

            names = metrics.parse_metric_names(self.metrics)
        except ValueError as exc:
            yield "metrics", f"comma-separated metric names ({exc})"
            return
        if self.best_metric not in metrics.reported_metrics(names):
            yield "best_metric", f"a metric that eval.metrics computes ({self.metrics})"


@dataclass
class ModelConfig:
    """A registered model name plus its constructor arguments (validated against it)."""

    name: str = "dcgan"
    params: dict = field(default_factory=dict)


@dataclass
class Config:
    """A whole experiment. `to_dict()` round-trips through `load_config`."""

    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run_dir: str = "runs"

    def to_dict(self):
        """Plain dict with every value resolved, in the YAML file's layout."""
        return {
            "name": self.name,
            "run_dir": self.run_dir,
            "model": {"name": self.model.name, **self.model.params},
            "data": _data_dict(self.data),
            "train": dataclasses.asdict(self.train),
            "export": dataclasses.asdict(self.export),
            "eval": dataclasses.asdict(self.eval),
        }


# One model sees both domains: their image shape and batch are set once, in `data`.
SHARED_DATA_KEYS = ("image_size", "channels", "batch_size")


def _data_dict(data):
    """The data section as a dict; a domain (when set) holds only the keys where it differs
    from the section (and its source), so a later --set data.cache=... still reaches it."""
    values = dataclasses.asdict(data)
    for domain in ("domain_a", "domain_b"):
        if values[domain] is None:
            del values[domain]
        else:
            values[domain] = {
                k: v
                for k, v in values[domain].items()
                if k == "source" or (k not in ("domain_a", "domain_b", *SHARED_DATA_KEYS) and v != values[k])
            }
    return values


_SECTIONS = {"data": DataConfig, "train": TrainConfig, "export": ExportConfig, "eval": EvalConfig}
_TOP_KEYS = ("name", "run_dir", "model", *_SECTIONS)


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def shipped_configs():
    """The configs tfgen ships: {file name: path}, sorted by name."""
    return {p.name: p for p in sorted(CONFIG_DIR.iterdir(), key=lambda p: p.name) if p.name.endswith(".yaml")}


def config_description(path):
    """A config's one-line description: the first sentence of its first line, a comment."""
    first = path.read_text().partition("\n")[0]
    if not first.startswith("#"):
        return ""
    return first_sentence(first.lstrip("#"))


def first_sentence(text):
    """`text` up to its first full stop (without it); "Zhu et al. 2017" ends no sentence."""
    text = text.strip()
    end = re.search(r"(?<! al)\.(\s|$)", text)
    return text[: end.start()] if end else text


def resolve_config_path(name):
    """Find a config: a path as given, else a bare name in ./configs, then among the shipped ones."""
    candidates = [Path(name)]
    for folder in (Path.cwd() / "configs", CONFIG_DIR):
        candidates += [folder / name, folder / f"{name}.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    shipped = list(shipped_configs())
    close = difflib.get_close_matches(Path(name).name if name.endswith(".yaml") else f"{name}.yaml", shipped, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(
        f"config {name!r} not found{hint}; looked for it as a path, in ./configs and in {CONFIG_DIR}; "
        f"shipped: {', '.join(shipped)} (`tfgen configs` describes them)"
    )


def load_config(name, overrides=(), values=None):
    """Load, override and validate a config.

    `overrides` are "section.key=value" strings (`--set`), the value read as YAML; `values`
    are {"section.key": value} with Python values (`tfgen.build`), applied after them.
    """
    path = resolve_config_path(name)
    try:
        raw = yaml.load(path.read_text(), Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {_kind(raw)}")
    raw.setdefault("name", Path(path.name).stem)
    return config_from_dict(raw, path, overrides, values)


def config_from_dict(raw, source, overrides=(), values=None):
    """A validated Config from a mapping in the YAML file's layout (e.g. `Config.to_dict()`);
    `source` names it in errors. `overrides` and `values` as for `load_config`."""
    raw = copy.deepcopy(raw)
    origins = {}
    for item in overrides:
        key, value = _parse_override(item)
        _set(raw, key, value, f"--set {item}", origins)
    for key, value in (values or {}).items():
        _set(raw, key, value, f"{key}={value!r}", origins)
    return _build(raw, source, origins)


def _parse_override(item):
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=3")
    if not text:  # YAML reads "" as null; on a command line `key=` means the empty string
        return key, ""
    try:
        return key, yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError:
        return key, text


def _set(raw, key, value, origin, origins):
    """raw[section][key] = value for a dotted key; `origin` names the override in errors."""
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        if node.get(part) is None:  # absent, or a section whose keys are all commented out
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"{origin}: {part!r} is not a section")
    node[leaf] = value
    origins[key] = origin


def _build(raw, path, origins):
    def where(key):
        return origins.get(key, str(path))

    def fail(key, value, expectation):
        raise ConfigError(f"{where(key)}: {key}: invalid value {value!r}; expected {expectation}")

    _reject_unknown(raw, _TOP_KEYS, "", where)
    name = _convert(raw["name"], str, "name", where)
    if not _RUN_NAME.match(name) or ".." in name:
        fail("name", name, "a run name of letters, digits, '.', '_' or '-' (no path separators)")
    run_dir = _convert(raw.get("run_dir", "runs"), str, "run_dir", where)

    sections = {
        section: _dataclass(cls, _section(raw, section, where), section, where) for section, cls in _SECTIONS.items()
    }
    data = sections["data"]
    for domain in ("domain_a", "domain_b"):
        values = (raw.get("data") or {}).get(domain) or {}
        if not isinstance(values, dict):
            raise ConfigError(
                f"{where(f'data.{domain}')}: data.{domain}: expected a mapping of data keys "
                f"(source, name, path, ...), got {_kind(values)}"
            )
        if values:  # the shared keys, overridden by the domain's own
            shared = {
                f.name: getattr(data, f.name)
                for f in dataclasses.fields(DataConfig)
                if f.name not in ("domain_a", "domain_b")
            }
            own_keys = [k for k in shared if k not in SHARED_DATA_KEYS]
            _reject_unknown(values, own_keys, f"data.{domain}.", where)
            setattr(data, domain, _dataclass(DataConfig, values, f"data.{domain}", where, preset=shared))

    from tfgen.models import registry  # noqa: PLC0415  (the models import TensorFlow: `tfgen configs` stays light)

    model_raw = dict(_section(raw, "model", where))
    model_name = model_raw.pop("name", "dcgan")
    if not isinstance(model_name, str) or model_name not in registry.MODELS:
        fail("model.name", model_name, "one of " + ", ".join(sorted(registry.MODELS)))
    schema = registry.model_params(registry.get_model_class(model_name))
    _reject_unknown(model_raw, ["name", *schema], "model.", where)
    # per-layer options (tuple defaults) are lists in a config, as YAML writes them
    params = {k: list(default) if isinstance(default, tuple) else default for k, (_, default) in schema.items()}
    for key, value in model_raw.items():
        params[key] = _convert(value, schema[key][0], f"model.{key}", where)
    model = ModelConfig(name=model_name, params=params)
    return Config(name=name, run_dir=run_dir, model=model, **sections)


def _dataclass(cls, values, prefix, where, preset=None):
    """A validated `cls` from a mapping of raw values (on top of `preset` ones)."""
    hints = typing.get_type_hints(cls)
    nested = [f.name for f in dataclasses.fields(cls) if dataclasses.is_dataclass(_optional_of(hints[f.name]))]
    _reject_unknown(values, [f.name for f in dataclasses.fields(cls)], f"{prefix}.", where)
    converted = {k: _convert(v, hints[k], f"{prefix}.{k}", where) for k, v in values.items() if k not in nested}
    obj = cls(**{**(preset or {}), **converted})
    for key, expectation in obj.problems():
        if key == "path" and not obj.path:  # nothing to call invalid: say what to pass instead
            raise ConfigError(
                f"{where(f'{prefix}.path')}: {prefix}.path is not set: {expectation}; "
                f"pass --set {prefix}.path=/path/to/images"
            )
        raise ConfigError(
            f"{where(f'{prefix}.{key}')}: {prefix}.{key}: invalid value {getattr(obj, key)!r}; expected {expectation}"
        )
    return obj


def _optional_of(tp):
    """X for Optional[X], else tp."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and args else tp


def _section(raw, section, where):
    values = raw.get(section) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where(section)}: {section}: expected a mapping, got {_kind(values)}")
    return values


def _reject_unknown(values, valid, prefix, where):
    for key in values:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(
                f"{where(prefix + str(key))}: unknown key {prefix}{key}{hint}; "
                f"valid keys: {', '.join(prefix + v for v in valid)}"
            )


def _convert(value, tp, key, where):
    """Check `value` against the annotation `tp`, converting where it is unambiguous."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], key, where)
    if origin is tuple:  # per-layer options: tuple[int, ...] -> a list of ints
        if isinstance(value, (list, tuple)) and value:
            return [_convert(v, typing.get_args(tp)[0], key, where) for v in value]
        expectation = f"a non-empty list like [1, 2] of {typing.get_args(tp)[0].__name__}"
    elif origin is Literal:
        for choice in typing.get_args(tp):
            if value == choice and type(value) is type(choice):
                return value
        expectation = "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    elif tp is bool:
        if isinstance(value, bool):
            return value
        expectation = "true or false"
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        expectation = "an integer"
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:  # YAML 1.1 reads "1e-4" (no dot) as a string
                return float(value)
            except ValueError:
                pass
        expectation = "a number"
    elif tp is str:
        if isinstance(value, str):
            return value
        if where(key).startswith("--set ") and isinstance(value, (bool, int, float, datetime.date)):
            # `--set name=2024` (or 2024-01-01): YAML read a number (a date), but this key takes
            # text, so keep it as typed
            return where(key).partition("=")[2]
        expectation = "a string"
    else:
        raise AssertionError(f"config field {key} has unsupported type {tp}")
    raise ConfigError(f"{where(key)}: {key}: invalid value {value!r}; expected {expectation}")


def _kind(value):
    return type(value).__name__
