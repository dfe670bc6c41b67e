"""`tfgen train --config digits_dcgan.yaml [--set key=value ...] [--resume]`

The whole run in one place: config -> data -> strategy -> model -> fit -> export, writing
everything needed to understand and reproduce it to `runs/<name>/`:

    config.yaml        the fully resolved config (re-run it with --config runs/<name>/config.yaml)
    metrics.csv        one row per epoch; curves.png draws it
    samples/           epoch_NNN.png grids from one fixed latent batch; progress.gif animates them
    checkpoints/       model, optimizers, RNG states, running metrics and the global step
                       (resume with --resume, mid-epoch included)
    logs/              TensorBoard
    rollbacks.json     NaN rollbacks so far (train.on_nan: rollback), carried over by --resume
    model.keras        the trained model (keras.saving.load_model after `import tfgen`)
    saved_model/       the generator for plain TensorFlow: generate(z) -> images
"""

import argparse
import contextlib
import dataclasses
import json
import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import yaml

from tfgen import autotune, callbacks, cli, distribute, evaluate, fastconv, metrics
from tfgen.config import load_config
from tfgen.data import build_dataset
from tfgen.errors import ConfigError, RunError
from tfgen.export import export_saved_model
from tfgen.files import write_text
from tfgen.models import get_model_class

log = logging.getLogger("tfgen")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="tfgen train", description="Train a tfgen model from a YAML config."
    )
    parser.add_argument("--config", required=True, help="a config: a bare name (./configs/ first, then the shipped ones: tfgen configs) or a path")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=3 (repeatable)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    group.add_argument("--overwrite", action="store_true", help="delete an existing run of the same name first")
    parser.add_argument(
        "--max-minutes", type=float, metavar="M",
        help="checkpoint and stop cleanly after M minutes (continue later with --resume)",
    )
    cli.add_verbose_argument(parser)
    return parser.parse_args(argv)


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
        optimizer = keras.optimizers.Adam(learning_rate_for(name, train), beta_1=train.beta_1, beta_2=train.beta_2)
        if policy == "mixed_float16":  # float16 gradients need loss scaling
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizers[name] = optimizer
    model.compile(**optimizers, jit_compile=jit_compile)
    return model


def speed_settings(cfg, data, strategy):
    """(jit_compile, mixed-precision policy, conv_kernel_grad) for this model on this device,
    `auto` resolved by measurement (`tfgen.autotune`, which builds throw-away copies of the
    model)."""
    key = {"model": {"name": cfg.model.name, **cfg.model.params}, "image_shape": list(data.image_shape),
           "batch_size": cfg.data.batch_size, "replicas": strategy.num_replicas_in_sync}

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


def learning_rate_for(optimizer_name, train_cfg):
    """The configured rate of one optimizer: d_learning_rate for the discriminator's, if set."""
    if optimizer_name.startswith("d_") and train_cfg.d_learning_rate:
        return train_cfg.d_learning_rate
    return train_cfg.learning_rate


def evaluation_callback(cfg, data, checkpoint, step, steps_per_epoch, run_dir):
    """The Evaluation callback for `cfg.eval`, with its extractor ready (trained if need be)."""
    names = metrics.parse_metric_names(cfg.eval.metrics)
    reported = metrics.reported_metrics(names)
    cache_dir = Path(cfg.run_dir) / ".cache"
    key = evaluate.dataset_key(cfg.data)
    extractor = evaluate.make_extractor(cfg.eval.extractor, data, cache_dir, key)

    def score(model):
        try:
            return evaluate.evaluate_model(
                model, data, names, cfg.eval.num_samples, extractor, cache_dir, key, seed=cfg.train.seed
            )
        except RunError as exc:  # non-finite samples: a NaN score in the logs, training goes on
            log.warning("scoring skipped: %s", exc)
            return {name: float("nan") for name in reported}

    best = tf.train.CheckpointManager(checkpoint, run_dir / "checkpoints" / "best", max_to_keep=1)
    return callbacks.Evaluation(
        score, reported, cfg.eval.every_epochs, cfg.train.epochs, cfg.eval.best_metric,
        metrics.LOWER_IS_BETTER[cfg.eval.best_metric], best, step, steps_per_epoch, run_dir,
    )


def restore_latest(checkpoint, manager, finite_weights=None):
    """Restore the newest readable checkpoint, falling back past unreadable ones; its path.

    With `finite_weights` (the model's variables), also past checkpoints holding NaN or
    infinite values: a rollback's, since a step's loss is finite before its update makes
    the weights blow up, so the checkpoint after that step may already be broken.
    """
    for path in reversed(manager.checkpoints):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as exc:  # a torn file fails in many ways (OpError, IndexError, ...)
            log.warning("checkpoint %s is unreadable (%s); trying the one before", path,
                        str(exc).splitlines()[0][:200])
            continue
        values = [np.asarray(v) for v in finite_weights or ()]
        if all(np.all(np.isfinite(x)) for x in values if x.dtype.kind == "f"):
            return path
        log.warning("checkpoint %s holds NaN or infinite weights; trying the one before", path)
    raise RunError(f"no usable checkpoint in {manager.directory}; start again with --overwrite")


@contextlib.contextmanager
def stop_on_signals(guard):
    """SIGINT / SIGTERM ask `guard` to stop after the current step instead of killing the run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum, frame):
        guard.request_stop(f"{signal.Signals(signum).name} received")
        signal.signal(signum, previous[signum])  # a second one (e.g. during a long compile) ends at once

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, request_stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def prepare(cfg, strategy):
    """(model, data, cfg) for `cfg`: its dataset and its model, compiled, under `strategy`.

    `auto` speed settings are resolved first (by measurement, `tfgen.autotune`) and the
    returned config records what was chosen. Sets Keras' global seed and mixed-precision
    policy, as a run needs them. Shared by `train` and `tfgen.build`.
    """
    model_cls = get_model_class(cfg.model.name)
    data = build_dataset(cfg.data, seed=cfg.train.seed, require_labels=model_cls.needs_labels, domains=model_cls.domains)
    if cfg.eval.every_epochs and not model_cls.samples_from_latent:
        raise ConfigError(f"eval.every_epochs: scoring compares samples drawn from latents with real images; "
                          f"{cfg.model.name} does not sample from latents: set eval.every_epochs: 0")
    jit_compile, policy, grad = speed_settings(cfg, data, strategy)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, jit_compile=jit_compile, mixed_precision=policy, conv_kernel_grad=grad))
    keras.utils.set_random_seed(cfg.train.seed)  # after any timing runs, which draw initial weights
    keras.mixed_precision.set_global_policy(autotune.keras_policy(policy))
    with strategy.scope():
        model = build_model(cfg, data.image_shape, len(data.class_names), jit_compile, policy)
    data.require_steps(model.real_batches_per_step)
    return model, data, cfg


def train(cfg, run_dir, resume=False, deadline=None, prepared=None):
    """Run `fit` for `cfg` in `run_dir`: (model, ImageData, stop).

    `prepared` is what `prepare(cfg, strategy)` returned, if the caller already ran it
    (the CLI does, before it touches the run directory).

    `stop` is None when training finished, else the `callbacks.Interrupted` (a signal, or
    the `deadline`, a time.monotonic() value) that stopped it after a step; that step is
    checkpointed and `resume` continues from it exactly. A NaN or infinite loss stops with
    a RunError, or with `train.on_nan: rollback` restores the last good checkpoint with
    lower learning rates, up to `train.max_rollbacks` times.
    """
    strategy = distribute.make_strategy(cfg.train.distribute)
    model, data, resolved = prepared or prepare(cfg, strategy)
    if resolved != cfg:
        # Record what auto chose, so a resume (or a rerun of config.yaml) trains with the
        # same numerics whatever a later measurement on another machine would say.
        cfg = resolved
        write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    jit_compile, policy = cfg.train.jit_compile, cfg.train.mixed_precision
    with strategy.scope():
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    batches = model.real_batches_per_step
    steps = cfg.train.steps_per_epoch or data.steps_per_pass(batches)
    log.info(
        "data: %s, %d images of %s, %d steps per epoch%s; %d replica(s), %s",
        data.description, data.num_examples, "x".join(map(str, data.image_shape)), steps,
        f" ({batches} real batches each)" if batches > 1 else "", strategy.num_replicas_in_sync,
        autotune.describe(jit_compile, policy, "matmul" if fastconv.layers_taking_it(model) else "native"),
    )
    # Every RNG state (latents, dropout masks) and the running means of the metrics go into
    # the checkpoint, so a resume, even mid-epoch, continues exactly.
    rng = [v.value for v in model.non_trainable_variables if "seed_generator_state" in v.path]
    running = [v.value for m in model.metrics for v in m.variables]
    checkpoint = tf.train.Checkpoint(model=model, rng=rng, step=step, metrics=running)
    manager = tf.train.CheckpointManager(checkpoint, run_dir / "checkpoints", cfg.train.keep_checkpoints)
    restored = None
    if resume:
        restored = restore_latest(checkpoint, manager)
        log.info("resumed from %s at %s", restored, describe_step(int(step.numpy()), steps))
    else:
        manager.save(checkpoint_number=0)  # a good state to roll back to from the first step

    last = cfg.train.epochs
    every = cfg.train.sample_every
    budget = time.monotonic() + 60 * cfg.train.time_budget_minutes if cfg.train.time_budget_minutes else None
    guard = callbacks.Guard(steps, deadline=deadline, agree=distribute.make_agreement(strategy), budget_deadline=budget)
    # The learning rates come from the config, not the checkpoint: a resume with a new
    # train.learning_rate, a schedule and rollbacks all take effect.
    rates = callbacks.LearningRates({name: learning_rate_for(name, cfg.train) for name in model.optimizer_names},
                                    last, cfg.train.lr_schedule)
    # in this order: the pictures (sample grids add sample_diversity) and scores join the
    # epoch's logs before the CSV logger writes them
    fit_callbacks = [
        guard,
        rates,
        callbacks.EpochStart(),
        *(callbacks.PICTURES[picture](run_dir, data, model, every, last, cfg.train.num_samples, cfg.train.seed)
          for picture in model.pictures),
        *([evaluation_callback(cfg, data, checkpoint, step, steps, run_dir)] if cfg.eval.every_epochs else []),
        keras.callbacks.CSVLogger(str(run_dir / "metrics.csv"), append=True),
        callbacks.Curves(run_dir / "metrics.csv", run_dir / "curves.png"),
        callbacks.Checkpointer(manager, step, guard, cfg.train.checkpoint_every, last, steps,
                               cfg.train.checkpoint_every_steps),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False),
    ]

    # NaN rollbacks so far, in the run folder: a resumed run keeps the lowered learning rates
    # and the count towards train.max_rollbacks, rather than restarting at the rate that diverged
    rollback_file = run_dir / "rollbacks.json"
    rollbacks = read_rollbacks(rollback_file, rates.rates) if resume else 0
    rates.scale = cfg.train.rollback_lr_factor**rollbacks
    with stop_on_signals(guard):
        while True:
            start = int(step.numpy())
            guard.step = start
            callbacks.truncate_metrics(run_dir / "metrics.csv", start // steps)
            try:
                fit_from(model, data, start, steps, last, fit_callbacks, running, restored)
                if guard.step < last * steps:  # fit ended early: only the time budget does that
                    log.info("time budget of %g minutes spent: finished after epoch %d",
                             cfg.train.time_budget_minutes, guard.step // steps)
                return model, data, None
            except callbacks.Interrupted as stop:
                path = manager.latest_checkpoint
                if not (path or "").endswith(f"-{stop.step}"):  # an epoch end's may be saved already
                    step.assign(stop.step)
                    path = manager.save(checkpoint_number=stop.step)
                log.warning("stopped at %s: %s; saved %s", describe_step(stop.step, steps), stop.reason, path)
                return model, data, stop
            except callbacks.NonFiniteLoss as bad:
                good = manager.latest_checkpoint
                if cfg.train.on_nan == "stop" or rollbacks >= cfg.train.max_rollbacks:
                    tried = f" after {rollbacks} rollback(s)" if rollbacks else ""
                    raise RunError(
                        f"training diverged{tried}: {bad}; the last good checkpoint {good} and the "
                        "pictures up to it are kept; resume with --resume and a lower "
                        "train.learning_rate, or set train.on_nan: rollback"
                    ) from None
                rollbacks += 1
                write_text(rollback_file, json.dumps({"rollbacks": rollbacks, "rates": rates.rates}))
                restored = restore_latest(checkpoint, manager, model.variables)
                rates.scale = cfg.train.rollback_lr_factor**rollbacks
                log.warning("%s; rolled back to %s (%s), learning rates now %s", bad, restored,
                            describe_step(int(step.numpy()), steps),
                            ", ".join(f"{r * rates.scale:.3g}" for r in rates.rates.values()))


def read_rollbacks(path, rates):
    """The NaN rollbacks recorded in `path` for the configured `rates`; 0 if none, or if the
    rates have changed since: a resume with a new train.learning_rate starts afresh from it."""
    if not path.exists():
        return 0
    record = json.loads(path.read_text())
    if record.get("rates") != rates:
        log.info("learning rates changed since the last NaN rollback: the rollback count starts again")
        return 0
    return record["rollbacks"]


def describe_step(step, steps_per_epoch):
    """'the end of epoch 3' at an epoch boundary, else 'epoch 4, step 7 of 20' (for logs)."""
    epoch, done = divmod(step, steps_per_epoch)
    return f"the end of epoch {epoch}" if not done else f"epoch {epoch + 1}, step {done} of {steps_per_epoch}"


def fit_from(model, data, start, steps, last_epoch, fit_callbacks, running, restored):
    """`fit` from global step `start` to the end of epoch `last_epoch`.

    A start inside an epoch (a checkpoint saved on a stop or by `checkpoint_every_steps`)
    first finishes that epoch with a `fit` of its remaining steps, its running metric means
    (the variables `running`) restored from the checkpoint `restored`, so every epoch ends
    exactly as it would have.
    """
    epoch, done = divmod(start, steps)
    verbose = 1 if sys.stdout.isatty() else 2
    batches = model.real_batches_per_step
    if done:
        model.fit(data.stream(start, batches), epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=steps - done,
                  callbacks=[callbacks.ResumeMetrics(running, restored), *fit_callbacks],
                  shuffle=False, verbose=verbose)
        epoch += 1
        if model.stop_training:  # the time budget ran out with that epoch
            return
    if epoch < last_epoch:
        model.fit(data.stream(epoch * steps, batches), epochs=last_epoch, initial_epoch=epoch, steps_per_epoch=steps,
                  callbacks=fit_callbacks, shuffle=False, verbose=verbose)  # the pipeline shuffles


def export(cfg, model, run_dir, class_names):
    """Write the end-of-training exports the config asks for."""
    if cfg.export.keras:
        model.save(run_dir / "model.keras")
    if cfg.export.saved_model:
        export_saved_model(model, run_dir / "saved_model", class_names)


def main(argv=None):
    """CLI entry point; returns the exit status (2 for errors the user can fix)."""
    return cli.run(_train_command, parse_args(argv))


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
        values["train.mixed_precision"] = precision if precision in ("mixed_float16", "auto") else \
            "none or mixed_bfloat16 (no loss scaling)"
        names = ",".join(sorted(metrics.parse_metric_names(c.eval.metrics)))  # the CSV's columns are sorted
        values["eval.metrics"] = names if c.eval.every_epochs else "(scoring off)"
        return values

    def why(key):
        if key == "train.mixed_precision":
            return "a loss-scaled (float16) optimizer keeps other variables than a plain one, so the checkpoints would not load"
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


def _train_command(args):
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ConfigError(f"--max-minutes: expected a number of minutes > 0, got {args.max_minutes}")
    cfg = load_config(args.config, args.set)
    # Created first: MultiWorkerMirroredStrategy must exist before TensorFlow runs anything,
    # and only then is it known whether this process is the chief (make_strategy is cached).
    strategy = distribute.make_strategy(cfg.train.distribute)
    chief = distribute.is_chief(strategy)
    # A worker's files go to scratch (worker_run_dir), so only the chief minds an old run.
    recorded_dir = check_run_dir(cfg, args.resume, args.overwrite or not chief)
    if args.resume:  # continue the recorded experiment; --set may still extend it
        recorded = load_config(str(recorded_dir / "config.yaml"))
        cfg = load_config(str(recorded_dir / "config.yaml"), args.set)
        check_resumable(recorded, cfg)
    # Data and model first: most mistakes (a bad model value, an empty folder) surface here,
    # and a start that fails leaves an old run (--overwrite) or a fresh name untouched.
    # A worker copies the chief's run folder before building anything: building waits for
    # every worker, so the copy is done before the chief writes to the folder again.
    run_dir = None if chief else worker_run_dir(recorded_dir, args.resume)
    try:
        prepared = prepare(cfg, strategy)
        if chief:
            run_dir = prepare_run_dir(cfg, args.resume, args.overwrite)
        return _train_in(cfg, run_dir, args, prepared)
    finally:
        if not chief:
            shutil.rmtree(run_dir.parent, ignore_errors=True)


def _train_in(cfg, run_dir, args, prepared):
    start = time.time()
    deadline = time.monotonic() + 60 * args.max_minutes if args.max_minutes else None
    try:
        write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        model, data, stop = train(cfg, run_dir, resume=args.resume, deadline=deadline, prepared=prepared)
        if stop is None:
            export(cfg, model, run_dir, data.class_names)
    except OSError as exc:  # disk full, permissions: the checkpoints written so far stay valid
        raise RunError(
            f"cannot write {exc.filename or run_dir}: {exc.strerror or exc}; free space or fix "
            "permissions, then continue with --resume"
        ) from None
    except (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError, tf.errors.UnknownError) as exc:
        # TensorFlow's own file writes (checkpoints, TensorBoard) fail with these instead
        raise RunError(
            f"cannot write in {run_dir}: {exc.message.splitlines()[0]}; free space or fix permissions, "
            "then continue with --resume"
        ) from None
    if stop is not None:
        log.warning("resume with: tfgen train --config %s --resume", run_dir / "config.yaml")
        return 130 if stop.signalled else 0
    log.info("done in %.0f s; samples, curves, checkpoints and exports are in %s", time.time() - start, run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
