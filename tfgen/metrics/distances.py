"""Sample-quality metrics on feature vectors, as plain numpy/scipy functions.

Each takes features (or class probabilities) from an extractor in `tfgen.metrics.extractors`
and knows nothing about images or models, so each can be checked against closed forms.
"""

import warnings

import numpy as np
from scipy import linalg, special

# Pairwise-distance blocks are at most this many float64 entries (32 MB), so precision and
# recall on 10k x 10k samples never build the full 800 MB matrix.
_BLOCK_ENTRIES = 2**22


def frechet_distance(mu1, cov1, mu2, cov2, eps=1e-6):
    """Heusel et al. 2017 (FID): ||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)).

    Follows the reference implementation: when C1 C2 is singular enough that its square root
    is not finite, eps * I is added to both covariances; the tiny imaginary parts sqrtm leaves
    from rounding are dropped, and large ones (a sign of a bug upstream) raise ValueError.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    assert mu1.shape == mu2.shape and cov1.shape == cov2.shape == (len(mu1), len(mu1))
    with warnings.catch_warnings():  # singular products are expected (dead ReLU features): handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(mu1)) * eps
        covmean = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    if np.iscomplexobj(covmean):
        largest = np.max(np.abs(np.diagonal(covmean).imag))
        if largest > 1e-3:
            raise ValueError(f"sqrt(cov1 @ cov2) has an imaginary component of {largest:.3g}")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))


def kernel_distance(x, y, num_subsets=100, subset_size=1000, seed=0):
    """Binkowski et al. 2018 (KID): unbiased MMD^2 with kernel (x.y / d + 1)^3 -> (mean, std).

    Averaged over `num_subsets` random subsets of `subset_size` rows of each set (capped at
    the smaller set), which bounds the cost and gives the spread the paper reports. Unlike
    FID it is unbiased, so it can be compared across sample sizes and is ~0 for equal sets.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    assert x.ndim == y.ndim == 2 and x.shape[1] == y.shape[1]
    m = min(len(x), len(y), subset_size)
    assert m > 1, "KID needs at least two samples in each set"
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        xs = x[rng.choice(len(x), m, replace=False)]
        ys = y[rng.choice(len(y), m, replace=False)]
        k_xx = (xs @ xs.T / d + 1.0) ** 3
        k_yy = (ys @ ys.T / d + 1.0) ** 3
        k_xy = (xs @ ys.T / d + 1.0) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        # x_i and y_j are independent for every i, j (i == j too), so all m^2 cross terms count.
        values.append(within - 2.0 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


def inception_score(probabilities, splits=10):
    """Salimans et al. 2016 (IS): exp(E_x[KL(p(y|x) || p(y))]) per split -> (mean, std).

    `probabilities` [N, classes] are a classifier's softmax outputs on generated images. The
    score runs from 1 (every image gets the same prediction) to the number of classes
    (confident predictions spread evenly over the classes).
    """
    p = np.asarray(probabilities, np.float64)
    assert p.ndim == 2 and len(p) >= splits
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = special.rel_entr(part, marginal).sum(axis=1)  # 0 log 0 = 0 for unused classes
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def precision_recall(real, fake, k=3):
    """Kynkaanniemi et al. 2019 (improved precision and recall) -> (precision, recall).

    Each set's manifold is the union of balls around its samples reaching their k-th nearest
    neighbour. Precision is the share of fake samples inside the real manifold (are samples
    realistic?), recall the share of real samples inside the fake one (is the data covered?).
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    assert real.ndim == fake.ndim == 2 and real.shape[1] == fake.shape[1]
    assert len(real) > k and len(fake) > k, f"each set needs more than k={k} samples"
    real_radii = _kth_neighbour_sq_radii(real, k)
    fake_radii = _kth_neighbour_sq_radii(fake, k)
    return _share_covered(fake, real, real_radii), _share_covered(real, fake, fake_radii)


def _sq_distances(a, b):
    """Squared Euclidean distances [len(a), len(b)] (clipped: rounding can dip below 0)."""
    sq = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(sq, 0.0)


def _row_blocks(a, b):
    """Row slices of `a` whose distance block against `b` fits in _BLOCK_ENTRIES."""
    rows = max(1, _BLOCK_ENTRIES // len(b))
    return (slice(start, start + rows) for start in range(0, len(a), rows))


def _kth_neighbour_sq_radii(x, k):
    """Squared distance from each row of x to its k-th nearest other row."""
    radii = np.empty(len(x))
    for rows in _row_blocks(x, x):
        # Column 0 of the sorted row is the sample itself (distance 0), so index k is its k-th neighbour.
        radii[rows] = np.partition(_sq_distances(x[rows], x), k, axis=1)[:, k]
    return radii


def _share_covered(points, centres, sq_radii):
    """Share of `points` inside at least one ball (centre, radius) of the other set."""
    inside = 0
    for rows in _row_blocks(points, centres):
        inside += np.any(_sq_distances(points[rows], centres) <= sq_radii[None, :], axis=1).sum()
    return float(inside / len(points))
