"""SDPC at toy size: inference, sparsity, normalised atoms, feedback, learning, pictures, export."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_keras_round_trip, digits, toy_model

from tfgen import callbacks
from tfgen.config import load_config
from tfgen.errors import ConfigError
from tfgen.export import export_saved_model

SIZE = dict(channels=(4, 8), kernel_sizes=(5, 3), strides=(2, 2), lambdas=(0.1, 0.1), iterations=10)


def images(n=4, size=16, channels=1):
    """Smooth random images in [-1, 1] (blurred noise: structure for the atoms to code)."""
    x = tf.random.stateless_normal((n, size, size, channels), seed=(3, 0))
    x = tf.nn.avg_pool2d(x, 3, 1, "SAME") * 2.0
    return tf.clip_by_value(x, -1.0, 1.0)


def sdpc(image_shape=(16, 16, 1), **overrides):
    return toy_model("sdpc", image_shape, **{**SIZE, **overrides})


def zero_codes(model, n):
    return [tf.zeros((n, *shape)) for shape in model.dictionaries.shapes[1:]]


@pytest.mark.parametrize("k_fb", [1.0, 0.5])
def test_ista_lowers_the_energy_at_every_iteration(k_fb):
    """Without momentum, every (F)ISTA iteration is a descent step on E (with k_fb's weights);
    FISTA's momentum is not monotone but ends lower after as many iterations."""
    model = sdpc(k_fb=k_fb, fista=False)
    x = images()
    energies = [float(tf.reduce_mean(model.energy(x, zero_codes(model, 4))))]
    for n in range(1, 13):
        energies.append(float(tf.reduce_mean(model.energy(x, model.infer(x, iterations=n)))))
    assert all(b < a + 1e-4 for a, b in zip(energies, energies[1:])), energies
    assert energies[-1] < 0.9 * energies[0]
    fast = sdpc(k_fb=k_fb, fista=True)
    assert float(tf.reduce_mean(fast.energy(x, fast.infer(x, iterations=12)))) < energies[-1]


def test_codes_are_non_negative_and_sparser_as_lambda_grows():
    x = images(8)
    active = []
    for lam in (0.02, 0.2, 1.0):
        model = sdpc(lambdas=(lam, lam), iterations=20)
        codes = model.encode(x)
        assert all(float(tf.reduce_min(c)) >= 0.0 for c in codes)
        active.append([float(tf.reduce_mean(tf.cast(c > 0, tf.float32))) for c in codes])
    for layer in range(2):
        fractions = [a[layer] for a in active]
        assert fractions[0] > fractions[1] > fractions[2], (layer, fractions)


def test_atoms_stay_normalised_after_an_update():
    model = sdpc(lr=0.1)
    before = [k.numpy().copy() for k in model.dictionaries.kernels]
    for _ in range(2):
        model.train_step(images(8))
    for kernel, old in zip(model.dictionaries.kernels, before):
        w = kernel.numpy()
        assert not np.allclose(w, old)  # the update moved the atoms ...
        norms = np.linalg.norm(w.reshape(-1, w.shape[-1]), axis=0)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)  # ... and they are unit-norm again


def test_without_feedback_the_layers_code_independently():
    """k_fb = 0: layer 1's code is a one-layer sparse coding of the image (the upper
    dictionary cannot reach it), and layer 2 codes layer 1's code. With feedback, changing
    the upper dictionary changes the lower code."""
    x = images()
    two = sdpc(k_fb=0.0)
    one = sdpc(channels=(4,), kernel_sizes=(5,), strides=(2,), lambdas=(0.1,))
    one.dictionaries.kernels[0].assign(two.dictionaries.kernels[0])
    one.dictionaries.squared_norms(iterations=50, update=True)
    gamma_1, gamma_2 = two.encode(x)
    # equal up to the power-iteration estimates of the step (which ran for different lengths)
    np.testing.assert_allclose(gamma_1, one.encode(x)[0], atol=1e-3)

    def with_new_top(model):
        model.dictionaries.kernels[1].assign(tf.random.normal(model.dictionaries.kernels[1].shape, seed=7))
        model.dictionaries.kernels[1].assign(model.dictionaries.kernels[1].constraint(model.dictionaries.kernels[1]))
        model.dictionaries.squared_norms(iterations=50, update=True)
        return model.encode(x)

    new_1, new_2 = with_new_top(two)
    np.testing.assert_allclose(new_1, gamma_1, atol=1e-3)
    assert not np.allclose(new_2, gamma_2)

    fed = sdpc(k_fb=1.0)
    fed_1, _ = fed.encode(x)
    assert float(tf.reduce_max(tf.abs(with_new_top(fed)[0] - fed_1))) > 1e-2


def test_train_step_moves_only_the_dictionaries_and_reports_sparsity():
    model = sdpc()
    logs = model.train_step(images(8))
    assert set(logs) == {"reconstruction", "energy", "active_1", "active_2"}
    assert 0 < float(logs["active_2"]) <= 1 and int(model.optimizer.iterations) == 1
    assert {v.path for v in model.trainable_variables} == {v.path for v in model.dictionaries.trainable_variables}


def test_learning_lowers_the_reconstruction_error_on_digits():
    model = sdpc(lr=5e-3)
    data = digits(image_size=16, batch_size=32)
    batch, _ = next(iter(data))

    def error():
        return float(tf.reduce_mean(tf.square(model.reconstruct(batch) - batch)))

    before = error()
    model.fit(data, epochs=3, verbose=0, shuffle=False)
    assert error() < 0.7 * before


def test_decode_projects_top_codes_and_atoms_have_receptive_fields():
    model = sdpc()
    x = images()
    gamma_1, gamma_2 = model.encode(x)
    assert gamma_1.shape == (4, 8, 8, 4) and gamma_2.shape == (4, 4, 4, 8)
    assert model.decode(gamma_2).shape == (4, 16, 16, 1)
    assert model.atoms(1).shape == (4, 5, 5, 1)
    assert model.atoms(2).shape == (8, 5 + 2 * 2, 5 + 2 * 2, 1)  # 5 + (3 - 1) * stride 2
    assert float(tf.reduce_max(tf.abs(model.atoms(2)))) == pytest.approx(1.0)


def test_keras_round_trip_and_encode_decode_signatures(tmp_path):
    model = sdpc((8, 8, 3))
    model.train_step(images(4, 8, 3))
    x = images(2, 8, 3)
    loaded = assert_keras_round_trip(model, tmp_path, x)
    for a, b in zip(loaded.encode(x), model.encode(x)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    export_saved_model(model, tmp_path / "saved")
    meta = json.loads((tmp_path / "saved" / "tfgen.json").read_text())
    assert set(meta["signatures"]) == {"reconstruct", "encode", "decode"}
    assert set(meta["signatures"]["encode"]["outputs"]) == {"code_1", "code_2"}
    np.save(tmp_path / "x.npy", x.numpy())
    code = (
        "import numpy as np, tensorflow as tf, sys\n"
        "assert 'tfgen' not in sys.modules\n"
        f"m = tf.saved_model.load({str(tmp_path / 'saved')!r})\n"
        "codes = m.signatures['encode'](images=tf.constant(np.load('x.npy')))\n"
        "out = m.signatures['decode'](code=codes['code_2'])['output_0'].numpy()\n"
        "np.save('out.npy', out)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model.decode(model.encode(x)[1]), atol=1e-4)


def test_pictures_atoms_sparsity_and_corrupted_reconstructions(tmp_path):
    model = sdpc()
    logs = {k: float(v) for k, v in model.train_step(images(8)).items()}
    atoms = callbacks.AtomPictures(tmp_path, every=1, last_epoch=1)
    grid = callbacks.CorruptedReconstructions(tmp_path, images(4).numpy(), every=1, last_epoch=1)
    for callback in (atoms, grid):
        callback.set_model(model)
        callback.on_epoch_end(0, dict(logs))
    for name in (
        "atoms/layer_1.png",
        "atoms/layer_2.png",
        "atoms/layer_1_epoch_001.png",
        "sparsity.png",
        "reconstructions.png",
        "samples/epoch_001.png",
    ):  # sdpc does not sample: its grid is this
        assert (tmp_path / name).is_file(), name


def test_per_layer_options_come_from_the_config(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("model: {name: sdpc, lambdas: [0.1, 0.2]}\ndata: {source: digits, image_size: 16}\n")
    cfg = load_config(str(path), ["model.channels=[3, 5]"])
    assert cfg.model.params["lambdas"] == [0.1, 0.2] and cfg.model.params["channels"] == [3, 5]
    assert cfg.model.params["strides"] == [2, 2]  # tuple defaults are lists, as YAML writes them
    with pytest.raises(ConfigError, match="model.lambdas"):
        load_config(str(path), ["model.lambdas=0.3"])


def test_mismatched_layer_options_are_refused():
    with pytest.raises(ValueError, match="one entry per layer"):
        toy_model("sdpc", (16, 16, 1), channels=(4, 8), kernel_sizes=(5,), strides=(2, 2), lambdas=(0.1, 0.1))
    with pytest.raises(ValueError, match="k_fb"):
        sdpc(k_fb=-1.0)


def test_pokemon_config_builds_when_the_shared_art_is_there():
    """The shipped Pokemon config is valid and builds the model at its size (skipped without ../shared)."""
    from pathlib import Path

    if not Path("../shared/data/pokemon/art").is_dir():
        pytest.skip("no ../shared/data/pokemon/art beside the project")
    cfg = load_config("pokemon_sdpc.yaml", ["data.path=../shared/data/pokemon/art"])
    model = toy_model("sdpc", (cfg.data.image_size,) * 2 + (cfg.data.channels,), **cfg.model.params)
    assert model.decode(model.encode(np.zeros((1, 64, 64, 3), np.float32))[-1]).shape == (1, 64, 64, 3)


def test_evaluation_scores_its_reconstructions_and_no_samples(tmp_path):
    """SDPC does not sample: `rec` gives the three reconstruction errors, FID is left out,
    and the error of a noisy input is measured against the clean image."""
    from tfgen import images as image_utils
    from tfgen import scoring
    from tfgen.config import DataConfig
    from tfgen.data import build_dataset

    data = build_dataset(DataConfig(source="digits", image_size=16, batch_size=16, limit=64))
    model = sdpc()
    result = scoring.evaluate_model(model, data, ("fid", "rec"), 32, None, tmp_path, "digits")
    assert set(result) == {"rec_mse", "rec_noise_mse", "rec_blur_mse"}
    batch, _ = next(iter(data.dataset))
    clean = float(np.mean(np.square(model.reconstruct(batch.numpy()) - batch.numpy())))
    noisy = float(np.mean(np.square(model.reconstruct(image_utils.add_noise(batch.numpy())) - batch.numpy())))
    assert result["rec_mse"] == pytest.approx(clean, rel=0.3) and result["rec_noise_mse"] > result["rec_mse"]
    assert noisy > clean


def test_random_extractor_is_label_free_and_fixed():
    from tfgen.metrics import get_extractor

    x = images(6, 16, 3).numpy()
    a = get_extractor("random", image_shape=(16, 16, 3)).features(x)
    b = get_extractor("random", image_shape=(16, 16, 3)).features(x)
    assert a.shape == (6, 128)
    np.testing.assert_allclose(a, b, atol=1e-6)  # the same network every time: scores compare
