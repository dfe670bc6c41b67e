"""Exporting a trained model for use without tfgen.

    tfgen export --run runs/X [--format saved_model|keras] [--out DIR] [--uint8]

`export_saved_model` writes a TF SavedModel whose signatures are the model's
`export_endpoints()` (the first is also `serving_default`), usable from plain TensorFlow,
TF Serving or `keras.layers.TFSMLayer`. With `uint8=True` every signature that returns images
gets a twin, `<name>_uint8`, returning uint8 [0, 255] pixels ready to save or serve. A
`tfgen.json` beside it records what the inputs and outputs mean: shapes and dtypes, the
latent size, the class names and each output's range. Only the networks in the model's
`export_networks` are stored (a GAN's discriminator stays behind).

The command re-exports a finished run (training already wrote `saved_model/` and
`model.keras`): as a SavedModel, optionally with the uint8 signatures, or as a copy of the
`.keras` archive, into `runs/X/export/<format>` unless `--out` says otherwise.
"""

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import keras
import tensorflow as tf

from tfgen import cli
from tfgen.errors import ConfigError, DataError, RunError
from tfgen.files import make_temp_beside

log = logging.getLogger("tfgen")

FORMATS = ("saved_model", "keras")
UINT8_SUFFIX = "_uint8"
FLOAT_RANGE = [-1.0, 1.0]
UINT8_RANGE = [0, 255]


def to_uint8(images):
    """Images in [-1, 1] -> uint8 [0, 255], rounding half to even exactly as `tfgen.images.to_uint8`."""
    return tf.cast(tf.round((tf.clip_by_value(images, -1.0, 1.0) + 1.0) * 127.5), tf.uint8)


def uint8_endpoint(fn):
    """`fn` with its image output converted by `to_uint8` (same inputs)."""
    return lambda *inputs: to_uint8(fn(*inputs))


def _is_images(outputs):
    # Image endpoints return one [B, H, W, C] float tensor; the others (VAE encode) a dict.
    return isinstance(outputs, tf.Tensor) and outputs.shape.rank == 4 and outputs.dtype.is_floating


def _describe_outputs(outputs):
    """{signature output key: {shape, dtype[, range of images]}}; a lone tensor is `output_0`, as TF names it."""
    named = outputs if isinstance(outputs, dict) else {"output_0": outputs}
    described = {}
    for key, tensor in named.items():
        described[key] = {"shape": tensor.shape.as_list(), "dtype": tensor.dtype.name}
        if tensor.shape.rank == 4:
            described[key]["range"] = FLOAT_RANGE if tensor.dtype.is_floating else UINT8_RANGE
    return described


def model_metadata(model, class_names):
    """What every export's tfgen.json says about the model behind it."""
    return {
        "model": model.registry_name,
        "latent_dim": model.noise_size,  # the flattened noise length, as before noise_shape
        "noise_shape": list(model.noise_shape),
        "image_shape": list(model.image_shape),
        "num_classes": model.num_classes if model.needs_labels else 0,
        "class_names": list(class_names),
        "output_range": FLOAT_RANGE,  # of the float image outputs; each signature says its own
    }


def export_saved_model(model, path, class_names=(), uint8=False):
    """Write `model`'s endpoints (and with `uint8`, their uint8 twins) to the SavedModel folder `path`.

    The folder is written beside `path` and moved into place, replacing an earlier export.
    Returns the path.
    """
    path = Path(path)
    archive = keras.export.ExportArchive()
    for network in model.export_networks:
        archive.track(getattr(model, network))
    signatures = {}
    endpoints = dict(model.export_endpoints())
    for name, (fn, input_signature) in endpoints.items():
        traced = archive.add_endpoint(name=name, fn=fn, input_signature=input_signature)
        signatures[name] = (input_signature, traced.get_concrete_function().structured_outputs)
    if uint8:
        for name, (input_signature, outputs) in list(signatures.items()):
            if _is_images(outputs):
                fn = uint8_endpoint(endpoints[name][0])
                traced = archive.add_endpoint(name=name + UINT8_SUFFIX, fn=fn, input_signature=input_signature)
                signatures[name + UINT8_SUFFIX] = (input_signature, traced.get_concrete_function().structured_outputs)
    metadata = {
        **model_metadata(model, class_names),
        "serving_default": next(iter(signatures)),
        "signatures": {
            name: {
                "inputs": {spec.name: {"shape": spec.shape.as_list(), "dtype": spec.dtype.name} for spec in specs},
                "outputs": _describe_outputs(outputs),
            }
            for name, (specs, outputs) in signatures.items()
        },
    }
    with _replaced_folder(path) as tmp:
        archive.write_out(str(tmp), verbose=False)
        (tmp / "tfgen.json").write_text(json.dumps(metadata, indent=2))
    return path


def export_keras(archive, path, metadata):
    """Copy the `.keras` archive to `path`/model.keras, with a `tfgen.json` beside it; returns the file."""
    path = Path(path)
    with _replaced_folder(path) as tmp:
        shutil.copyfile(archive, tmp / "model.keras")
        (tmp / "tfgen.json").write_text(json.dumps(metadata, indent=2))
    return path / "model.keras"


class _replaced_folder:
    """Context manager: a fresh folder beside `path` that replaces `path` on success.

    A half-written export never sits where a reader looks for a finished one. An existing
    `path` is replaced only when it is empty or holds an earlier export (a `tfgen.json`), so a
    mistyped `--out` cannot delete someone's folder.
    """

    def __init__(self, path):
        self.path = Path(path)

    def __enter__(self):
        if self.path.exists() and not (self.path.is_dir() and _is_export(self.path)):
            raise RunError(
                f"--out: {self.path} exists and is not an earlier tfgen export (no tfgen.json); "
                "choose a new folder or remove it"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = make_temp_beside(self.path, directory=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            old = None
            if self.path.exists():
                old = self.path.with_name(self.tmp.name + ".old")
                os.replace(self.path, old)
            os.replace(self.tmp, self.path)
            if old is not None:
                shutil.rmtree(old)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def _is_export(folder):
    return not any(folder.iterdir()) or (folder / "tfgen.json").is_file()


def recorded_class_names(model, *metadata_files):
    """The class names in the first of `metadata_files` (tfgen.json files) that exists, if it
    has one per class of `model`; else ()."""
    for path in metadata_files:
        if path.is_file():
            names = json.loads(path.read_text()).get("class_names", [])
            return tuple(names) if len(names) == model.num_classes else ()
    return ()


def run_class_names(run, cfg, model):
    """The class names of a run's data, for conditional models; () for unconditional ones.

    Read from the tfgen.json training wrote (no dataset needed); else the dataset is opened
    for its names; if it cannot be, the labels' numbers stand in for them.
    """
    if not model.needs_labels:
        return ()
    recorded = recorded_class_names(model, Path(run) / "saved_model" / "tfgen.json")
    if recorded:
        return recorded
    from tfgen.data import build_dataset  # noqa: PLC0415  (the data stack is only needed here)

    try:
        names = build_dataset(cfg.data, seed=cfg.train.seed).class_names
    except DataError as exc:
        log.warning("class names unavailable (%s); using the label numbers", exc)
        names = []
    return tuple(names) if len(names) == model.num_classes else tuple(str(i) for i in range(model.num_classes))


def export_run(run, fmt="saved_model", out=None, uint8=False):
    """Re-export the finished run directory `run`; the path written."""
    from tfgen.runs import load_run  # noqa: PLC0415  (the model classes are only needed here)

    if fmt not in FORMATS:
        raise ConfigError(f"--format: unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if uint8 and fmt != "saved_model":
        raise ConfigError("--uint8 adds uint8 signatures to a SavedModel; it needs --format saved_model")
    run = Path(run)
    cfg, model = load_run(run)
    out = Path(out) if out else run / "export" / fmt
    class_names = run_class_names(run, cfg, model)
    if fmt == "keras":
        metadata = {
            **model_metadata(model, class_names),
            "load": "import tfgen, keras; keras.saving.load_model('model.keras')",
        }
        return export_keras(run / "model.keras", out, metadata)
    return export_saved_model(model, out, class_names, uint8=uint8)


def main(argv=None):
    """CLI entry point; returns the exit status (2 for errors the user can fix)."""
    parser = argparse.ArgumentParser(prog="tfgen export", description="Re-export a finished run.")
    parser.add_argument("--run", required=True, help="a run directory, e.g. runs/digits_dcgan")
    parser.add_argument("--format", default="saved_model", choices=FORMATS)
    parser.add_argument("--out", help="folder to write (default: <run>/export/<format>)")
    parser.add_argument(
        "--uint8",
        action="store_true",
        help="also export <signature>_uint8 variants returning uint8 [0, 255] images",
    )
    cli.add_verbose_argument(parser)
    args = parser.parse_args(argv)
    return cli.run(_export_command, args)


def _export_command(args):
    path = export_run(args.run, args.format, args.out, args.uint8)
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
