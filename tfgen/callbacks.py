"""Keras callbacks that fill the run directory while `fit` runs.

All of them read what they need from the run directory or the model, never from the config,
so a resumed run continues the same files: sample grids from the same fixed latent batch,
curves re-drawn from the whole metrics.csv, checkpoints numbered by epoch.
"""

import csv
import math
from pathlib import Path

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tfgen import images  # noqa: E402


def _is_due(epoch, every, last_epoch):
    """Whether a 1-based `epoch` is a multiple of `every` or the last one."""
    return epoch % every == 0 or epoch == last_epoch


class SampleGrid(keras.callbacks.Callback):
    """`samples/epoch_NNN.png` from a fixed latent batch, and `progress.gif` of them all.

    The same z every time, so the grids show one set of faces (or digits) evolving.
    """

    def __init__(self, run_dir, latent, every, last_epoch):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.latent = latent
        self.every = every
        self.last_epoch = last_epoch

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1
        if not (epoch == 1 or _is_due(epoch, self.every, self.last_epoch)):
            return
        samples = images.to_uint8(self.model(self.latent, training=False))
        images.save_png(self.run_dir / "samples" / f"epoch_{epoch:03d}.png", images.make_grid(samples))
        frames = sorted((self.run_dir / "samples").glob("epoch_*.png"))
        images.save_gif(self.run_dir / "progress.gif", frames)


class Curves(keras.callbacks.Callback):
    """`curves.png`: every metric in metrics.csv against the epoch, re-drawn each epoch.

    Losses share one panel; `*_score` metrics (D(x), D(G(z)) as probabilities) get their own
    panel with the 0.5 line a balanced GAN hovers around.
    """

    def __init__(self, csv_path, png_path):
        super().__init__()
        self.csv_path = Path(csv_path)
        self.png_path = Path(png_path)

    def on_epoch_end(self, epoch, logs=None):
        with open(self.csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows:
            plot_curves(rows, self.png_path)


def plot_curves(rows, path):
    """Plot metrics.csv rows (dicts with an "epoch" column, 0-based) to `path`."""
    epochs = [int(r["epoch"]) + 1 for r in rows]
    # CSVLogger adds empty val_* columns when there is no validation data: drop them.
    names = [k for k in rows[0] if k != "epoch" and any(r[k] not in ("", None) for r in rows)]
    scores = [n for n in names if n.endswith("_score")]
    panels = [("losses", [n for n in names if n not in scores])]
    if scores:
        panels.append(("scores: D(x) = real_score, D(G(z)) = fake_score", scores))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, columns) in zip(axes[0], panels):
        for name in columns:
            values = [_number(r[name]) for r in rows]
            ax.plot(epochs, values, label=name, marker="." if len(epochs) < 30 else None)
        if columns is scores:
            ax.axhline(0.5, color="gray", linestyle="--", linewidth=1)
            ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


class Checkpointer(keras.callbacks.Callback):
    """Saves a `tf.train.CheckpointManager` every `every` epochs and at the last one.

    `epoch` is a tf.Variable inside the checkpoint, so a restore knows where to continue.
    """

    def __init__(self, manager, epoch, every, last_epoch):
        super().__init__()
        self.manager = manager
        self.epoch = epoch
        self.every = every
        self.last_epoch = last_epoch

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1
        if _is_due(epoch, self.every, self.last_epoch):
            self.epoch.assign(epoch)
            self.manager.save(checkpoint_number=epoch)
