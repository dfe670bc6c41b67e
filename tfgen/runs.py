"""The run folder, `runs/<name>/`: finding it, starting it, resuming it, reading it back.

What `tfgen train` writes there is listed in `tfgen.train`. This module owns the files that
describe the run rather than its progress: the resolved `config.yaml` (written once, by
`tfgen.training.train`; read back by a resume and by every command given `--run`), the
trained `model.keras`, and `rollbacks.json`. It also decides whether a run may start in a
folder (`check_run_dir`) or continue there (`check_resumable`).
"""

import json
import logging
import shutil
import tempfile
from pathlib import Path

import keras
import yaml

import tfgen.models  # noqa: F401  (registers the model classes for load_model)
from tfgen import metrics
from tfgen.config import load_config
from tfgen.errors import ConfigError, RunError
from tfgen.files import write_text

log = logging.getLogger("tfgen")

CONFIG_FILE = "config.yaml"
ROLLBACKS_FILE = "rollbacks.json"


def write_config(run_dir, cfg):
    """Record the resolved `cfg` as the run's config.yaml (re-run it with --config)."""
    write_text(Path(run_dir) / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def read_config(run_dir, overrides=()):
    """The run's recorded config, with `--set` style `overrides` applied on top."""
    return load_config(str(Path(run_dir) / CONFIG_FILE), overrides)


def check_run_dir(cfg, resume, overwrite):
    """runs/<name>, or RunError if the run may not use it; changes nothing on disk."""
    root = Path(cfg.run_dir).expanduser().resolve()
    run_dir = (root / cfg.name).resolve()
    if root not in run_dir.parents:
        raise RunError(f"run name {cfg.name!r} would leave the run folder {root}")
    if resume:
        if not (run_dir / "checkpoints").is_dir():
            raise RunError(f"--resume: {run_dir} has no checkpoints to resume from")
    elif run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise RunError(
            f"run directory {run_dir} already exists; pass --resume to continue it, "
            "--overwrite to replace it, or --set name=<new name>"
        )
    return run_dir


def prepare_run_dir(cfg, resume, overwrite):
    """runs/<name>, created empty (an old run deleted if `overwrite`), refusing to silently
    reuse or escape it."""
    run_dir = check_run_dir(cfg, resume, overwrite)
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    return run_dir


def worker_run_dir(chief_dir, resume):
    """A non-chief worker's scratch copy of the run directory `chief_dir` (as `check_run_dir`
    returned it).

    Every worker runs the same code, saves included (a save may need collective ops that
    all workers join), but only the chief's files are kept: the others write here, and a
    resuming worker starts from a copy of the chief's run directory (shared storage).
    """
    scratch = Path(tempfile.mkdtemp(prefix="tfgen-worker-")) / chief_dir.name
    if resume:
        shutil.copytree(chief_dir, scratch)
    else:
        scratch.mkdir(parents=True)
    return scratch


def check_resumable(recorded, cfg):
    """ConfigError if a --resume override changes what the checkpoint depends on: the model's
    shape, or how its global step maps to epochs and to a position in the data."""

    def fixed(c):
        values = {f"model.{k}": v for k, v in {"name": c.model.name, **c.model.params}.items()}
        values.update({f"data.{k}": getattr(c.data, k) for k in ("image_size", "channels", "batch_size", "limit")})
        values["train.steps_per_epoch"] = c.train.steps_per_epoch
        # only float16 changes the optimizer's variables (loss scaling); bfloat16 <-> float32
        # is fine, e.g. to resume a Zen 4's run on a CPU without native bfloat16
        precision = c.train.mixed_precision
        values["train.mixed_precision"] = (
            precision if precision in ("mixed_float16", "auto") else "none or mixed_bfloat16 (no loss scaling)"
        )
        names = ",".join(sorted(metrics.parse_metric_names(c.eval.metrics)))  # the CSV's columns are sorted
        values["eval.metrics"] = names if c.eval.every_epochs else "(scoring off)"
        return values

    def why(key):
        if key == "train.mixed_precision":
            return (
                "a loss-scaled (float16) optimizer keeps other variables than a plain one, so the checkpoints "
                "would not load"
            )
        if key == "eval.metrics":
            return "metrics.csv's columns were fixed when the run began, so new columns would land under old names"
        if key.startswith(("model.", "data.image", "data.ch")):
            return "the checkpoints hold a model of the old shape"
        return "the checkpoint's step would map to another epoch and data position"

    now = fixed(cfg)
    for key, value in fixed(recorded).items():
        if now.get(key) != value:
            raise ConfigError(
                f"--resume: {key} was {value!r} in this run and cannot become {now.get(key)!r}: {why(key)}; "
                "start a new run (--set name=...) instead"
            )


def read_rollbacks(run_dir, rates):
    """The NaN rollbacks recorded in the run for the configured `rates`; 0 if none, or if the
    rates have changed since: a resume with a new train.learning_rate starts afresh from it."""
    path = Path(run_dir) / ROLLBACKS_FILE
    if not path.exists():
        return 0
    record = json.loads(path.read_text())
    if record.get("rates") != rates:
        log.info("learning rates changed since the last NaN rollback: the rollback count starts again")
        return 0
    return record["rollbacks"]


def write_rollbacks(run_dir, rollbacks, rates):
    """Record `rollbacks` so far and the configured `rates` they lowered (read by a resume)."""
    write_text(Path(run_dir) / ROLLBACKS_FILE, json.dumps({"rollbacks": rollbacks, "rates": rates}))


def command_for(model):
    """(what `model` does, advice naming the tfgen command that takes its runs), for the error
    of a command that does not take it; each model is sent where it is accepted: a sampler to
    `tfgen generate`, a translator to `tfgen translate`, a model that only reconstructs (SDPC)
    to `tfgen evaluate --metric rec`."""
    if model.samples_from_noise:
        return "samples images", "use tfgen generate"
    if model.translates:
        return "translates images", "use tfgen translate"
    if model.reconstructs:
        return "reconstructs images", "score its reconstructions with tfgen evaluate --metric rec"
    return "does not sample images", "load it with keras.saving.load_model"


def load_run(run):
    """(config, model) of a finished run directory."""
    run = Path(run)
    if not (run / CONFIG_FILE).is_file():
        raise RunError(f"--run: {run} is not a run directory (no config.yaml)")
    if not (run / "model.keras").is_file():
        raise RunError(f"--run: {run} has no model.keras (training not finished, or export.keras is off)")
    return read_config(run), load_keras(run / "model.keras")


def load_keras(path):
    """A tfgen model from its `.keras` archive, under Keras' safe_mode."""
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except ValueError as exc:  # safe_mode refuses archives that would run arbitrary code
        raise RunError(f"{path}: refused to load: {' '.join(str(exc).split())[:300]}") from None
