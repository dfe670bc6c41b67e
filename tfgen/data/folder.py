"""An image folder: flat, or one sub-folder per class (Kaggle and ImageFolder layouts).

Every file is decoded once up front (in parallel, by TensorFlow's own decoders) so that a
corrupt, truncated or mislabelled file is skipped and reported before training instead of
crashing the pipeline mid-epoch.
"""

import random
from pathlib import Path

import tensorflow as tf
from PIL import Image

from tfgen.data.source import Source
from tfgen.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MAX_PIXELS = 50_000_000


def decode_file(path):
    """File path -> uint8 [H, W, C] (first frame of a GIF; C as stored, 1 to 4)."""
    return tf.io.decode_image(tf.io.read_file(path), expand_animations=False, dtype=tf.uint8)


def find_images(root):
    """Image files under `root`, skipping hidden files and folders and macOS `__MACOSX/`
    resource forks, which zips made on a Mac (many Kaggle downloads) carry beside the data."""
    files = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            files.append(path)
    if not files:
        raise DataError(
            f"data.path: no images ({', '.join(IMAGE_EXTENSIONS)}) found in folder '{root}'"
        )
    return files


def list_images(root, files):
    """(labels, class_names) for `files` under `root`.

    Labels come from sub-folders when there are two or more of them holding images and
    no images sit at the top; otherwise the folder is unlabelled (a Kaggle "data/" folder).
    """
    parts = [p.relative_to(root).parts for p in files]
    class_names = sorted({part[0] for part in parts if len(part) > 1})
    if len(class_names) >= 2 and all(len(part) > 1 for part in parts):
        index = {name: i for i, name in enumerate(class_names)}
        return [index[part[0]] for part in parts], class_names
    return [0] * len(files), []


def within_size_limit(path):
    """False for an image whose header declares more than MAX_PIXELS pixels (read, not decoded).

    A 30000 x 30000 scan would take gigabytes to decode only to be shrunk to 64 px.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # not an image PIL knows: leave the verdict to TensorFlow's decoders
        return True
    return width * height <= MAX_PIXELS


def decodable(files):
    """The subset of `files` TensorFlow can decode (checked in parallel), huge ones left out."""
    files = [f for f in files if within_size_limit(f)]
    if not files:
        return set()
    paths = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    checked = paths.map(
        lambda p: (p, tf.shape(decode_file(p))), num_parallel_calls=tf.data.AUTOTUNE
    ).ignore_errors()
    good = set()
    for batch, shapes in checked.batch(4096).as_numpy_iterator():
        good.update(p.decode() for p, shape in zip(batch, shapes) if shape.min() > 0)
    return good


def folder_source(cfg, root=None):
    """Decoded images from the folder `root` (default: `cfg.path`)."""
    root = Path(root if root is not None else cfg.path).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"data.path: '{root}' {what}")
    candidates = find_images(root)
    good = decodable(candidates)
    files = [f for f in candidates if str(f) in good]
    skipped = [str(f) for f in candidates if str(f) not in good]
    if not files:
        raise DataError(f"data.path: none of the {len(candidates)} image files in '{root}' could be decoded")
    # Classes from the decodable files only, so a folder of broken files is not a class.
    labels, class_names = list_images(root, files)
    # Sorted paths put each class in one block; the pipeline shuffles within blocks of
    # shuffle_buffer images, so mix the order once (fixed, hence reproducible).
    order = random.Random(0).sample(range(len(files)), len(files))
    files, labels = [files[i] for i in order], [labels[i] for i in order]
    pairs = tf.data.Dataset.from_tensor_slices(
        ([str(f) for f in files], tf.constant(labels, tf.int64))
    ).map(lambda p, label: (decode_file(p), label), num_parallel_calls=tf.data.AUTOTUNE)
    return Source(pairs, len(files), class_names, f"folder {root}", skipped)
