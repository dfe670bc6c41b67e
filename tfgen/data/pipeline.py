"""The one preprocessing path every source goes through.

Sources hand over `(image, label)` pairs with `image` a uint8 [H, W, C] tensor of any size
and C in 1..4 (gray, gray+alpha, RGB, RGBA). From there every dataset is treated alike:
alpha composited on white, converted to the configured channels, resized so the shorter side
is `image_size` and centre-cropped (or, with `fit: pad`, the longer side is `image_size` and
the rest is white); then cache, shuffle, scale to [-1, 1], flip, batch,
prefetch. The shuffle and flips of epoch e depend only on (seed, e), so training can resume
mid-run with the same data order.
"""

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE  # with `untuned`: min(16, CPU cores) parallel calls
PREFETCH = 2  # batches


def to_rgba(image):
    """uint8 [H, W, 1|2|3|4] -> float32 [H, W, 4] in [0, 255] (alpha 255 where absent)."""
    image = tf.cast(image, tf.float32)
    opaque = tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), 255.0)

    def gray():
        return tf.concat([tf.repeat(image[..., :1], 3, axis=-1), opaque], -1)

    def gray_alpha():
        return tf.concat([tf.repeat(image[..., :1], 3, axis=-1), image[..., 1:2]], -1)

    def rgb():
        return tf.concat([image[..., :3], opaque], -1)

    def rgba():
        return image[..., :4]

    channels = tf.shape(image)[-1]
    rgba_image = tf.switch_case(channels - 1, [gray, gray_alpha, rgb, rgba], default=rgba)
    return tf.ensure_shape(rgba_image, [None, None, 4])


def composite_on_white(rgba):
    """RGBA [0, 255] -> RGB [0, 255] over a white background (transparent sprites)."""
    alpha = rgba[..., 3:] / 255.0
    return rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)


def resize_and_crop(image, size, fit="crop"):
    """A square size x size image from any [H, W, C] image in [0, 255], keeping the aspect.

    fit "crop": the shorter side becomes `size` and the longer one is centre-cropped (photos,
    faces). fit "pad": the longer side becomes `size` and the rest is padded with white, so
    nothing is cut off (a whole creature, a sprite sheet's figure on its white background).
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / (tf.reduce_min(shape) if fit == "crop" else tf.reduce_max(shape))
    # Rounded, then clamped: ceil overshoots by a pixel when float32 puts 49 * (28 / 49) at
    # 28.000002, and the crop then cuts off the image's last row and column.
    new_shape = tf.cast(tf.round(shape * scale), tf.int32)
    new_shape = tf.clip_by_value(new_shape, 1, size) if fit == "pad" else tf.maximum(new_shape, size)
    image = tf.image.resize(image, new_shape, method="bilinear", antialias=True)
    # resize_with_crop_or_pad pads with zeros: shift white to zero and back.
    return tf.image.resize_with_crop_or_pad(image - 255.0, size, size) + 255.0


def standardize(image, image_size, channels, fit="crop"):
    """uint8 [H, W, 1..4] -> uint8 [image_size, image_size, channels] (see resize_and_crop for `fit`).

    Kept in uint8 so the cache holds a quarter of the bytes of float images.
    """
    rgb = composite_on_white(to_rgba(image))
    if channels == 1:
        rgb = tf.image.rgb_to_grayscale(rgb)
    image = resize_and_crop(rgb, image_size, fit)
    image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
    return tf.ensure_shape(image, [image_size, image_size, channels])


def to_signed_unit(image):
    """uint8 [0, 255] -> float32 [-1, 1], the range of the generators' tanh."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def prepare(pairs, cfg):
    """Decoded pairs -> standardized uint8 pairs, cached (in memory) when `cfg.cache`."""
    ds = pairs.map(
        lambda image, label: (standardize(image, cfg.image_size, cfg.channels, cfg.fit), label),
        num_parallel_calls=AUTOTUNE,
    )
    return ds.cache() if cfg.cache else ds


def epoch_batches(prepared, cfg, seed, epoch, batch_size=None):
    """One epoch of training batches whose order and flips depend only on (seed, epoch).

    That makes a resumed run see exactly the batches an uninterrupted one would have seen.
    Batches are full (`drop_remainder`) so every step has the same shape: XLA compiles once
    and each replica of a distributed step gets an equal share. `batch_size` (default
    `cfg.batch_size`) only regroups the same image order: a batch of k * B images is k
    consecutive batches of B.
    """
    epoch_seed = tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64)

    def shuffle_chunk(index, chunk):
        # Stateless, unlike Dataset.shuffle (whose tensor seeds TF rejects under a global seed of 0).
        images, labels = chunk
        order = tf.random.experimental.stateless_shuffle(
            tf.range(tf.shape(labels)[0]), seed=tf.stack([epoch_seed, index])
        )
        return tf.gather(images, order), tf.gather(labels, order)

    # Shuffled within chunks of shuffle_buffer images: a full shuffle for sets that fit.
    chunks = prepared.batch(cfg.shuffle_buffer).enumerate().map(shuffle_chunk, num_parallel_calls=AUTOTUNE)
    ds = chunks.unbatch().enumerate()

    def finish(index, pair):
        image, label = pair
        image = to_signed_unit(image)
        if cfg.random_flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=tf.stack([epoch_seed, index]))
        return image, label

    return ds.map(finish, num_parallel_calls=AUTOTUNE).batch(batch_size or cfg.batch_size, drop_remainder=True)


def training_stream(prepared, cfg, seed, start_epoch=0, batch_size=None):
    """Epochs start_epoch, start_epoch + 1, ... of `epoch_batches`, one endless dataset."""
    epochs = tf.data.Dataset.range(start_epoch, 2**62)
    stream = epochs.flat_map(lambda epoch: epoch_batches(prepared, cfg, seed, epoch, batch_size)).prefetch(PREFETCH)
    # Across workers, split every global batch as MirroredStrategy splits it over local
    # devices (worker k gets the k-th slice), whatever the source: AUTO would shard a
    # file-based source (TFDS) by file instead.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return untuned(stream.with_options(options))


def untuned(dataset):
    """`dataset` without tf.data's autotuning.

    Its tuner thread made deleting an iterator wait 0-60 s (it sleeps up to a minute between
    optimisation rounds): measured 14-57 s after the speed-setting timings and 40 s at the
    end of a 3-epoch run on the 2-core EPYC. Without it each parallel map runs on
    min(16, cores) threads, which is what the cold decode wants; the warm epochs are a
    cached gather, cast and flip (9,000-12,000 64 px images/s on those 2 cores, `tfgen
    bench`) that two prefetched batches keep ahead of the step.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
