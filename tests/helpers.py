"""Shared model-test helpers (after keras-hub's): build at toy size, fit, save/reload."""

import contextlib
import io
import os
import runpy
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import tfgen  # noqa: F401  (registers the models for load_model)
from tfgen import optimizers
from tfgen.config import DataConfig
from tfgen.data import build_dataset
from tfgen.models import get_model_class


def toy_model(name, image_shape=(8, 8, 1), lr=1e-3, **kwargs):
    """A registered model at toy size, compiled with one Adam (tfgen's, as training uses) per optimizer name."""
    cls = get_model_class(name)
    params = dict(image_shape=image_shape, seed=1, **kwargs)
    if cls.needs_labels:
        params.setdefault("num_classes", 10)
    model = cls(**params)
    model.compile(jit_compile=False, **{n: optimizers.Adam(lr) for n in cls.optimizer_names})
    return model


def digits(image_size=8, batch_size=16, limit=256):
    """A small labelled digits dataset."""
    cfg = DataConfig(source="digits", image_size=image_size, batch_size=batch_size, limit=limit)
    return build_dataset(cfg).dataset


def assert_keras_round_trip(model, tmp_path, *inputs):
    """`model.keras` reloads under safe_mode with the same config and identical outputs."""
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded.generate(*inputs), model.generate(*inputs), atol=1e-5)
    return loaded


def checkpoint_values(path):
    """{name: value} of a checkpoint's training state, without its bookkeeping (the object
    graph, and save_counter, which counts saves: a stop adds one)."""
    reader = tf.train.load_checkpoint(str(path))
    names = [n for n in reader.get_variable_to_shape_map() if not n.startswith(("save_counter", "_CHECKPOINTABLE"))]
    return {n: reader.get_tensor(n) for n in names}


def real_images(model, n=4):
    return tf.random.stateless_uniform((n, *model.image_shape), seed=(5, 0), minval=-1, maxval=1)


def run_tool(script, *args):
    """`python tools/<script> ARGS` in the checkout, run in this process (`runpy`, as
    `__main__`): a CompletedProcess with its exit status, stdout and stderr. The tools are
    `main(argv)` scripts; a fresh interpreter would spend most of its time importing TensorFlow."""
    repo = Path(__file__).resolve().parents[1]
    argv = [str(repo / "tools" / script), *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    sys.argv = argv
    os.chdir(repo)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(argv[0], run_name="__main__")
                code = 0
            except SystemExit as exit:  # an uncaught exception is not caught: the test fails with it
                code = exit.code
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def issue(db, sampler, space, train_features, num, min_distance, seed, source="toy", **kwargs):
    """`uniqueness.issue_unique` as `tfgen generate --unique` runs it: under the store's write
    lock for `source`, against every image issued before. Returns (issued, rejected)."""
    from tfgen import store, uniqueness

    db = store.Store(db)
    db.register(source, space.name, train_features.shape[1], sampler.noise_size)
    kept = uniqueness.KeptIndex(train_features.shape[1], train_features)
    with db.writing(source) as writer:
        kept.refresh(writer)
        return uniqueness.issue_unique(
            sampler, space, train_features, kept, writer, num, min_distance, seed=seed, **kwargs
        )
