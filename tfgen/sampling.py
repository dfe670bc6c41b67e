"""Sampling: one interface over a trained run's generator, a `.keras` file and an exported SavedModel.

`Sampler` is what every consumer of a trained generator goes through (`tfgen.generate`, the
uniqueness checks, the avatar studio, `tfgen.load` for other Python code), so a run folder,
a `.keras` file and an export folder behave alike: noise from a seeded numpy generator,
float32 images in [-1, 1], class names for conditional models.
"""

import json
import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfgen import cli, images
from tfgen.errors import ConfigError, RunError
from tfgen.export import recorded_class_names, run_class_names
from tfgen.models.base import draw_noise
from tfgen.runs import command_for, load_keras, load_run

BATCH = 256


class Sampler:
    """A generator behind one interface, whether a run's Keras model or an exported SavedModel.

    `noise_shape` (per example: `(latent_dim,)` for the GANs and VAEs), `noise_size` (its
    flattened length, which ledgers store), `image_shape`, `class_names` (empty for
    unconditional models), `sampling_options` ({name: default} that `images` and `sample`
    take as keywords, e.g. a diffusion sampler's `steps`), `run` and `cfg` (None but for
    runs), `model` (the `keras.Model`, or the loaded SavedModel, to reuse its networks),
    `sample(n, seed, label, **options)`, and underneath it `noise(rng, count, truncation)`
    and `images(z, labels, **options)`.
    """

    def __init__(
        self,
        fn,
        noise_shape,
        image_shape,
        class_names,
        description,
        run=None,
        cfg=None,
        model=None,
        sampling_options=None,
    ):
        self._fn = fn
        self.model = model  # also keeps a SavedModel's variables alive as long as the sampler
        self.noise_shape = (int(noise_shape),) if np.ndim(noise_shape) == 0 else tuple(int(d) for d in noise_shape)
        self.sampling_options = dict(sampling_options or {})
        self.image_shape = tuple(image_shape)
        self.class_names = list(class_names)
        self.description = description
        self.run = run
        self.cfg = cfg

    @property
    def conditional(self):
        return bool(self.class_names)

    @property
    def noise_size(self):
        """Numbers in one example's noise: the length of a flattened z (a ledger row, a studio z)."""
        return math.prod(self.noise_shape)

    @property
    def latent_dim(self):
        """The flattened noise length (`noise_size`), the name flat-latent callers know."""
        return self.noise_size

    @classmethod
    def from_run(cls, run):
        """The generator of a finished run directory (its model.keras)."""
        run = Path(run)
        cfg, model = load_run(run)
        if not model.samples_from_noise:
            does, advice = command_for(model)
            raise RunError(
                f"--run: {run} holds a {cfg.model.name} model, which {does} instead of sampling them; {advice}"
            )
        return cls.from_model(model, run_class_names(run, cfg, model), str(run), run, cfg)

    @classmethod
    def from_keras(cls, path):
        """The model of a `.keras` file: a run's model.keras or a `tfgen export --format keras`.

        Class names come from a tfgen.json beside it (an export's) or the run's saved_model/;
        failing both, the label numbers stand in for them.
        """
        path = Path(path)
        model = load_keras(path)
        if not model.samples_from_noise:
            does, advice = command_for(model)
            raise RunError(
                f"{path} holds a {model.registry_name} model, which {does} instead of sampling them; "
                f"load it with keras.saving.load_model, or {advice}"
            )
        class_names = ()
        if model.needs_labels:
            class_names = recorded_class_names(
                model, path.parent / "tfgen.json", path.parent / "saved_model" / "tfgen.json"
            )
            class_names = class_names or [str(i) for i in range(model.num_classes)]
        return cls.from_model(model, class_names, str(path))

    @classmethod
    def from_model(cls, model, class_names=(), description="model", run=None, cfg=None):
        """A tfgen `keras.Model` already in memory (e.g. the one `tfgen.build` made and `fit` trained)."""

        def fn(z, labels, **options):
            return np.asarray(model.generate(z, labels, **options), np.float32)

        return cls(
            fn, model.noise_shape, model.image_shape, class_names, description, run, cfg, model, model.sampling_options
        )

    @classmethod
    def from_export(cls, path):
        """The `generate` (GANs) or `decode` (VAEs) signature of an exported SavedModel folder."""
        path = Path(path)
        if not path.is_dir():
            raise RunError(f"--export: {path} does not exist")
        if not (path / "tfgen.json").is_file():
            raise RunError(
                f"--export: {path} has no tfgen.json; pass a saved_model folder written by tfgen.train or tfgen.export"
            )
        if not (path / "saved_model.pb").is_file():
            raise RunError(f"--export: {path} is not a SavedModel (no saved_model.pb); for a .keras export use --run")
        meta = json.loads((path / "tfgen.json").read_text())
        loaded = tf.saved_model.load(str(path))
        name = next((n for n in ("generate", "decode") if n in loaded.signatures), None)
        if name is None:
            hint = ""
            if "a_to_b" in loaded.signatures:
                hint = "; use tfgen translate --run on its run"
            elif "reconstruct" in loaded.signatures:  # SDPC's
                hint = "; score its run's reconstructions with tfgen evaluate --metric rec"
            raise RunError(
                f"--export: {path} has no generate or decode signature ({', '.join(loaded.signatures)}){hint}"
            )
        signature = loaded.signatures[name]
        conditional = "label" in signature.structured_input_signature[1]
        class_names = meta.get("class_names", []) if conditional else []
        if conditional and not class_names:
            class_names = [str(i) for i in range(meta["num_classes"])]

        def fn(z, labels):
            inputs = {"z": tf.constant(z, tf.float32)}
            if conditional:
                inputs["label"] = tf.constant(labels, tf.int32)
            (out,) = signature(**inputs).values()
            return out.numpy().astype(np.float32)

        # Exports before noise_shape was recorded all had a flat latent.
        noise_shape = meta.get("noise_shape", [meta["latent_dim"]])
        return cls(fn, noise_shape, meta["image_shape"], class_names, str(path), model=loaded)

    def sample(self, n, seed=None, label=None, truncation=None, uint8=False, **options):
        """`n` new images [n, H, W, C]: float32 in [-1, 1], or with `uint8` pixels in [0, 255].

        A `seed` gives the same images every time (those of `tfgen generate --seed`, for an
        unconditional model or one `--label`). `label` (conditional models) is a class index or
        name; without it image i is of class i mod the number of classes. `truncation` T
        redraws noise entries with |z| > T. `options` are the model's `sampling_options`.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"sample: n must be an integer >= 1, got {n!r}")
        if truncation is not None and not truncation > 0:
            raise ConfigError(f"sample: truncation must be a number > 0, got {truncation!r}")
        named = isinstance(label, str)
        label = resolve_label(self, None if named else label, label if named else None)
        z = self.noise(np.random.default_rng(seed), n, truncation)
        pictures = self.images(z, labels_for(self, n, label), **options)
        return images.to_uint8(pictures) if uint8 else pictures

    def noise(self, rng, count, truncation=None):
        """N(0, I) noise [count, *noise_shape] from `rng`; with `truncation`, |z| > T entries are redrawn."""
        return draw_noise(rng, count, self.noise_shape, truncation)

    def check_options(self, options):
        """`options` completed with the defaults; ConfigError naming an option the model does not take."""
        return check_options(self.sampling_options, options, self.description)

    def images(self, z, labels=None, **options):
        """Float32 images [N, H, W, C] in [-1, 1], generated BATCH at a time (progress for long runs).

        `z` is [N, *noise_shape], or flattened [N, noise_size] as ledgers and the studio hold it.
        """
        options = self.check_options(options)
        z = np.reshape(np.asarray(z, np.float32), (len(z), *self.noise_shape))
        out = []
        progress = cli.Progress()
        for start in range(0, len(z), BATCH):
            batch_labels = None if labels is None else labels[start : start + BATCH]
            out.append(self._fn(z[start : start + BATCH], batch_labels, **options))
            progress("generated %d/%d images", min(start + BATCH, len(z)), len(z))
        return np.concatenate(out) if out else np.zeros((0, *self.image_shape), np.float32)


def check_options(declared, options, description):
    """`options` completed with the `declared` defaults ({name: default}, a model's
    `sampling_options`); ConfigError naming `description` and an option it does not take."""
    unknown = sorted(set(options) - set(declared))
    if unknown:
        valid = ", ".join(f"{k} (default {v})" for k, v in declared.items()) or "none"
        raise ConfigError(f"{description}: no sampling option {', '.join(unknown)}; its options: {valid}")
    return {**declared, **options}


def resolve_label(sampler, label=None, class_name=None):
    """The class index asked for by --label or --class (None if neither); ConfigError if invalid."""
    if label is None and class_name is None:
        return None
    flag = f"--label {label}" if label is not None else f"--class {class_name}"
    if not sampler.conditional:
        raise ConfigError(f"{flag}: {sampler.description} is not a conditional model; it takes no label")
    if class_name is not None:
        if class_name not in sampler.class_names:
            raise ConfigError(f"{flag}: unknown class; valid: {', '.join(sampler.class_names)}")
        return sampler.class_names.index(class_name)
    if not 0 <= label < len(sampler.class_names):
        raise ConfigError(
            f"{flag}: out of range; the model has {len(sampler.class_names)} classes, "
            f"labels 0-{len(sampler.class_names) - 1} ({', '.join(sampler.class_names)})"
        )
    return label


def labels_for(sampler, count, label, start=0):
    """Labels for draws start..start+count: `label` for all, or cycling through the classes."""
    if not sampler.conditional:
        return None
    if label is not None:
        return np.full(count, label, np.int32)
    return (np.arange(start, start + count) % len(sampler.class_names)).astype(np.int32)


def grid_columns(sampler, num, label):
    """Columns of a grid: with cycling labels, one row per class."""
    if sampler.conditional and label is None:
        return math.ceil(num / len(sampler.class_names))
    return None


def grid_labels(sampler, num, label):
    """Labels laid out one class per row (matching `grid_columns`), or `labels_for`."""
    columns = grid_columns(sampler, num, label)
    if columns is None:
        return labels_for(sampler, num, label)
    return (np.arange(num) // columns).astype(np.int32)
