"""The training loop: a prepared model and its data -> `fit` with the run's callbacks -> exports.

`train_from_config` is all of `tfgen train`: it checks the run folder (`tfgen.runs`), builds
the data and model (`tfgen.experiment.prepare`), then `train` fits them in the folder and the
exports follow. `train` owns what keeps a long run safe: checkpoints of every RNG state and
running mean (a resume, even mid-epoch, continues exactly), a stop on SIGINT / SIGTERM or a
deadline after the current step, and NaN rollbacks to the last good checkpoint.
"""

import contextlib
import logging
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfgen import autotune, callbacks, distribute, experiment, fastconv, metrics, runs, scoring
from tfgen.config import load_config
from tfgen.errors import RunError
from tfgen.export import export_saved_model

log = logging.getLogger("tfgen")


def train_from_config(config, overrides=(), resume=False, overwrite=False, max_minutes=None):
    """Train the run of `config` (a config name or path, with `--set` style `overrides`) in
    runs/<name>, from the start or with `resume` from its last checkpoint; then export it.

    Returns None when training finished, else the `callbacks.Interrupted` (a signal, or
    `max_minutes` passing) that stopped it after a checkpointed step. A run folder the run
    may not use, a config a resume cannot take, or a disk that refuses a write is a RunError
    or ConfigError before anything of an old run is lost.
    """
    cfg = load_config(config, overrides)
    # Created first: MultiWorkerMirroredStrategy must exist before TensorFlow runs anything,
    # and only then is it known whether this process is the chief (make_strategy is cached).
    strategy = distribute.make_strategy(cfg.train.distribute)
    chief = distribute.is_chief(strategy)
    # A worker's files go to scratch (worker_run_dir), so only the chief minds an old run.
    recorded_dir = runs.check_run_dir(cfg, resume, overwrite or not chief)
    if resume:  # continue the recorded experiment; overrides may still extend it
        recorded = runs.read_config(recorded_dir)
        cfg = runs.read_config(recorded_dir, overrides)
        runs.check_resumable(recorded, cfg)
    # Data and model first: most mistakes (a bad model value, an empty folder) surface here,
    # and a start that fails leaves an old run (--overwrite) or a fresh name untouched.
    # A worker copies the chief's run folder before building anything: building waits for
    # every worker, so the copy is done before the chief writes to the folder again.
    run_dir = None if chief else runs.worker_run_dir(recorded_dir, resume)
    try:
        prepared = experiment.prepare(cfg, strategy)
        if chief:
            run_dir = runs.prepare_run_dir(cfg, resume, overwrite)
        # a worker's messages name the chief's folder, the one to resume from
        shown_dir = run_dir if chief else recorded_dir
        return _train_and_export(cfg, run_dir, shown_dir, resume, max_minutes, prepared)
    finally:
        if not chief:
            shutil.rmtree(run_dir.parent, ignore_errors=True)


def _train_and_export(cfg, run_dir, shown_dir, resume, max_minutes, prepared):
    start = time.time()
    deadline = time.monotonic() + 60 * max_minutes if max_minutes else None
    try:
        model, data, stop = train(cfg, run_dir, resume=resume, deadline=deadline, prepared=prepared)
        if stop is None:
            write_exports(cfg, model, run_dir, data.class_names)
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
        log.warning("resume with: tfgen train --config %s --resume", shown_dir / runs.CONFIG_FILE)
    else:
        log.info("done in %.0f s; samples, curves, checkpoints and exports are in %s", time.time() - start, shown_dir)
    return stop


def train(cfg, run_dir, resume=False, deadline=None, prepared=None):
    """Run `fit` for `cfg` in `run_dir`: (model, ImageData, stop).

    `prepared` is what `experiment.prepare(cfg, strategy)` returned, if the caller already
    ran it (`train_from_config` does, before it touches the run directory). The resolved
    config is recorded as the run's config.yaml here, once.

    `stop` is None when training finished, else the `callbacks.Interrupted` (a signal, or
    the `deadline`, a time.monotonic() value) that stopped it after a step; that step is
    checkpointed and `resume` continues from it exactly. A NaN or infinite loss stops with
    a RunError, or with `train.on_nan: rollback` restores the last good checkpoint with
    lower learning rates, up to `train.max_rollbacks` times.
    """
    strategy = distribute.make_strategy(cfg.train.distribute)
    model, data, cfg = prepared or experiment.prepare(cfg, strategy)
    # With what auto chose, so a resume (or a rerun of config.yaml) trains with the same
    # numerics whatever a later measurement on another machine would say.
    runs.write_config(run_dir, cfg)
    jit_compile, policy = cfg.train.jit_compile, cfg.train.mixed_precision
    with strategy.scope():
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    batches = model.real_batches_per_step
    steps = experiment.steps_per_epoch(cfg, model, data)
    log.info(
        "data: %s, %d images of %s, %d steps per epoch%s; %d replica(s), %s",
        data.description,
        data.num_examples,
        "x".join(map(str, data.image_shape)),
        steps,
        f" ({batches} real batches each)" if batches > 1 else "",
        strategy.num_replicas_in_sync,
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
    rates = callbacks.LearningRates(
        {name: experiment.learning_rate_for(name, cfg.train) for name in model.optimizer_names},
        last,
        cfg.train.lr_schedule,
    )
    curves = callbacks.Curves(run_dir / "metrics.csv", run_dir / "curves.png")  # flushed on a stop, below
    # in this order: the pictures (sample grids add sample_diversity) and scores join the
    # epoch's logs before the CSV logger writes them
    fit_callbacks = [
        guard,
        rates,
        callbacks.EpochStart(),
        *(
            callbacks.PICTURES[picture](run_dir, data, model, every, last, cfg.train.num_samples, cfg.train.seed)
            for picture in model.pictures
        ),
        *([evaluation_callback(cfg, data, checkpoint, step, steps, run_dir)] if cfg.eval.every_epochs else []),
        keras.callbacks.CSVLogger(str(run_dir / "metrics.csv"), append=True),
        curves,
        callbacks.Checkpointer(
            manager, step, guard, cfg.train.checkpoint_every, last, steps, cfg.train.checkpoint_every_steps
        ),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False),
    ]

    # NaN rollbacks so far, in the run folder: a resumed run keeps the lowered learning rates
    # and the count towards train.max_rollbacks, rather than restarting at the rate that diverged
    rollbacks = runs.read_rollbacks(run_dir, rates.rates) if resume else 0
    rates.scale = cfg.train.rollback_lr_factor**rollbacks
    with stop_on_signals(guard):
        while True:
            start = int(step.numpy())
            guard.step = start
            callbacks.truncate_metrics(run_dir / "metrics.csv", start // steps)
            try:
                fit_from(model, data, start, steps, last, fit_callbacks, running, restored)
                if guard.step < last * steps:  # fit ended early: only the time budget does that
                    log.info(
                        "time budget of %g minutes spent: finished after epoch %d",
                        cfg.train.time_budget_minutes,
                        guard.step // steps,
                    )
                return model, data, None
            except callbacks.Interrupted as stop:
                curves.flush()  # the epochs that ended before the stop
                path = manager.latest_checkpoint
                if not (path or "").endswith(f"-{stop.step}"):  # an epoch end's may be saved already
                    step.assign(stop.step)
                    path = manager.save(checkpoint_number=stop.step)
                log.warning("stopped at %s: %s; saved %s", describe_step(stop.step, steps), stop.reason, path)
                return model, data, stop
            except callbacks.NonFiniteLoss as bad:
                curves.flush()
                good = manager.latest_checkpoint
                if cfg.train.on_nan == "stop" or rollbacks >= cfg.train.max_rollbacks:
                    tried = f" after {rollbacks} rollback(s)" if rollbacks else ""
                    raise RunError(
                        f"training diverged{tried}: {bad}; the last good checkpoint {good} and the "
                        "pictures up to it are kept; resume with --resume and a lower "
                        "train.learning_rate, or set train.on_nan: rollback"
                    ) from None
                rollbacks += 1
                runs.write_rollbacks(run_dir, rollbacks, rates.rates)
                restored = restore_latest(checkpoint, manager, model.variables)
                rates.scale = cfg.train.rollback_lr_factor**rollbacks
                log.warning(
                    "%s; rolled back to %s (%s), learning rates now %s",
                    bad,
                    restored,
                    describe_step(int(step.numpy()), steps),
                    ", ".join(f"{r * rates.scale:.3g}" for r in rates.rates.values()),
                )


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
        model.fit(
            data.stream(start, batches),
            epochs=epoch + 1,
            initial_epoch=epoch,
            steps_per_epoch=steps - done,
            callbacks=[callbacks.ResumeMetrics(running, restored), *fit_callbacks],
            shuffle=False,
            verbose=verbose,
        )
        epoch += 1
        if model.stop_training:  # the time budget ran out with that epoch
            return
    if epoch < last_epoch:
        model.fit(
            data.stream(epoch * steps, batches),
            epochs=last_epoch,
            initial_epoch=epoch,
            steps_per_epoch=steps,
            callbacks=fit_callbacks,
            shuffle=False,
            verbose=verbose,
        )  # the pipeline shuffles


def evaluation_callback(cfg, data, checkpoint, step, steps_per_epoch, run_dir):
    """The Evaluation callback for `cfg.eval`, with its extractor ready (trained if need be)."""
    names = metrics.parse_metric_names(cfg.eval.metrics)
    reported = metrics.reported_metrics(names)
    cache_dir = Path(cfg.run_dir) / ".cache"
    key = scoring.dataset_key(cfg.data)
    extractor = scoring.make_extractor(cfg.eval.extractor, data, cache_dir, key)

    def score(model):
        try:
            return scoring.evaluate_model(
                model, data, names, cfg.eval.num_samples, extractor, cache_dir, key, seed=cfg.train.seed
            )
        except RunError as exc:  # non-finite samples: a NaN score in the logs, training goes on
            log.warning("scoring skipped: %s", exc)
            return {name: float("nan") for name in reported}

    best = tf.train.CheckpointManager(checkpoint, run_dir / "checkpoints" / "best", max_to_keep=1)
    return callbacks.Evaluation(
        score,
        reported,
        cfg.eval.every_epochs,
        cfg.train.epochs,
        cfg.eval.best_metric,
        metrics.LOWER_IS_BETTER[cfg.eval.best_metric],
        best,
        step,
        steps_per_epoch,
        run_dir,
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
        except Exception as exc:  # noqa: BLE001  (a torn file fails in many ways: OpError, IndexError, ...)
            log.warning("checkpoint %s is unreadable (%s); trying the one before", path, str(exc).splitlines()[0][:200])
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


def describe_step(step, steps_per_epoch):
    """'the end of epoch 3' at an epoch boundary, else 'epoch 4, step 7 of 20' (for logs)."""
    epoch, done = divmod(step, steps_per_epoch)
    return f"the end of epoch {epoch}" if not done else f"epoch {epoch + 1}, step {done} of {steps_per_epoch}"


def write_exports(cfg, model, run_dir, class_names):
    """Write the end-of-training exports the config asks for: model.keras, saved_model/."""
    if cfg.export.keras:
        model.save(run_dir / "model.keras")
    if cfg.export.saved_model:
        export_saved_model(model, run_dir / "saved_model", class_names)
