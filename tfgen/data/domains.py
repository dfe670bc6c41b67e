"""Two unpaired image domains for a translation model (CycleGAN): one stream of (A, B) pairs.

Each domain is an ordinary `ImageData` (any source, the same preprocessing). An epoch is a
pass over the larger domain; the smaller one wraps around, reshuffled on each of its own
passes. Both streams start from any global step, so a resume continues exactly.
"""

from dataclasses import dataclass

import tensorflow as tf


@dataclass
class TwoDomainData:
    """`ImageData`'s interface over domains `a` and `b` (batches are ((A, labels), (B, labels)))."""

    a: object
    b: object

    @property
    def image_shape(self):
        return self.a.image_shape

    @property
    def batch_size(self):
        return self.a.batch_size

    @property
    def num_examples(self):
        return max(self.a.num_examples, self.b.num_examples)

    @property
    def class_names(self):
        return []

    @property
    def skipped(self):
        return [*self.a.skipped, *self.b.skipped]

    @property
    def description(self):
        a, b = self.a, self.b
        return f"{a.description} (A, {a.num_examples} images) and {b.description} (B, {b.num_examples})"

    def require_steps(self, batches_per_step):
        self.a.require_steps(batches_per_step)
        self.b.require_steps(batches_per_step)

    def steps_per_pass(self, batches_per_step=1):
        return max(self.a.steps_per_pass(batches_per_step), self.b.steps_per_pass(batches_per_step))

    @property
    def steps_per_epoch(self):
        return self.steps_per_pass(1)

    def stream(self, start_step=0, batches_per_step=1):
        return tf.data.Dataset.zip(
            self.a.stream(start_step, batches_per_step), self.b.stream(start_step, batches_per_step)
        )

    @property
    def dataset(self):
        """One epoch of pairs: the first pass of each domain, the smaller one repeated."""
        steps = self.steps_per_epoch
        pairs = tf.data.Dataset.zip(self.a.dataset.repeat(), self.b.dataset.repeat()).take(steps)
        return pairs.apply(tf.data.experimental.assert_cardinality(steps))
