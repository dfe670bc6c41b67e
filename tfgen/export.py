"""Exporting a trained model for use without tfgen.

The generator becomes a TF SavedModel with a `generate(z)` signature (also the serving
default) that plain TensorFlow, TF Serving or `keras.layers.TFSMLayer` can call; a small
`tfgen.json` beside it records what the inputs and outputs mean.
"""

import json
from pathlib import Path

import keras
import tensorflow as tf


def export_generator(model, path):
    """Write `model.generator` to `path` as a SavedModel: generate(z [B, latent_dim]) -> [-1, 1] images."""
    path = Path(path)
    archive = keras.export.ExportArchive()
    archive.track(model.generator)
    archive.add_endpoint(
        name="generate",
        fn=lambda z: model.generator(z, training=False),
        input_signature=[tf.TensorSpec([None, model.latent_dim], tf.float32, name="z")],
    )
    archive.write_out(str(path), verbose=False)
    metadata = {
        "model": model.registry_name,
        "latent_dim": model.latent_dim,
        "image_shape": list(model.image_shape),
        "output_range": [-1.0, 1.0],
        "signatures": {"generate": "z float32 [batch, latent_dim] ~ N(0, I) -> images"},
    }
    (path / "tfgen.json").write_text(json.dumps(metadata, indent=2))
    return path
