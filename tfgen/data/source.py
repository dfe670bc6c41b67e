"""What every data source returns."""

from dataclasses import dataclass, field

import tensorflow as tf


@dataclass
class Source:
    """Decoded `(uint8 image [H, W, C], int64 label)` pairs plus what is known about them.

    `class_names` is empty for unlabelled data (labels are then all 0). `skipped` lists
    image files that could not be decoded, `unsupported` files that are not in an image
    format the source reads (a stray README, a .heic photo); both are reported once.
    """

    pairs: tf.data.Dataset
    num_examples: int
    class_names: list
    description: str
    skipped: list = field(default_factory=list)
    unsupported: list = field(default_factory=list)
