"""Exporting a trained model for use without tfgen.

`export_saved_model` writes a TF SavedModel whose signatures are the model's
`export_endpoints()` (the first is also `serving_default`), usable from plain TensorFlow,
TF Serving or `keras.layers.TFSMLayer`. A `tfgen.json` beside it records what the inputs
and outputs mean. Only the networks in the model's `export_networks` are stored (a GAN's
discriminator stays behind).
"""

import json
from pathlib import Path

import keras
import tensorflow as tf


def generate_endpoint(model):
    """(fn, input_signature) of generate(z [B, latent_dim] [, label [B]]) -> images [B, H, W, C] in [-1, 1]."""
    z_spec = tf.TensorSpec([None, model.latent_dim], tf.float32, name="z")
    if model.needs_labels:
        return (
            lambda z, label: model.generate(z, label, training=False),
            [z_spec, tf.TensorSpec([None], tf.int32, name="label")],
        )
    return lambda z: model.generate(z, training=False), [z_spec]


def export_saved_model(model, path, class_names=()):
    """Write `model`'s endpoints to the SavedModel folder `path`; returns the path."""
    path = Path(path)
    archive = keras.export.ExportArchive()
    for network in model.export_networks:
        archive.track(getattr(model, network))
    endpoints = model.export_endpoints()
    for name, (fn, signature) in endpoints.items():
        archive.add_endpoint(name=name, fn=fn, input_signature=signature)
    archive.write_out(str(path), verbose=False)
    metadata = {
        "model": model.registry_name,
        "latent_dim": model.latent_dim,
        "image_shape": list(model.image_shape),
        "class_names": list(class_names),
        "output_range": [-1.0, 1.0],
        "signatures": {
            name: {spec.name: [d for d in spec.shape] for spec in signature}
            for name, (_, signature) in endpoints.items()
        },
    }
    (path / "tfgen.json").write_text(json.dumps(metadata, indent=2))
    return path
