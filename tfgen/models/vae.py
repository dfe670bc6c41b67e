"""Variational autoencoder (Kingma & Welling 2014), dense version.

The "VAE without convolutions" people try first: the image is flattened, encoded by two
dense layers into the mean and log-variance of q(z|x), and decoded by two dense layers.
`ConvVAE`, `CondVAE` and `VAEGAN` subclass it and replace only the network bodies (and, for
VAE-GAN, the step), so encoding, sampling, pictures and export work the same for all.
"""

import math
from typing import Literal

import keras
import tensorflow as tf

from tfgen import losses, perceptual
from tfgen.models.base import GenerativeModel
from tfgen.models.registry import register


@register("vae")
class VAE(GenerativeModel):
    """Encoder q(z|x) and decoder p(x|z) trained on the ELBO: reconstruction + beta * KL.

    Args:
        image_shape: (height, width, channels) of the training images.
        latent_dim: size of z (2 gives the latent-manifold pictures).
        hidden_dim: width of the dense layers.
        beta: weight of the KL term (beta-VAE, Higgins et al. 2017); 1 is the plain ELBO.
        likelihood: "bernoulli" (sigmoid cross-entropy, pixels read as probabilities) or
            "gaussian" (unit-variance, squared error).
        edge_weight: if > 0, the reconstruction term adds this times
            `tfgen.losses.edge_difference` (the gradient difference loss), which costs every
            edge the decoder blurs; 0 is the plain ELBO.
        seed: seeds the reparameterisation noise inside `train_step`.
    """

    optimizer_names = {"optimizer": ("encoder", "decoder")}
    pictures = ("samples", "reconstructions")  # + reconstructions, interpolation, latent plane
    export_networks = ("encoder", "decoder")
    reconstructs = True
    encodes = True
    metric_names = ("loss", "reconstruction", "kl")

    def __init__(
        self,
        image_shape=(28, 28, 1),
        latent_dim: int = 16,
        hidden_dim: int = 512,
        beta: float = 1.0,
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        seed: int | None = None,
        num_classes=0,
        edge_weight: float = 0.0,
        perceptual_weight: float = 0.0,
        **kwargs,
    ):
        GenerativeModel.__init__(self, image_shape, latent_dim, seed, self.metric_names, num_classes, **kwargs)
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim must be an integer >= 1, got {hidden_dim}")
        self.hidden_dim = hidden_dim
        self.build_vae(beta, likelihood, edge_weight, perceptual_weight)

    def build_vae(self, beta, likelihood, edge_weight=0.0, perceptual_weight=0.0):
        """Set the ELBO options and build encoder and decoder from the subclass's bodies.

        Every VAE's __init__ ends here, after setting the fields its bodies read.
        """
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        for term, weight in (("edge", edge_weight), ("perceptual", perceptual_weight)):
            if weight < 0:
                raise ValueError(f"{term}_weight must be >= 0 (0 disables the {term} term), got {weight}")
        self.beta = beta
        self.edge_weight = edge_weight
        self.perceptual_weight = perceptual_weight
        self.perceptual_features = perceptual.feature_network(self.image_shape) if perceptual_weight else None
        self.likelihood = likelihood
        self._nll, self._to_images = losses.LIKELIHOODS[likelihood]
        self.encoder = self._build_encoder()
        self.decoder = self._build_decoder()
        self.built = True

    # -- networks: subclasses override the two bodies -------------------------------------

    def encoder_body(self, images):
        """Image tensor -> flat features (before the mean / log-variance layer)."""
        h = keras.layers.Flatten()(images)
        h = keras.layers.Dense(self.hidden_dim, activation="relu")(h)
        return keras.layers.Dense(self.hidden_dim // 2 or 1, activation="relu")(h)

    def decoder_body(self, h):
        """Flat latent (+ label) tensor -> decoder outputs shaped like the images."""
        h = keras.layers.Dense(self.hidden_dim // 2 or 1, activation="relu")(h)
        h = keras.layers.Dense(self.hidden_dim, activation="relu")(h)
        h = keras.layers.Dense(math.prod(self.image_shape), dtype="float32")(h)
        return keras.layers.Reshape(self.image_shape, dtype="float32")(h)

    def _label_input(self):
        return keras.Input((self.num_classes,), name="label") if self.needs_labels else None

    def _build_encoder(self):
        images = keras.Input(self.image_shape, name="images")
        label = self._label_input()
        h = self.encoder_body(images)
        if label is not None:
            h = keras.layers.Concatenate()([h, label])
        stats = keras.layers.Dense(2 * self.latent_dim, dtype="float32", name="mean_log_var")(h)
        inputs = [images, label] if label is not None else images
        return keras.Model(inputs, stats, name="encoder")

    def _build_decoder(self):
        z = keras.Input((self.latent_dim,), name="z")
        label = self._label_input()
        h = keras.layers.Concatenate()([z, label]) if label is not None else z
        inputs = [z, label] if label is not None else z
        return keras.Model(inputs, self.decoder_body(h), name="decoder")

    # -- the model's vocabulary ------------------------------------------------------------

    def _with_label(self, x, labels):
        if not self.needs_labels:
            return x
        return [tf.convert_to_tensor(x, tf.float32), tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)]

    def encode(self, images, labels=None, training=False):
        """(mean, log_var) of q(z|x), each [B, latent_dim]."""
        stats = self.encoder(self._with_label(images, labels), training=training)
        mean, log_var = tf.split(stats, 2, axis=-1)
        return mean, log_var

    def decode(self, z, labels=None, training=False):
        """Images in [-1, 1] for latents z (and labels, for conditional models)."""
        return self._to_images(self.decoder(self._with_label(z, labels), training=training))

    def generate(self, z, labels=None, training=False):
        return self.decode(z, labels, training=training)

    def reconstruct(self, images, labels=None):
        """Decode the posterior mean of each image."""
        mean, _ = self.encode(images, labels)
        return self.decode(mean, labels)

    def reparameterize(self, mean, log_var):
        """z = mean + sigma * eps with eps from the model's seeded latent stream."""
        eps = self.sample_latent(tf.shape(mean)[0])
        return mean + tf.exp(0.5 * log_var) * eps

    def elbo_terms(self, images, labels=None, training=True):
        """Per-example (reconstruction, kl) and the posterior (mean, log_var) for `images`;
        the reconstruction term includes the edge and perceptual terms when their weights are set."""
        mean, log_var = self.encode(images, labels, training=training)
        z = self.reparameterize(mean, log_var)
        outputs = self.decoder(self._with_label(z, labels), training=training)
        reconstruction = self._nll(images, outputs)
        decoded = self._to_images(outputs)  # unused (and pruned from the graph) without the extra terms
        if self.edge_weight:
            reconstruction += self.edge_weight * losses.edge_difference(images, decoded)
        if self.perceptual_weight:
            reconstruction += self.perceptual_weight * perceptual.difference(self.perceptual_features, images, decoded)
        return reconstruction, losses.kl_standard_normal(mean, log_var), mean, log_var

    def train_step(self, data):
        images, labels = data if isinstance(data, (tuple, list)) else (data, None)
        with tf.GradientTape() as tape:
            reconstruction, kl, _, _ = self.elbo_terms(images, labels)
            loss = self.global_mean(reconstruction + self.beta * kl)
        self.apply_update("optimizer", tape, loss)
        return self.update_trackers(
            {"loss": loss, "reconstruction": self.global_mean(reconstruction), "kl": self.global_mean(kl)}
        )

    # -- export ----------------------------------------------------------------------------

    def export_endpoints(self):
        image_spec = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")
        count_spec = tf.TensorSpec([], tf.int32, name="count")
        if self.needs_labels:
            encode = (
                lambda images, label: self._encode_dict(images, label),
                [image_spec, tf.TensorSpec([None], tf.int32, name="label")],
            )
            sample = (
                lambda count, label: self.decode(tf.random.normal([count, self.latent_dim]), tf.fill([count], label)),
                [count_spec, tf.TensorSpec([], tf.int32, name="label")],
            )
        else:
            encode = (lambda images: self._encode_dict(images), [image_spec])
            sample = (lambda count: self.decode(tf.random.normal([count, self.latent_dim])), [count_spec])
        return {"decode": self.generate_endpoint(), "encode": encode, "sample": sample}

    def _encode_dict(self, images, labels=None):
        mean, log_var = self.encode(images, labels)
        return {"mean": mean, "log_var": log_var}

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim, **self.vae_config()}

    def vae_config(self):
        """The ELBO options every VAE's get_config includes."""
        return {
            "beta": self.beta,
            "likelihood": self.likelihood,
            "edge_weight": self.edge_weight,
            "perceptual_weight": self.perceptual_weight,
        }
