"""What every data source returns."""

from dataclasses import dataclass, field

import tensorflow as tf


@dataclass
class Source:
    """Decoded `(uint8 image [H, W, C], int64 label)` pairs plus what is known about them.

    `class_names` is empty for unlabelled data (labels are then all 0). `skipped` lists
    files that exist but could not be decoded.
    """

    pairs: tf.data.Dataset
    num_examples: int
    class_names: list
    description: str
    skipped: list = field(default_factory=list)
