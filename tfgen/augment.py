"""DiffAugment (Zhao et al. 2020): differentiable augmentation of real *and* fake images.

Applying the same random colour, translation and cutout to every image D sees, in both the D
and the G step, keeps D from memorising a small dataset (the 800-image Pokemon set) while G
still receives gradients through the augmentation. All randomness is stateless, drawn from a
seed the model supplies, so runs are reproducible.
"""

import tensorflow as tf

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy):
    """ "color,translation" -> ("color", "translation"); ValueError naming a bad entry."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    for name in names:
        if name not in POLICIES:
            raise ValueError(f"diffaugment entry {name!r} is not one of {', '.join(POLICIES)}")
    return names


def _uniform(seed, shape, index):
    return tf.random.stateless_uniform(shape, seed=tf.random.experimental.stateless_fold_in(seed, index))


def color(x, seed):
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5) per image."""
    batch = tf.shape(x)[0]
    x = x + (_uniform(seed, [batch, 1, 1, 1], 0) - 0.5)
    mean = tf.reduce_mean(x, axis=3, keepdims=True)
    x = (x - mean) * (_uniform(seed, [batch, 1, 1, 1], 1) * 2.0) + mean
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * (_uniform(seed, [batch, 1, 1, 1], 2) + 0.5) + mean


def translation(x, seed, ratio=0.125):
    """Shift each image by up to `ratio` of its size, filling with zeros (gather-based, differentiable)."""
    batch, height, width = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    shift_h = tf.cast(tf.cast(height, tf.float32) * ratio + 0.5, tf.int32)
    shift_w = tf.cast(tf.cast(width, tf.float32) * ratio + 0.5, tf.int32)
    dy = tf.cast(tf.floor(_uniform(seed, [batch, 1], 3) * tf.cast(2 * shift_h + 1, tf.float32)), tf.int32) - shift_h
    dx = tf.cast(tf.floor(_uniform(seed, [batch, 1], 4) * tf.cast(2 * shift_w + 1, tf.float32)), tf.int32) - shift_w
    rows = tf.range(height)[None, :] + dy  # [B, H]
    cols = tf.range(width)[None, :] + dx  # [B, W]
    valid = (
        tf.cast((rows >= 0) & (rows < height), x.dtype)[:, :, None, None]
        * tf.cast((cols >= 0) & (cols < width), x.dtype)[:, None, :, None]
    )
    x = tf.gather(x, tf.clip_by_value(rows, 0, height - 1), axis=1, batch_dims=1)
    x = tf.gather(x, tf.clip_by_value(cols, 0, width - 1), axis=2, batch_dims=1)
    return x * valid


def cutout(x, seed, ratio=0.5):
    """Zero a random square of `ratio` times the image size in each image."""
    batch, height, width = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    size_h = tf.cast(tf.cast(height, tf.float32) * ratio + 0.5, tf.int32)
    size_w = tf.cast(tf.cast(width, tf.float32) * ratio + 0.5, tf.int32)
    top = tf.cast(_uniform(seed, [batch, 1], 5) * tf.cast(height - size_h + 1, tf.float32), tf.int32)
    left = tf.cast(_uniform(seed, [batch, 1], 6) * tf.cast(width - size_w + 1, tf.float32), tf.int32)
    rows = tf.range(height)[None, :]
    cols = tf.range(width)[None, :]
    in_rows = (rows >= top) & (rows < top + size_h)
    in_cols = (cols >= left) & (cols < left + size_w)
    hole = tf.cast(in_rows[:, :, None] & in_cols[:, None, :], x.dtype)[..., None]
    return x * (1.0 - hole)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x, policy, seed):
    """Apply each named augmentation in `policy` (a tuple from `parse_policy`) to images x."""
    for name in policy:
        x = _OPS[name](x, tf.random.experimental.stateless_fold_in(seed, POLICIES.index(name) + 1))
    return x
