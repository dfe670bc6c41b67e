"""Streaming feature statistics: the mean and covariance FID needs, without keeping features.

Fifty thousand 2048-d Inception features are 800 MB in float64; their sufficient statistics
(count, sum, sum of outer products) are 32 MB whatever the sample count, so features are
folded in batch by batch and dropped.
"""

import numpy as np


class RunningStats:
    """Mean and unbiased covariance of `dim`-wide feature vectors fed in batches.

    Accumulated in float64: the covariance is a difference of two large sums, and float32
    would lose its small eigenvalues to cancellation. `save`/`load` cache the statistics of a
    dataset's real images so they are computed once per dataset and extractor.
    """

    def __init__(self, dim):
        self.dim = dim
        self.count = 0
        self._sum = np.zeros(dim, np.float64)
        self._outer = np.zeros((dim, dim), np.float64)

    def update(self, features):
        """Fold in a batch of features [N, dim]."""
        x = np.asarray(features, np.float64)
        assert x.ndim == 2 and x.shape[1] == self.dim, f"expected [N, {self.dim}], got {x.shape}"
        self.count += len(x)
        self._sum += x.sum(axis=0)
        self._outer += x.T @ x

    @property
    def mean(self):
        """Mean feature vector [dim]."""
        assert self.count > 0, "no features seen yet"
        return self._sum / self.count

    @property
    def cov(self):
        """Unbiased (N - 1) covariance [dim, dim]."""
        assert self.count > 1, "a covariance needs at least two feature vectors"
        mean = self.mean
        return (self._outer - self.count * np.outer(mean, mean)) / (self.count - 1)

    def save(self, path):
        """Write the accumulators to `path` as .npz (loading can go on updating them)."""
        with open(path, "wb") as f:  # a file object, so numpy does not append ".npz" to path
            np.savez(f, count=self.count, sum=self._sum, outer=self._outer)

    @classmethod
    def load(cls, path):
        """A RunningStats as `save` left it."""
        with np.load(path) as data:
            stats = cls(data["sum"].shape[0])
            stats.count = int(data["count"])
            stats._sum = data["sum"]
            stats._outer = data["outer"]
        return stats
