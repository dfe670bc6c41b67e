"""Run-control callbacks: what keeps a long `fit` safe and resumable.

`Guard` counts global steps, stops on a NaN loss (`NonFiniteLoss`) or on request
(`Interrupted`: a signal or a deadline) and ends training when the time budget is spent;
`Checkpointer` saves checkpoints numbered by global step (`ckpt-<step>`), at epoch ends and
every `train.checkpoint_every_steps` steps; `ResumeMetrics` restores a cut epoch's running
means; `LearningRates` sets the rates each epoch (schedule, NaN rollbacks); `EpochStart` tells
the model its epoch; `Evaluation` scores the model and keeps the best checkpoint (numbered by
its epoch, in checkpoints/best). They read what they need from the run folder or the model,
never from the config, so a resumed run continues the same files.
"""

import csv
import json
import math
import time
from pathlib import Path

import keras
import tensorflow as tf

from tfgen.callbacks.schedule import is_due
from tfgen.files import atomic_path, write_text


class Guard(keras.callbacks.Callback):
    """Counts global steps and checks after each: finite metrics, no stop requested.

    A stop is requested by a signal handler (`request_stop`) or by the deadline passing.
    In a multi-worker run one worker's request must stop them all at the same step, or
    the others would wait for it in their next collective and die: `agree(flags)` then
    all-reduces this worker's [deadline passed, signal received] flags every step, so every
    worker sees the same verdict at the same step boundary.

    It raises instead of setting `stop_training`, so Keras does not run the epoch-end
    callbacks of a half-finished epoch (no metrics row or grid for it); the training loop
    catches the exception and decides (save and exit, or roll back). A stop after an
    epoch's last step waits until that epoch's row, grid and checkpoint are written and is
    raised when the next epoch begins (if there is none, training simply finishes).
    """

    def __init__(self, steps_per_epoch, start_step=0, deadline=None, agree=None, budget_deadline=None):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        # train.time_budget_minutes: after the epoch that passes this time.monotonic() value,
        # training *finishes* (stop_training: exports follow), unlike the stop above
        self.budget_deadline = budget_deadline
        self.step = start_step  # global steps done
        self.deadline = deadline  # time.monotonic() value, or None
        self.agree = agree
        self.stop_reason = None
        self.pending = None  # an Interrupted to raise when the next epoch begins

    def request_stop(self, reason):
        """Ask for a stop at the next step boundary (safe to call from a signal handler)."""
        self.stop_reason = reason

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        for name, value in (logs or {}).items():
            if not math.isfinite(float(value)):
                raise NonFiniteLoss(name, float(value), self.step, self.steps_per_epoch)
        late_here = self.deadline is not None and time.monotonic() > self.deadline
        late, signalled = late_here, self.stop_reason is not None
        if self.agree is not None:
            late, signalled = self.agree([late, signalled])
        if not (late or signalled):
            return
        if self.stop_reason is not None:
            reason = self.stop_reason
        elif signalled:
            reason = "another worker received a signal"
        else:
            reason = "the --max-minutes deadline passed" + ("" if late_here else " on another worker")
        stop = Interrupted(reason, self.step, signalled)
        if self.step % self.steps_per_epoch:
            raise stop
        self.pending = stop

    def on_epoch_begin(self, epoch, logs=None):
        if self.pending is not None:
            stop, self.pending = self.pending, None
            raise stop

    def on_epoch_end(self, epoch, logs=None):
        if self.budget_deadline is None:
            return
        spent = time.monotonic() > self.budget_deadline
        if self.agree is not None:  # every worker finishes after the same epoch
            spent = self.agree([spent, False])[0]
        if spent:
            self.model.stop_training = True


class Interrupted(Exception):
    """Training stopped on request (a signal or the deadline) after global step `step`."""

    def __init__(self, reason, step, signalled):
        super().__init__(reason)
        self.reason = reason
        self.step = step
        self.signalled = signalled  # a signal (exit 130), not the deadline (exit 0)


class NonFiniteLoss(Exception):
    """A metric went NaN or infinite; the weights of this step cannot be trusted."""

    def __init__(self, name, value, step, steps_per_epoch):
        epoch, done = divmod(step - 1, steps_per_epoch)
        super().__init__(f"{name} = {value} at epoch {epoch + 1}, step {done + 1}")


class Checkpointer(keras.callbacks.Callback):
    """Saves a `tf.train.CheckpointManager` at epoch ends and every `every_steps` steps.

    At the end of every `every` epochs and of the last one; and, when `every_steps` > 0,
    whenever the global step (counted by `guard`) is a multiple of it, so a kill -9 in the
    middle of an hour-long epoch loses at most that many steps. Checkpoints are numbered by
    global step (`ckpt-<step>`); `step` is a tf.Variable inside the checkpoint, so a restore
    knows where to continue, mid-epoch included. TensorFlow writes the data files first and
    the `checkpoint` index last, by rename, so a kill mid-save leaves the previous one current.
    """

    def __init__(self, manager, step, guard, every, last_epoch, steps_per_epoch, every_steps=0):
        super().__init__()
        self.manager = manager
        self.step = step
        self.guard = guard
        self.every = every
        self.last_epoch = last_epoch
        self.steps_per_epoch = steps_per_epoch
        self.every_steps = every_steps

    def on_train_batch_end(self, batch, logs=None):
        done = self.guard.step
        if self.every_steps and done % self.every_steps == 0 and done % self.steps_per_epoch:
            self.save(done)  # an epoch's last step is saved at its end, after its logs

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1
        done = epoch * self.steps_per_epoch
        on_step = self.every_steps and done % self.every_steps == 0
        if is_due(epoch, self.every, self.last_epoch, self.model) or on_step:
            self.save(done)

    def save(self, step):
        self.step.assign(step)
        return self.manager.save(checkpoint_number=step)


class ResumeMetrics(keras.callbacks.Callback):
    """Restores the running means of an epoch that a checkpoint cut in the middle.

    `fit` resets every metric when an epoch begins; for the resumed part of a cut epoch
    this puts back the means of its steps before the cut (saved in the checkpoint), so its
    metrics.csv row averages the whole epoch, as in an uninterrupted run. Use it for that
    epoch's `fit` only.
    """

    def __init__(self, variables, path):
        super().__init__()
        self.variables = variables  # the metrics' variables, saved as `metrics` in the checkpoint
        self.path = path

    def on_epoch_begin(self, epoch, logs=None):
        tf.train.Checkpoint(metrics=self.variables).restore(self.path).expect_partial()


class LearningRates(keras.callbacks.Callback):
    """Sets every optimizer's rate when an epoch begins (a resumed part-epoch included):
    its configured rate x `scale` (lowered by NaN rollbacks) x the schedule's factor.

    Schedules: "constant"; "linear_decay", constant for the first half of training, then
    falling linearly towards 0 over the second half (CycleGAN's, Zhu et al. 2017).
    """

    def __init__(self, rates, epochs, schedule="constant"):
        super().__init__()
        self.rates = rates  # {optimizer attribute name: configured rate}
        self.epochs = epochs
        self.schedule = schedule
        self.scale = 1.0

    def factor(self, epoch):
        """The schedule's factor for the 0-based `epoch`."""
        if self.schedule == "constant":
            return 1.0
        constant = self.epochs // 2
        return 1.0 - max(0, epoch + 1 - constant) / (self.epochs - constant + 1)

    def on_epoch_begin(self, epoch, logs=None):
        for name, rate in self.rates.items():
            getattr(self.model, name).learning_rate.assign(rate * self.scale * self.factor(epoch))


class EpochStart(keras.callbacks.Callback):
    """Tells the model each epoch's number as it begins (`GenerativeModel.begin_epoch`)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.begin_epoch(epoch)


class Evaluation(keras.callbacks.Callback):
    """Scores the model every `every` epochs and keeps the best checkpoint.

    `evaluate` maps the model to {metric: value} (tfgen.scoring.evaluate_model). The values
    join the epoch's logs, so metrics.csv, curves.png and TensorBoard show them; on other
    epochs they are NaN, because the CSV logger fixes its columns at the first epoch. Place
    it before the CSV logger. The best value of `best_metric` so far is saved with
    `best_manager` and described in `best.json`.
    """

    def __init__(
        self,
        evaluate,
        names,
        every,
        last_epoch,
        best_metric,
        lower_is_better,
        best_manager,
        step,
        steps_per_epoch,
        run_dir,
    ):
        super().__init__()
        self.evaluate = evaluate
        self.names = names
        self.every = every
        self.last_epoch = last_epoch
        self.best_metric = best_metric
        self.lower_is_better = lower_is_better
        self.best_manager = best_manager
        self.step = step
        self.steps_per_epoch = steps_per_epoch
        self.best_path = Path(run_dir) / "best.json"
        self.best = read_best(self.best_path, best_metric)

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1
        if not is_due(epoch, self.every, self.last_epoch, self.model):
            logs.update({name: math.nan for name in self.names})
            return
        result = self.evaluate(self.model)
        logs.update({name: result.get(name, math.nan) for name in self.names})
        value = result[self.best_metric]
        if not math.isfinite(value):  # never "best": every later comparison with NaN is false
            return
        if self.best is None or (value < self.best if self.lower_is_better else value > self.best):
            self.best = value
            self.step.assign(epoch * self.steps_per_epoch)
            self.best_manager.save(checkpoint_number=epoch)
            write_text(self.best_path, json.dumps({"metric": self.best_metric, "value": value, "epoch": epoch}))


def read_best(path, metric):
    """The best value of `metric` recorded in `path` (best.json), or None: no record yet, or
    one for another metric (a resume that changed eval.best_metric), or not finite."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    value = record.get("value")
    finite = isinstance(value, (int, float)) and math.isfinite(value)
    return value if record.get("metric") == metric and finite else None


def truncate_metrics(path, start_epoch):
    """Keep only complete metrics.csv rows of epochs before `start_epoch` (for a resume).

    A run killed after its last checkpoint logged epochs the resumed run will redo, and a
    kill during a write can leave a torn last line; both are dropped.
    """
    path = Path(path)
    if not path.exists():
        return
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        rows = [r for r in reader if header and len(r) == len(header) and r[0].isdigit() and int(r[0]) < start_epoch]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
