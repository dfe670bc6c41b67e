"""Feature extractors: images in [-1, 1] -> feature vectors [N, dim] and class probabilities.

FID, KID and precision/recall compare distributions in a network's feature space, and the
Inception Score reads a classifier's predictions. Every extractor has the same interface
(`FeatureExtractor`), so the metrics never know which network is behind it:

- `classifier`: a small CNN trained on the dataset's own labelled images and cached to disk.
  Works offline at any image size and is the usual choice for MNIST-like data, where
  ImageNet features say little. Scores compare runs that share the cached classifier.
- `inception`: Keras' ImageNet InceptionV3 at 299x299 (2048-d pool features). Keras downloads
  its weights on first use, which needs internet. These are Keras' weights, not the TF FID
  graph of Heusel et al., so scores compare tfgen runs, not published FIDs.
- `random`: the classifier's network with fixed random weights, untrained: for data without
  labels when Inception's weights cannot be downloaded (the offline Pokemon art). Random
  embeddings are a weaker but label-free feature space (Naeem et al. 2020 discuss them for
  precision / recall); compare only runs scored with the same extractor and image size.
"""

import logging
import re
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfgen.errors import TfgenError
from tfgen.files import atomic_path

log = logging.getLogger("tfgen")

EXTRACTORS = ("classifier", "inception", "random")

# How keras.utils.get_file reports a failed or truncated download (it raises bare Exception).
_FETCH_FAILURES = ("URL fetch failure", "Incomplete or corrupted file")


class FeatureExtractor:
    """The common interface: `name`, `dim`, `features(images)`, `probabilities(images)`.

    `images` are float [N, H, W, C] in [-1, 1] (numpy or tensor); they go through the
    network `batch_size` at a time. `name` goes into cache file names, so statistics made
    with different extractors never mix. Subclasses provide the per-batch functions.
    """

    name = ""
    dim = 0

    def __init__(self, batch_size):
        self.batch_size = batch_size

    def features(self, images):
        """Feature vectors float32 [N, dim]."""
        return self._in_batches(self._features_batch, images)

    def probabilities(self, images):
        """Class probabilities float32 [N, classes] (rows sum to 1), for the Inception Score."""
        return self._in_batches(self._probabilities_batch, images)

    def _in_batches(self, fn, images):
        images = np.asarray(images, np.float32)
        assert images.ndim == 4 and len(images), f"expected images [N, H, W, C], got {images.shape}"
        outputs = [fn(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        return np.concatenate([np.asarray(o, np.float32) for o in outputs])


class ClassifierExtractor(FeatureExtractor):
    """Penultimate activations (128-d) of a small CNN trained to classify the dataset.

    The network is plain Keras layers (no Lambda), so `load` works under safe_mode. Build
    one with `train`, or through `classifier_extractor`, which caches it per dataset.
    """

    name = "classifier"

    def __init__(self, model, batch_size=256):
        super().__init__(batch_size)
        self.model = model
        self._feature_model = keras.Model(model.inputs, model.get_layer("features").output)
        self.dim = self._feature_model.output.shape[-1]

    @classmethod
    def train(cls, dataset, num_classes, image_shape, epochs=5, seed=0):
        """Fit a new classifier on a batched (images, int labels) `tf.data.Dataset`."""
        model = _classifier_network(num_classes, image_shape, seed)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(dataset, epochs=epochs, shuffle=False, verbose=0)  # the dataset shuffles itself
        return cls(model)

    def save(self, path):
        """Write the classifier to `path` (.keras), atomically: a crash leaves no half cache,
        and processes saving the same cache at once (the workers of a multi-worker run) each
        write their own temporary file."""
        with atomic_path(path) as tmp:
            self.model.save(tmp)

    @classmethod
    def load(cls, path):
        """The classifier `save` wrote, loaded under safe_mode."""
        return cls(keras.saving.load_model(path, safe_mode=True, compile=False))

    def _features_batch(self, images):
        return self._feature_model.predict_on_batch(images)

    def _probabilities_batch(self, images):
        return self.model.predict_on_batch(images)


class RandomExtractor(ClassifierExtractor):
    """The classifier's network with its seeded initial weights, never trained (see the module doc)."""

    name = "random"

    @classmethod
    def build(cls, image_shape, seed=0):
        return cls(_classifier_network(2, image_shape, seed))


def _classifier_network(num_classes, image_shape, seed):
    """Three stride-2 convolutions -> dense 128 ("features") -> softmax ("probabilities")."""
    inputs = keras.Input(image_shape)
    x = inputs
    for i, filters in enumerate((32, 64, 128)):
        x = keras.layers.Conv2D(
            filters,
            3,
            strides=2,
            padding="same",
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed + i),
        )(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(
        128,
        activation="relu",
        name="features",
        kernel_initializer=keras.initializers.GlorotUniform(seed + 3),
    )(x)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        name="probabilities",
        kernel_initializer=keras.initializers.GlorotUniform(seed + 4),
    )(x)
    return keras.Model(inputs, outputs, name="feature_classifier")


def classifier_extractor(cache_dir, dataset_key, dataset, num_classes, image_shape, epochs=5, seed=0):
    """The cached classifier for `dataset_key` at `image_shape`, trained and saved if absent.

    `dataset` is a batched (images, int labels) `tf.data.Dataset`; it is only read when no
    cached classifier exists. The cache file is named after the key and the image shape, so
    one dataset at two image sizes gets two classifiers.
    """
    if num_classes < 2:
        raise TfgenError(
            f"the 'classifier' feature extractor trains on class labels, and dataset "
            f"{dataset_key!r} has {num_classes}; use the 'inception' extractor"
        )
    safe_key = re.sub(r"[^A-Za-z0-9._-]", "_", dataset_key)
    shape = "x".join(str(n) for n in image_shape)
    path = Path(cache_dir) / f"{safe_key}_classifier_{shape}.keras"
    if path.exists():
        log.info("loading the feature classifier from %s", path)
        return ClassifierExtractor.load(path)
    log.info("training the feature classifier for %d epochs (cached at %s)", epochs, path)
    extractor = ClassifierExtractor.train(dataset, num_classes, image_shape, epochs, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    extractor.save(path)
    return extractor


class InceptionExtractor(FeatureExtractor):
    """Keras' ImageNet InceptionV3: 2048-d average-pool features at 299x299.

    Images are resized, gray is repeated to RGB, and InceptionV3's own preprocessing is
    applied. The 1000-class model for `probabilities` is a second download, so it is built
    only when the Inception Score asks for it. TfgenError if the weights cannot be fetched.
    """

    name = "inception_v3"
    dim = 2048

    def __init__(self, batch_size=64):
        super().__init__(batch_size)
        self._pool_model = _imagenet_inception(include_top=False, pooling="avg")
        self._top_model = None

    def _features_batch(self, images):
        return self._pool_model.predict_on_batch(_inception_input(images))

    def _probabilities_batch(self, images):
        if self._top_model is None:
            self._top_model = _imagenet_inception(include_top=True)
        return self._top_model.predict_on_batch(_inception_input(images))


def _inception_input(images):
    """[-1, 1] images [B, H, W, 1|3] -> InceptionV3's input [B, 299, 299, 3]."""
    images = tf.image.resize(images, (299, 299), method="bilinear")
    if images.shape[-1] == 1:
        images = tf.image.grayscale_to_rgb(images)
    return keras.applications.inception_v3.preprocess_input((images + 1.0) * 127.5)


def _imagenet_inception(**kwargs):
    """InceptionV3 with ImageNet weights; a failed weight download becomes a TfgenError."""
    try:
        return keras.applications.InceptionV3(weights="imagenet", **kwargs)
    except Exception as exc:  # get_file raises bare Exception; anything else is a real bug
        if not str(exc).startswith(_FETCH_FAILURES):
            raise
        reason = " ".join(str(exc).split())
        raise TfgenError(
            "the 'inception' feature extractor needs the ImageNet InceptionV3 weights, which "
            "Keras downloads to ~/.keras/models on first use and which need internet "
            f"({reason}); use the 'classifier' extractor to score offline"
        ) from None


def get_extractor(name, cache_dir=None, dataset_key=None, dataset=None, num_classes=0, image_shape=None):
    """The extractor called `name` (one of EXTRACTORS).

    The other arguments are what `classifier_extractor` needs to find or train its cached
    classifier; `inception` ignores them. TfgenError for an unknown name.
    """
    if name == "classifier":
        return classifier_extractor(cache_dir, dataset_key, dataset, num_classes, image_shape)
    if name == "inception":
        return InceptionExtractor()
    if name == "random":
        return RandomExtractor.build(image_shape)
    raise TfgenError(f"unknown feature extractor {name!r}; expected one of {', '.join(EXTRACTORS)}")
