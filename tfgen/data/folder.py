"""An image folder: flat, or one sub-folder per class (Kaggle and ImageFolder layouts).

Files are decoded by Pillow, not `tf.io.decode_image`, because real folders hold what
TensorFlow's decoders get wrong: phone photos whose EXIF orientation says "rotate me", GIFs
whose transparency is a palette entry (TensorFlow drops it, so they came out on black where
transparent PNGs come out on white), TIFF scans it cannot read. Pillow also keeps quiet
where TensorFlow's C++ decoders print libjpeg and libpng chatter on stderr.

Every file is decoded once up front, in threads (Pillow releases the GIL while decoding), so
that a corrupt, truncated or huge file is skipped and reported before training instead of
crashing the pipeline mid-epoch. Those pixels are then dropped and the pipeline decodes each
file again: keeping them would hold every original at full size (gigabytes for a folder of
phone photos) where the pipeline's cache holds image_size thumbnails, and with `data.cache`
the second decode happens in the first pass only. JPEGs decode at the smallest DCT scale
(1/2 to 1/8) that leaves the shorter side at least image_size, which makes both decodes of a
photo several times cheaper; resizing to image_size and cropping stay in the pipeline.
"""

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

from tfgen.data.source import Source
from tfgen.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_PIXELS = 50_000_000
GRAY_MODES = ("1", "L", "LA", "La", "F")
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
CHUNK = 32  # files decoded per call into Python (see decoded_pairs)


def to_array(image):
    """A decoded Pillow image -> uint8 [H, W, C], C = 1 (gray), 2 (gray, alpha), 3 (RGB), 4 (RGBA).

    Alpha is kept wherever the file has transparency, a transparent palette entry or colour
    key included (GIF, PNG tRNS), so the pipeline composites every format on white.
    """
    if image.mode in SIXTEEN_BIT_MODES:
        # Keep the high byte: convert("L") would clip every value above 255 to white.
        return (np.clip(np.asarray(image, np.int64), 0, 65535) >> 8).astype(np.uint8)[..., None]
    alpha = "A" in image.getbands() or "transparency" in image.info
    if image.mode in GRAY_MODES:
        mode = "LA" if alpha else "L"
    else:
        mode = "RGBA" if alpha else "RGB"
    array = np.asarray(image if image.mode == mode else image.convert(mode))
    return array[..., None] if array.ndim == 2 else array


def load_image(path, min_side):
    """File -> uint8 [H, W, C] (see `to_array`): upright, first frame of an animation.

    A JPEG decodes at a reduced scale whose shorter side is still at least `min_side`.
    Raises for a file that does not decode or declares more than MAX_PIXELS pixels: a
    30000 x 30000 scan would take gigabytes to decode only to be shrunk to 64 px.
    """
    with Image.open(path) as image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ValueError(f"'{path}' is {width} x {height}, more than {MAX_PIXELS} pixels")
        image.draft(image.mode, (min_side, min_side))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return to_array(image)


def find_images(root):
    """(image files, other files) under `root`, each sorted.

    Hidden files and folders and macOS `__MACOSX/` resource forks, which zips made on a Mac
    (many Kaggle downloads) carry beside the data, are neither.
    """
    images, others = [], []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if any(p.startswith(".") or p == "__MACOSX" for p in parts) or not path.is_file():
            continue
        (images if path.suffix.lower() in IMAGE_EXTENSIONS else others).append(path)
    if not images:
        held = f"; it holds {len(others)} other files, such as '{others[0].name}'" if others else ""
        raise DataError(f"data.path: no images ({', '.join(IMAGE_EXTENSIONS)}) found in folder '{root}'{held}")
    return images, others


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


def decodable(files, min_side):
    """The subset of `files` that `load_image` decodes, checked in parallel threads."""

    def decodes(path):
        try:
            load_image(path, min_side)
        except Exception:  # noqa: BLE001  (whatever a broken file makes Pillow raise: skip it and report it)
            return False
        return True

    with ThreadPoolExecutor() as pool:
        return [path for path, good in zip(files, pool.map(decodes, files)) if good]


def decoded_pairs(files, labels, min_side):
    """(uint8 [H, W, C], int64 label) pairs for `files`, decoded by `load_image`.

    CHUNK files are decoded per call into Python (several calls in parallel) and come back
    as one flat buffer that is cut into images: a call's fixed cost (the GIL, tensor
    conversion) is about that of decoding a 64 px JPEG, and paying it per file made the
    first pass cost about a quarter more CPU time (tfgen.bench's 64 px JPEGs).
    """

    def decode_chunk(indices):
        images = [load_image(files[i], min_side) for i in indices]
        shapes = np.array([image.shape for image in images], np.int64)
        return np.concatenate([image.ravel() for image in images]), shapes

    def decode(indices, chunk_labels):
        flat, shapes = tf.numpy_function(decode_chunk, [indices], (tf.uint8, tf.int64), stateful=False)
        shapes = tf.ensure_shape(shapes, [None, 3])
        return tf.RaggedTensor.from_row_lengths(flat, tf.reduce_prod(shapes, 1)), shapes, chunk_labels

    chunks = tf.data.Dataset.from_tensor_slices((tf.range(len(files)), tf.constant(labels, tf.int64))).batch(CHUNK)
    chunks = chunks.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    return chunks.unbatch().map(lambda flat, shape, label: (tf.reshape(flat, shape), label))


def folder_source(cfg, root=None):
    """Decoded images from the folder `root` (default: `cfg.path`)."""
    root = Path(root if root is not None else cfg.path).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        # a relative path is read from the working directory, which is where it usually went wrong
        where = "" if root.is_absolute() else f" (read from the working directory {Path.cwd()})"
        raise DataError(f"data.path: '{root}' {what}{where}")
    candidates, others = find_images(root)
    files = decodable(candidates, cfg.image_size)
    good = set(files)
    skipped = [str(f) for f in candidates if f not in good]
    if not files:
        raise DataError(f"data.path: none of the {len(candidates)} image files in '{root}' could be decoded")
    # Classes from the decodable files only, so a folder of broken files is not a class.
    labels, class_names = list_images(root, files)
    # Sorted paths put each class in one block; the pipeline shuffles within blocks of
    # shuffle_buffer images, so mix the order once (fixed, hence reproducible).
    order = random.Random(0).sample(range(len(files)), len(files))
    files, labels = [files[i] for i in order], [labels[i] for i in order]

    pairs = decoded_pairs(files, labels, cfg.image_size)
    return Source(pairs, len(files), class_names, f"folder {root}", skipped, [str(f) for f in others])
