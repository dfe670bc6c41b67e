"""Reusing a trained tfgen generator from other Keras code: two short recipes.

    python tools/reuse_generator.py --run runs/digits_dcgan [--steps 200]

(a) The exported SavedModel (`runs/X/saved_model`) as a frozen `keras.layers.TFSMLayer` inside
    a new Keras model: a small convolutional head learns to recover the latent z from the
    generated image, a learned inverse of the generator (the encoder of GAN inversion, Zhu et
    al. 2016). Only the head trains; the generator stays as exported. This part needs no
    tfgen at all, only TensorFlow, Keras and the saved_model folder.
(b) The run's `model.keras` reloaded (after `import tfgen`, safe_mode on) and its `generator`
    fine-tuned for a few steps with a plain `tf.GradientTape` on the run's own GAN loss
    against its frozen discriminator: the starting point for adapting a generator to new
    data or a new objective. GAN runs only (a VAE has no discriminator).
"""

import argparse
import json
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf


class ConditionalTFSMLayer(keras.layers.TFSMLayer):
    """TFSMLayer for an endpoint with two inputs: TFSMLayer passes one, generate(z, label) takes two."""

    def call(self, inputs):
        z, label = inputs
        return self.call_endpoint_fn(z, label)


def frozen_generator_with_head(saved_model, steps, batch_size=64, seed=0):
    """(a): train a head on top of the frozen exported generator; prints its loss before and after."""
    meta = json.loads((Path(saved_model) / "tfgen.json").read_text())
    latent_dim, num_classes = meta["latent_dim"], meta.get("num_classes", 0)
    endpoint = "generate" if "generate" in meta["signatures"] else "decode"  # GANs / VAEs

    z = keras.Input((latent_dim,), name="z")
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        generator = ConditionalTFSMLayer(saved_model, call_endpoint=endpoint, trainable=False)
        inputs, images = [z, label], generator([z, label])
    else:
        generator = keras.layers.TFSMLayer(saved_model, call_endpoint=endpoint, trainable=False)
        inputs, images = z, generator(z)
    h = images
    for filters in (16, 32):
        h = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(h)
    z_hat = keras.layers.Dense(latent_dim)(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, z_hat, name="generator_inverse")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")

    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((steps * batch_size, latent_dim)).astype(np.float32)
    x = [latents, rng.integers(0, num_classes, len(latents)).astype(np.int32)] if num_classes else latents
    probe = [a[:8] for a in x] if num_classes else x[:8]
    before_images = np.asarray(generator(probe))
    before = model.evaluate(x, latents, batch_size=batch_size, verbose=0)
    model.fit(x, latents, batch_size=batch_size, epochs=1, verbose=0)
    after = model.evaluate(x, latents, batch_size=batch_size, verbose=0)
    unchanged = np.array_equal(before_images, np.asarray(generator(probe)))
    print(
        f"(a) head on the frozen {endpoint} signature: z-recovery MSE {before:.4f} -> {after:.4f} "
        f"after {steps} steps; generator output unchanged: {unchanged}"
    )
    return model


def fine_tune_generator(keras_file, steps, batch_size=16, learning_rate=1e-4):
    """(b): a few GradientTape steps of the reloaded generator against the frozen discriminator."""
    import tfgen  # noqa: F401  (registers tfgen's model classes for load_model)
    from tfgen import losses

    model = keras.saving.load_model(keras_file, safe_mode=True)
    if not hasattr(model, "discriminator"):
        print(f"(b) skipped: {keras_file} is a {model.registry_name}, which has no discriminator")
        return None
    generator = model.generator  # with ema_decay, model.generate uses model.ema_generator instead
    generator.trainable = True
    model.discriminator.trainable = False
    _, generator_loss = losses.gan_loss(model.loss)  # the run's own G loss
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=0.5)
    start = [w.numpy().copy() for w in generator.trainable_weights]
    judge = [w.numpy().copy() for w in model.discriminator.weights]
    for step in range(steps):
        z = tf.random.normal([batch_size, model.latent_dim], seed=step)
        labels = tf.random.uniform([batch_size], 0, model.num_classes, tf.int32) if model.needs_labels else None
        with tf.GradientTape() as tape:
            fake = model.run_generator(generator, z, labels, training=True)
            loss = tf.reduce_mean(generator_loss(model.discriminate(fake, labels, training=False)))
        gradients = tape.gradient(loss, generator.trainable_weights)
        optimizer.apply_gradients(zip(gradients, generator.trainable_weights))
        print(f"(b) fine-tuning step {step + 1}: generator loss {float(loss):.4f}")
    moved = sum(not np.array_equal(a, w.numpy()) for a, w in zip(start, generator.trainable_weights))
    judged = all(np.array_equal(a, w.numpy()) for a, w in zip(judge, model.discriminator.weights))
    print(f"(b) {moved} of {len(start)} generator weight tensors changed; discriminator unchanged: {judged}")
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished run directory, e.g. runs/digits_dcgan")
    parser.add_argument("--steps", type=int, default=200, help="(a): head training steps (default 200)")
    parser.add_argument("--fine-tune-steps", type=int, default=2, help="(b): generator steps (default 2)")
    args = parser.parse_args(argv)
    run = Path(args.run)
    for needed in ("saved_model/tfgen.json", "model.keras"):
        if not (run / needed).is_file():
            print(f"reuse_generator: error: {run / needed} not found; pass a finished run directory", file=sys.stderr)
            return 2
    frozen_generator_with_head(str(run / "saved_model"), args.steps)
    fine_tune_generator(run / "model.keras", args.fine_tune_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
