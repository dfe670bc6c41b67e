"""SDPC-GAN at toy size: samples are decoded codes, each optimizer moves its own weights, round trips."""

import json
import subprocess
import sys

import numpy as np
import tensorflow as tf
from helpers import assert_keras_round_trip, real_images, toy_model

from tfgen.export import export_saved_model

SIZE = dict(
    latent_dim=4,
    g_width=4,
    d_width=4,
    channels=(4, 8),
    kernel_sizes=(5, 3),
    strides=(2, 2),
    lambdas=(0.1, 0.1),
    iterations=5,
)


def fusion(image_shape=(16, 16, 1), **overrides):
    return toy_model("sdpc_gan", image_shape, **{**SIZE, **overrides})


def test_samples_are_top_codes_decoded_through_the_dictionaries():
    model = fusion()
    z = tf.random.normal((3, 4), seed=1)
    codes = model.generator(z)
    assert codes.shape == (3, 4, 4, 8) and float(tf.reduce_min(codes)) >= 0.0  # SDPC's top-layer code map
    np.testing.assert_allclose(model.generate(z), model.decode(codes), atol=1e-6)
    assert model.generate(z).shape == (3, 16, 16, 1)


def test_a_step_moves_each_network_with_its_own_optimizer():
    model = fusion()
    snapshot = {
        net: [v.numpy().copy() for v in getattr(model, net).trainable_variables]
        for net in ("dictionaries", "generator", "discriminator")
    }
    logs = model.train_step(real_images(model, 8))
    for net, before in snapshot.items():
        after = getattr(model, net).trainable_variables
        assert any(not np.allclose(b, a.numpy()) for b, a in zip(before, after)), net
    for name in ("optimizer", "d_optimizer", "g_optimizer"):
        assert int(getattr(model, name).iterations) == 1
    assert {"reconstruction", "active_1", "active_2", "d_loss", "g_loss", "fake_active"} <= set(logs)
    kernel = model.dictionaries.kernels[0].numpy()
    np.testing.assert_allclose(np.linalg.norm(kernel.reshape(-1, kernel.shape[-1]), axis=0), 1.0, atol=1e-5)


def test_the_dictionaries_learn_from_real_images_only():
    """The adversarial loss never reaches the atoms: two models that differ only in their
    generator end the step with the same dictionaries."""
    a, b = fusion(), fusion()
    b.set_weights(a.get_weights())
    b.generator.set_weights([w + 0.5 for w in b.generator.get_weights()])
    images = real_images(a, 8)
    a.train_step(images)
    b.train_step(images)
    for va, vb in zip(a.dictionaries.weights, b.dictionaries.weights):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), atol=1e-6)


def test_keras_round_trip_and_export_signatures(tmp_path):
    model = fusion((8, 8, 3))
    model.train_step(real_images(model, 4))
    z = tf.random.normal((2, 4), seed=2)
    loaded = assert_keras_round_trip(model, tmp_path, z)
    x = real_images(model, 2)
    np.testing.assert_allclose(loaded.reconstruct(x), model.reconstruct(x), atol=1e-5)
    export_saved_model(model, tmp_path / "saved", uint8=True)
    meta = json.loads((tmp_path / "saved" / "tfgen.json").read_text())
    assert meta["serving_default"] == "generate"
    assert {"generate", "reconstruct", "encode", "decode", "generate_uint8"} <= set(meta["signatures"])
    np.save(tmp_path / "z.npy", z.numpy())
    code = (
        "import numpy as np, tensorflow as tf, sys\n"
        "assert 'tfgen' not in sys.modules\n"
        f"m = tf.saved_model.load({str(tmp_path / 'saved')!r})\n"
        "out = m.signatures['generate'](z=tf.constant(np.load('z.npy')))['output_0'].numpy()\n"
        "np.save('out.npy', out)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model.generate(z), atol=1e-4)


def test_training_resumes_and_writes_samples_atoms_and_reconstructions(tmp_path):
    """The training script runs it like any model: pictures it declares, export, and a resume
    that continues the same run."""
    from tfgen import train

    config = tmp_path / "f.yaml"
    config.write_text(
        "model: {name: sdpc_gan, latent_dim: 4, g_width: 4, d_width: 4, channels: [4, 8], kernel_sizes: [5, 3],"
        " iterations: 5}\n"
        "data: {source: digits, image_size: 16, batch_size: 8, limit: 64}\n"
        "train: {epochs: 2, steps_per_epoch: 2, sample_every: 1, num_samples: 4, distribute: none,"
        " jit_compile: false, mixed_precision: none}\n"
        f"run_dir: {tmp_path / 'runs'}\n"
    )
    assert train.main(["--config", str(config), "--set", "train.epochs=1"]) == 0
    assert train.main(["--config", str(config), "--resume", "--set", "train.epochs=2"]) == 0
    run = tmp_path / "runs" / "f"
    for name in (
        "samples/epoch_001.png",
        "samples/epoch_002.png",
        "atoms/layer_1.png",
        "atoms/layer_2.png",
        "sparsity.png",
        "reconstructions.png",
        "model.keras",
        "saved_model/tfgen.json",
    ):
        assert (run / name).is_file(), name
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
