"""Data sources -> one `tf.data` pipeline.

`build_dataset(cfg)` picks the source named by `data.source`, applies `data.limit`, checks
that at least one full batch exists, reports skipped files once, and returns the batched
dataset with what the model needs to know about it (`ImageData`).
"""

import logging
from dataclasses import dataclass

import tensorflow as tf

from tfgen.data.digits import digits_source
from tfgen.data.domains import TwoDomainData
from tfgen.data.folder import folder_source
from tfgen.data.kaggle import kaggle_source
from tfgen.data.mnist5k import mnist5k_source
from tfgen.data.pipeline import PREFETCH, epoch_batches, prepare, training_stream, untuned
from tfgen.data.tfds import tfds_source
from tfgen.errors import ConfigError, DataError, TfgenError

log = logging.getLogger("tfgen")

SOURCES = {
    "digits": digits_source,
    "mnist5k": mnist5k_source,
    "tfds": tfds_source,
    "folder": folder_source,
    "kaggle": kaggle_source,
}


@dataclass
class ImageData:
    """A prepared image set, its facts, and its batches.

    `dataset` is one epoch of (float32 [B, S, S, C] in [-1, 1], int64 [B] labels; 0 if
    unlabelled) batches, for evaluation and pictures; `stream(start_step)` is the endless
    training input, every pass over the data shuffled reproducibly, from global step
    `start_step` on (so a resume continues exactly where the checkpoint left off, even
    when train.steps_per_epoch is not one pass).
    """

    prepared: tf.data.Dataset
    config: object
    seed: int
    num_examples: int
    class_names: list
    image_shape: tuple
    description: str
    skipped: list
    batch_size: int

    @property
    def dataset(self):
        # Declaring the length lets Keras run several epochs over it (the classifier extractor).
        batches = epoch_batches(self.prepared, self.config, self.seed, 0)
        return untuned(batches.apply(tf.data.experimental.assert_cardinality(self.steps_per_epoch)).prefetch(PREFETCH))

    def stream(self, start_step=0, batches_per_step=1):
        """The endless training input from global step `start_step` on.

        A model that makes several updates per step from fresh real images (a WGAN critic's
        `d_steps`) takes `batches_per_step` batches at once, as one batch of that many times
        `batch_size` images, which it splits.
        """
        self.require_steps(batches_per_step)
        data_pass, offset = divmod(start_step, self.steps_per_pass(batches_per_step))
        step_batch = self.batch_size * batches_per_step
        return training_stream(self.prepared, self.config, self.seed, data_pass, step_batch).skip(offset)

    def require_steps(self, batches_per_step):
        """DataError unless one pass holds at least one step of `batches_per_step` batches."""
        if self.steps_per_pass(batches_per_step) < 1:
            raise DataError(
                f"one training step takes {batches_per_step} batches of data.batch_size {self.batch_size} "
                f"(model.d_steps), {batches_per_step * self.batch_size} images, more than the "
                f"{self.num_examples} in {self.description}; lower model.d_steps or data.batch_size"
            )

    def steps_per_pass(self, batches_per_step=1):
        """Training steps in one pass over the data (the last partial batch is dropped)."""
        return self.num_examples // (self.batch_size * batches_per_step)

    @property
    def steps_per_epoch(self):
        """Full batches in one pass (the last partial batch is dropped)."""
        return self.steps_per_pass(1)


def skip_report(source):
    """One line naming (up to 5 of) the files a source skipped, and why, for the user to fix.

    For example "skipped 3 of 9 files in folder data: 2 could not be decoded (a.png, b.jpg);
    1 not in a supported image format (notes.txt)".
    """
    parts = []
    reasons = {"could not be decoded": source.skipped, "not in a supported image format": source.unsupported}
    for why, files in reasons.items():
        if files:
            shown = ", ".join(files[:5]) + (" ..." if len(files) > 5 else "")
            parts.append(f"{len(files)} {why} ({shown})")
    skipped = len(source.skipped) + len(source.unsupported)
    return f"skipped {skipped} of {skipped + source.num_examples} files in {source.description}: {'; '.join(parts)}"


def _domain_data(cfg, domain, seed):
    """`build_dataset` of one domain; its errors name the domain's keys (data.domain_a.path)."""
    try:
        return build_dataset(getattr(cfg, domain), seed)
    except TfgenError as exc:
        message = str(exc)
        if not message.startswith("data."):
            raise
        raise type(exc)(f"data.{domain}.{message.removeprefix('data.')}") from None


def build_dataset(cfg, seed=0, require_labels=False, domains=1):
    """`cfg` (a DataConfig) -> ImageData, or for `domains` 2 a TwoDomainData of
    `cfg.domain_a` and `cfg.domain_b`; DataError or ConfigError for what the user must fix."""
    given = [d for d in ("domain_a", "domain_b") if getattr(cfg, d) is not None]
    if domains == 2:
        if len(given) < 2:
            raise ConfigError(
                "this model translates between two image domains: set data.domain_a and data.domain_b, "
                "each with its own source (e.g. domain_a: {source: folder, path: photos})"
            )
        return TwoDomainData(_domain_data(cfg, "domain_a", seed), _domain_data(cfg, "domain_b", seed + 1))
    if given:
        raise ConfigError(
            f"data.{given[0]}: only two-domain models (cyclegan) read data.domain_a / "
            "data.domain_b; this model reads data.source"
        )
    source = SOURCES[cfg.source](cfg)
    pairs, num_examples = source.pairs, source.num_examples
    if cfg.limit:
        pairs, num_examples = pairs.take(cfg.limit), min(num_examples, cfg.limit)
    if source.skipped or source.unsupported:
        log.warning("%s", skip_report(source))
    if num_examples < cfg.batch_size:
        raise DataError(
            f"data.batch_size: {cfg.batch_size} is larger than the {num_examples} images "
            f"in {source.description}; lower data.batch_size"
        )
    if require_labels and not source.class_names:
        raise DataError(f"this model needs class labels, and {source.description} has none")
    return ImageData(
        prepared=prepare(pairs, cfg),
        config=cfg,
        seed=seed,
        num_examples=num_examples,
        class_names=source.class_names,
        image_shape=(cfg.image_size, cfg.image_size, cfg.channels),
        description=source.description,
        skipped=source.skipped,
        batch_size=cfg.batch_size,
    )
