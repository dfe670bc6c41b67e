"""Picture callbacks: what a run draws into its folder while `fit` runs.

A model asks for its pictures by name in its `pictures` attribute (`PICTURES` maps each name
to a factory): sample grids from one fixed latent batch, translation grids, a VAE's
reconstructions, interpolations and latent maps, SDPC's atoms and corrupted reconstructions,
and `curves.png` from metrics.csv. The fixed inputs (latents, real images) are stored in the
run folder, so a resumed run draws the same ones. Each picture is drawn the first epoch,
every `train.sample_every` epochs and the last (`picture_due`).
"""

import csv
import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure  # not pyplot: no global backend to set

from tfgen import images
from tfgen.callbacks.schedule import picture_due
from tfgen.files import atomic_path
from tfgen.models.base import draw_noise


def sample_diversity(samples):
    """Mean pairwise RMS pixel distance between samples in [-1, 1] (0 = all identical).

    A mode-collapse watch: it falls towards 0 when G starts emitting one image for every z.
    """
    x = np.asarray(samples, np.float64).reshape(len(samples), -1)
    squared = np.sum(x**2, axis=1)
    d2 = np.maximum(squared[:, None] + squared[None, :] - 2.0 * x @ x.T, 0.0)
    upper = np.triu_indices(len(x), k=1)
    return float(np.mean(np.sqrt(d2[upper] / x.shape[1])))


class SampleGrid(keras.callbacks.Callback):
    """`samples/epoch_NNN.png` from a fixed latent batch, and `progress.gif` of them all.

    The same z every time, so the grids show one set of faces (or digits) evolving. For a
    conditional model (`num_classes` > 0) row k shows class k, each column one z. Every
    epoch it also adds `sample_diversity` of that batch to the logs (so metrics.csv and
    curves.png show it): place it before the CSV logger. A model whose sampler makes several
    network calls an image (`sampling_calls`, a diffusion model's steps) is sampled on the
    grids' epochs only, its `sample_diversity` NaN between them: drawing 25-step samples
    every epoch took half of a 64 px diffusion run's time.

    Each grid is also a TensorBoard image (`samples` in `logs/samples`) whose step is Keras'
    0-based epoch, as for the TensorBoard callback's scalars: it sits beside that epoch's losses.
    """

    def __init__(self, run_dir, latent, every, last_epoch, num_classes=0):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.every = every
        self.last_epoch = last_epoch
        self.labels = None
        self.columns = None
        if num_classes:
            self.columns = max(1, len(latent) // num_classes)
            latent = np.concatenate([latent[: self.columns]] * num_classes)  # any noise shape
            self.labels = np.repeat(np.arange(num_classes), self.columns)
        self.latent = latent
        self.writer = None  # TensorBoard's, opened at the first grid

    @classmethod
    def for_run(cls, run_dir, data, model, every, last_epoch, num_samples, seed):
        """The callback for a run, its latent batch stored in the run (a resume reuses it)."""
        latent = fixed_latent(Path(run_dir), num_samples, model.noise_shape, seed)
        return cls(run_dir, latent, every, last_epoch, model.num_classes)

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1
        due = picture_due(epoch, self.every, self.last_epoch, self.model)
        if not due and self.model.sampling_calls > 1:
            if logs is not None:
                logs["sample_diversity"] = float("nan")
            return
        samples = np.asarray(self.model.generate(self.latent, self.labels))
        if logs is not None:
            logs["sample_diversity"] = sample_diversity(samples)
        if not due:
            return
        grid = images.make_grid(images.to_uint8(samples), columns=self.columns)
        self.writer = save_epoch_grid(self.run_dir, epoch, grid, self.writer)


def save_epoch_grid(run_dir, epoch, grid, writer=None):
    """`samples/epoch_NNN.png`, `progress.gif` of all of them, and the TensorBoard image
    (step: the 0-based epoch, beside that epoch's scalars); returns the TensorBoard writer,
    opened at the first grid."""
    images.save_png(run_dir / "samples" / f"epoch_{epoch:03d}.png", grid)
    grids = images.epoch_grids(run_dir / "samples")
    images.save_gif(run_dir / "progress.gif", [grids[e] for e in sorted(grids)])
    if writer is None:
        writer = tf.summary.create_file_writer(str(run_dir / "logs" / "samples"))
    with writer.as_default():
        tf.summary.image("samples", grid[None], step=epoch - 1)
    writer.flush()  # a run killed later keeps the grids drawn so far
    return writer


def fixed_latent(run_dir, num, noise_shape, seed):
    """The noise batch [num, *noise_shape] behind every sample grid, stored so a resumed run reuses it."""
    path = run_dir / "samples" / "latent.npy"
    if path.exists():
        return np.load(path)
    latent = draw_noise(np.random.default_rng(seed), num, tuple(noise_shape))
    with atomic_path(path) as tmp:
        np.save(tmp, latent)
    return latent


class TranslationGrid(keras.callbacks.Callback):
    """For a two-domain translator (CycleGAN): `samples/epoch_NNN.png` and `progress.gif`.

    Fixed real images of each domain (stored in the run, so a resume shows the same ones),
    in row triples: A, A -> B, A -> B -> A, then B, B -> A, B -> A -> B. The first epoch,
    every `every` epochs and the last one, like the sample grids of the other models.
    """

    def __init__(self, run_dir, real_a, real_b, every, last_epoch):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.real_a = real_a
        self.real_b = real_b
        self.every = every
        self.last_epoch = last_epoch
        self.writer = None

    @classmethod
    def for_run(cls, run_dir, data, model, every, last_epoch, num_samples, seed):
        run_dir = Path(run_dir)
        columns = max(1, min(8, num_samples))
        real_a, _ = fixed_real_batch(run_dir, data.a.dataset, columns, "real_a.npz")
        real_b, _ = fixed_real_batch(run_dir, data.b.dataset, columns, "real_b.npz")
        return cls(run_dir, real_a, real_b, every, last_epoch)

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1
        if picture_due(epoch, self.every, self.last_epoch, self.model):
            self.writer = save_epoch_grid(self.run_dir, epoch, self.grid(), self.writer)

    def grid(self):
        rows = []
        for real, there, back in ((self.real_a, "a2b", "b2a"), (self.real_b, "b2a", "a2b")):
            translated = self.model.translate(real, there)
            rows += [real, np.asarray(translated), np.asarray(self.model.translate(translated, back))]
        return images.make_grid(images.to_uint8(np.concatenate(rows)), columns=len(self.real_a))


def take_examples(dataset, num):
    """The first `num` (images, labels) of a batched dataset, as numpy arrays."""
    images, labels = [], []
    for batch_images, batch_labels in dataset:
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
        if sum(len(b) for b in images) >= num:
            break
    return np.concatenate(images)[:num], np.concatenate(labels)[:num]


def fixed_real_batch(run_dir, dataset, num, name="real.npz"):
    """Real images (and labels) behind the reconstruction pictures, stored like the latents."""
    path = run_dir / "samples" / name
    if not path.exists():
        images, labels = take_examples(dataset, num)
        with atomic_path(path) as tmp:
            np.savez(tmp, images=images, labels=labels)
    stored = np.load(path)
    return stored["images"], stored["labels"]


class VAEPictures(keras.callbacks.Callback):
    """The pictures that show what a VAE learned (after the TensorFlow CVAE tutorial).

    Every `every` epochs: `reconstructions.png`, input rows above their reconstructions.
    At the end: `interpolation.png` / `.gif`, decoding a straight line between the posterior
    means of two real images; and for `latent_dim` 2, `manifold.png` (the decoder over a grid
    of the latent plane) and `latent_scatter.png` (encoded images coloured by label).
    """

    def __init__(self, run_dir, real, labels, every, last_epoch, scatter_data=None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.real = real
        self.labels = labels
        self.every = every
        self.last_epoch = last_epoch
        self.scatter_data = scatter_data

    @classmethod
    def for_run(cls, run_dir, data, model, every, last_epoch, num_samples, seed):
        """The callback for a run: its fixed real batch (stored in the run, so a resume draws
        the same images) and, for a 2-d latent space, 2000 images for the scatter."""
        real, labels = fixed_real_batch(Path(run_dir), data.dataset, 32)
        scatter = take_examples(data.dataset, 2000) if model.latent_dim == 2 else None
        return cls(run_dir, real, labels, every, last_epoch, scatter)

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1
        if picture_due(epoch, self.every, self.last_epoch, self.model):
            self.save_reconstructions()

    def on_train_end(self, logs=None):
        self.save_interpolation()
        if self.model.latent_dim == 2:
            self.save_manifold()
            if self.scatter_data is not None:
                self.save_scatter()

    def save_reconstructions(self, columns=8):
        real = self.real[: 4 * columns]
        rec = self.model.reconstruct(real, self._labels(len(real)))
        rows = []
        for start in range(0, len(real), columns):
            rows += [real[start : start + columns], rec[start : start + columns]]
        grid = images.make_grid(images.to_uint8(np.concatenate(rows)), columns=columns)
        images.save_png(self.run_dir / "reconstructions.png", grid)

    def save_interpolation(self, steps=10):
        labels = self._labels(2)
        mean, _ = self.model.encode(self.real[:2], labels)
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        z = (1 - t) * mean[0] + t * mean[1]
        frame_labels = None if labels is None else np.repeat(labels[:1], steps)
        frames = images.to_uint8(self.model.generate(z, frame_labels))
        images.save_png(self.run_dir / "interpolation.png", images.make_grid(frames, columns=steps))
        big = [images.make_grid(f[None], min_width=256, pad=0) for f in frames]
        images.save_gif(self.run_dir / "interpolation.gif", big + big[::-1], seconds_per_frame=0.15)

    def save_manifold(self, n=20):
        from scipy.stats import norm  # noqa: PLC0415  (slow to import; only a 2-d latent space needs it)

        axis = norm.ppf(np.linspace(0.05, 0.95, n)).astype(np.float32)
        z = np.array([[x, y] for y in axis[::-1] for x in axis], np.float32)
        labels = None if self.labels is None else np.zeros(len(z), np.int64)
        decoded = images.to_uint8(self.model.generate(z, labels))
        images.save_png(self.run_dir / "manifold.png", images.make_grid(decoded, columns=n, pad=0))

    def save_scatter(self):
        xs, ys = self.scatter_data
        mean, _ = self.model.encode(xs, self._labels(len(xs), ys))
        mean = np.asarray(mean)
        fig = Figure(figsize=(7, 6))
        ax = fig.subplots()
        points = ax.scatter(mean[:, 0], mean[:, 1], c=ys, cmap="tab10", s=6)
        fig.colorbar(points, ax=ax, label="label")
        ax.set_xlabel("z[0]")
        ax.set_ylabel("z[1]")
        ax.set_title("posterior means of training images")
        fig.tight_layout()
        with atomic_path(self.run_dir / "latent_scatter.png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")

    def _labels(self, n, labels=None):
        """Labels for a conditional model's calls, None for an unconditional one."""
        if not self.model.needs_labels:
            return None
        return (self.labels if labels is None else labels)[:n]


class AtomPictures(keras.callbacks.Callback):
    """What a sparse-coding model (SDPC) learned: its atoms, and how sparse its codes are.

    Every `every` epochs (and the first and last): `atoms/layer_<i>.png`, the atoms of each
    layer in pixel space (layer 1: the kernels; higher layers: projected down through the
    dictionaries below, `model.atoms(i)`), each scaled to its own range, mid-grey = 0; and
    `atoms/layer_1_epoch_NNN.png`, so the first layer's learning can be followed. Every epoch,
    `sparsity.png`: each layer's fraction of active code units (the `active_<i>` metrics,
    read back from metrics.csv plus this epoch's logs, so a resumed run keeps its history).
    """

    def __init__(self, run_dir, every, last_epoch):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.every = every
        self.last_epoch = last_epoch

    @classmethod
    def for_run(cls, run_dir, data, model, every, last_epoch, num_samples, seed):
        return cls(run_dir, every, last_epoch)

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1
        if picture_due(epoch, self.every, self.last_epoch, self.model):
            self.save_atoms(epoch)
        self.save_sparsity(epoch, logs or {})

    def save_atoms(self, epoch):
        for layer in range(1, self.model.num_layers + 1):
            atoms = np.asarray(self.model.atoms(layer))
            grid = images.make_grid(images.to_uint8(atoms), columns=min(16, len(atoms)), pad=1)
            images.save_png(self.run_dir / "atoms" / f"layer_{layer}.png", grid)
            if layer == 1:
                images.save_png(self.run_dir / "atoms" / f"layer_1_epoch_{epoch:03d}.png", grid)

    def save_sparsity(self, epoch, logs):
        names = [f"active_{i}" for i in range(1, self.model.num_layers + 1)]
        history = {}
        path = self.run_dir / "metrics.csv"
        if path.exists():
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    history[int(row["epoch"]) + 1] = [_number(row.get(n)) for n in names]
        history[epoch] = [float(logs.get(n, math.nan)) for n in names]
        epochs = sorted(history)
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        for i in range(len(names)):
            ax.plot(epochs, [history[e][i] for e in epochs], marker=".", label=f"layer {i + 1}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("fraction of active code units")
        ax.set_yscale("log")
        ax.set_title("code sparsity per layer (lower: sparser)")
        ax.grid(alpha=0.3)
        ax.legend()
        set_margins(fig, left=1.05)
        with atomic_path(self.run_dir / "sparsity.png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")


class CorruptedReconstructions(keras.callbacks.Callback):
    """`reconstructions.png` for a model that reconstructs without a latent posterior (SDPC).

    Fixed real images (stored in the run) in row pairs: clean inputs and their
    reconstructions, inputs with Gaussian noise and theirs, blurred inputs and theirs (the
    corruptions `tfgen evaluate --metric rec` scores). A model that does not sample also
    draws it as its epoch grid (`samples/epoch_NNN.png`, `progress.gif`, the sweep's thumbnail).
    """

    def __init__(self, run_dir, real, every, last_epoch):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.real = real
        self.every = every
        self.last_epoch = last_epoch
        self.writer = None

    @classmethod
    def for_run(cls, run_dir, data, model, every, last_epoch, num_samples, seed):
        real, _ = fixed_real_batch(Path(run_dir), data.dataset, 8)
        return cls(run_dir, real, every, last_epoch)

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1
        if not picture_due(epoch, self.every, self.last_epoch, self.model):
            return
        grid = self.grid()
        images.save_png(self.run_dir / "reconstructions.png", grid)
        if not self.model.samples_from_noise:
            self.writer = save_epoch_grid(self.run_dir, epoch, grid, self.writer)

    def grid(self):
        rows = []
        for inputs in (self.real, images.add_noise(self.real), images.blur(self.real)):
            rows += [inputs, np.asarray(self.model.reconstruct(inputs))]
        return images.make_grid(images.to_uint8(np.concatenate(rows)), columns=len(self.real))


class Curves(keras.callbacks.Callback):
    """`curves.png`: every metric in metrics.csv against the epoch, re-drawn as epochs end.

    Losses share one panel; `*_score` metrics (D(x), D(G(z)) as probabilities) get their own
    panel with the 0.5 line a balanced GAN hovers around; `sample_diversity` and the
    evaluation metrics get one each.

    Drawing takes about 0.3 s. After an epoch the picture is re-drawn if at least `budget`
    times its last drawing time has passed since it was last drawn (or since training began),
    and always when training ends (`flush`, which a stopped run calls too): epochs of a few
    seconds or more get a picture each, and the picture never costs more than about
    1 / `budget` of a run of very short epochs.
    """

    def __init__(self, csv_path, png_path, budget=10, clock=time.monotonic):
        super().__init__()
        self.csv_path = Path(csv_path)
        self.png_path = Path(png_path)
        self.budget = budget
        self.clock = clock
        self.cost = 0.3  # seconds, until a drawing is timed
        self.drawn_at = None
        self.pending = False

    def on_train_begin(self, logs=None):
        self.drawn_at = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        self.pending = True
        if self.drawn_at is None or self.clock() - self.drawn_at >= self.budget * self.cost:
            self.draw()

    def on_train_end(self, logs=None):
        self.flush()

    def flush(self):
        """Draw the epochs that ended since the last drawing, if any."""
        if self.pending:
            self.draw()

    def draw(self):
        start = self.clock()
        with open(self.csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows:
            plot_curves(rows, self.png_path)
        self.drawn_at = self.clock()
        self.cost, self.pending = self.drawn_at - start, False


EVAL_METRICS = ("fid", "kid", "is", "precision", "recall")


def plot_curves(rows, path):
    """Plot metrics.csv rows (dicts with an "epoch" column, 0-based) to `path`.

    One panel each for losses, D's scores, sample diversity and evaluation metrics (the last
    are only computed every few epochs, so they are drawn as points).
    """
    epochs = [int(r["epoch"]) + 1 for r in rows]
    # CSVLogger writes empty or NA val_* columns when there is no validation data: drop them.
    names = [k for k in rows[0] if k != "epoch" and any(r[k] not in ("", "NA", None) for r in rows)]
    groups = {
        "scores: D(x) = real_score, D(G(z)) = fake_score": [n for n in names if n.endswith("_score")],
        "diversity of the fixed-z samples (falls on mode collapse)": [n for n in names if n == "sample_diversity"],
        "sample quality (eval.every_epochs)": [n for n in names if n in EVAL_METRICS],
    }
    grouped = {n for members in groups.values() for n in members}
    panels = [("losses", [n for n in names if n not in grouped])]
    panels += [(title, members) for title, members in groups.items() if members]
    fig = Figure(figsize=(6 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, columns) in zip(axes[0], panels):
        for name in columns:
            values = [_number(r[name]) for r in rows]
            sparse = any(math.isnan(v) for v in values)
            ax.plot(
                epochs,
                values,
                label=name,
                marker="o" if sparse or len(epochs) < 30 else None,
                linestyle="none" if sparse else "-",
            )
        if title.startswith("scores"):
            ax.axhline(0.5, color="gray", linestyle="--", linewidth=1)
            ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    set_margins(fig, len(panels))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def set_margins(fig, columns=1, left=0.7, right=0.25, bottom=0.55, top=0.4, gap=0.8):
    """Fixed margins (inches) around `columns` panels side by side, for the pictures redrawn
    every epoch: `tight_layout` measures every tick label first, about half of a curves.png's
    CPU time (0.52 s against 0.29 s without it; such redraws are most of a toy run)."""
    width, height = fig.get_size_inches()
    axes_width = (width - left - right - gap * (columns - 1)) / columns
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=gap / axes_width,
    )


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


# Picture callbacks a model asks for by name in its `pictures` attribute: name ->
# factory(run_dir, data, model, every, last_epoch, num_samples, seed), `data` an ImageData
# (a TwoDomainData for two-domain models).
PICTURES = {
    "samples": SampleGrid.for_run,
    "reconstructions": VAEPictures.for_run,
    "translations": TranslationGrid.for_run,
    "atoms": AtomPictures.for_run,
    "corrupted_reconstructions": CorruptedReconstructions.for_run,
}
