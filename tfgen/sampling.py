"""Sampling: one interface over a trained run's generator and an exported SavedModel.

`Sampler` is what every consumer of a trained generator goes through (`tfgen.generate`, the
uniqueness checks, the avatar studio), so a run folder and an export folder behave alike:
latents from a seeded numpy generator, float32 images in [-1, 1], class names for
conditional models.
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfgen import cli, evaluate
from tfgen.errors import ConfigError, RunError
from tfgen.export import run_class_names

BATCH = 256


class Sampler:
    """A generator behind one interface, whether a run's Keras model or an exported SavedModel.

    `latent_dim`, `image_shape`, `class_names` (empty for unconditional models), `run` and
    `cfg` (None for exports), `latents(rng, count, truncation)` and `images(z, labels)`.
    """

    def __init__(self, fn, latent_dim, image_shape, class_names, description, run=None, cfg=None, keep=None):
        self._fn = fn
        self._keep = keep  # the loaded SavedModel: its variables live as long as the sampler
        self.latent_dim = int(latent_dim)
        self.image_shape = tuple(image_shape)
        self.class_names = list(class_names)
        self.description = description
        self.run = run
        self.cfg = cfg

    @property
    def conditional(self):
        return bool(self.class_names)

    @classmethod
    def from_run(cls, run):
        """The generator of a finished run directory (its model.keras)."""
        run = Path(run)
        cfg, model = evaluate.load_run(run)
        if not model.samples_from_latent:
            raise RunError(f"--run: {run} holds a {cfg.model.name} model, which translates images instead of "
                           "sampling them; use tfgen translate")
        class_names = run_class_names(run, cfg, model)

        def fn(z, labels):
            return np.asarray(model.generate(z, labels), np.float32)

        return cls(fn, model.latent_dim, model.image_shape, class_names, str(run), run, cfg)

    @classmethod
    def from_export(cls, path):
        """The `generate` (GANs) or `decode` (VAEs) signature of an exported SavedModel folder."""
        path = Path(path)
        if not path.is_dir():
            raise RunError(f"--export: {path} does not exist")
        if not (path / "tfgen.json").is_file():
            raise RunError(
                f"--export: {path} has no tfgen.json; pass a saved_model folder written by "
                "tfgen.train or tfgen.export"
            )
        if not (path / "saved_model.pb").is_file():
            raise RunError(f"--export: {path} is not a SavedModel (no saved_model.pb); for a .keras export use --run")
        meta = json.loads((path / "tfgen.json").read_text())
        loaded = tf.saved_model.load(str(path))
        name = next((n for n in ("generate", "decode") if n in loaded.signatures), None)
        if name is None:
            hint = "; use tfgen translate --run on its run" if "a_to_b" in loaded.signatures else ""
            raise RunError(f"--export: {path} has no generate or decode signature ({', '.join(loaded.signatures)}){hint}")
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

        return cls(fn, meta["latent_dim"], meta["image_shape"], class_names, str(path), keep=loaded)

    def latents(self, rng, count, truncation=None):
        """N(0, I) latents [count, latent_dim] from `rng`; with `truncation`, |z| > T entries are redrawn."""
        z = rng.standard_normal((count, self.latent_dim))
        if truncation is not None:
            outside = np.abs(z) > truncation
            while outside.any():
                z[outside] = rng.standard_normal(int(outside.sum()))
                outside = np.abs(z) > truncation
        return z.astype(np.float32)

    def images(self, z, labels=None):
        """Float32 images [N, H, W, C] in [-1, 1], generated BATCH at a time (progress for long runs)."""
        out = []
        progress = cli.Progress()
        for start in range(0, len(z), BATCH):
            batch_labels = None if labels is None else labels[start : start + BATCH]
            out.append(self._fn(z[start : start + BATCH], batch_labels))
            progress("generated %d/%d images", min(start + BATCH, len(z)), len(z))
        return np.concatenate(out) if out else np.zeros((0, *self.image_shape), np.float32)


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
