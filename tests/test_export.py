import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained_run(toy_run):
    return toy_run  # the session's toy run (conftest), trained once for every module that reads it


def test_saved_model_works_as_a_keras_layer(trained_run):
    import keras

    layer = keras.layers.TFSMLayer(str(trained_run / "saved_model"), call_endpoint="generate")
    out = layer(tf.zeros((2, 4)))
    images = out if isinstance(out, tf.Tensor) else list(out.values())[0]
    assert images.shape == (2, 8, 8, 1)


def _run_without_tfgen(script, tmp_path):
    """Run `script` in a fresh Python that must never import tfgen; its stdout."""
    script += '\nassert not any(m.startswith("tfgen") for m in sys.modules), "tfgen was imported"\n'
    result = subprocess.run(
        [sys.executable, "-c", "import sys\n" + script], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_saved_models_generate_in_a_fresh_process_without_tfgen(trained_run, tmp_path):
    """The run's own saved_model (its serving_default is generate) and a re-export with uint8
    signatures, both loaded by plain TensorFlow in one fresh process that never imports tfgen."""
    import keras

    from tfgen import export, images

    out = tmp_path / "exported"
    assert export.main(["--run", str(trained_run), "--uint8", "--out", str(out)]) == 0
    meta = json.loads((out / "tfgen.json").read_text())
    assert meta["latent_dim"] == 4 and meta["image_shape"] == [8, 8, 1] and meta["serving_default"] == "generate"
    assert meta["signatures"]["generate"]["inputs"] == {"z": {"shape": [None, 4], "dtype": "float32"}}
    assert meta["signatures"]["generate"]["outputs"]["output_0"]["range"] == [-1.0, 1.0]
    assert meta["signatures"]["generate_uint8"]["outputs"]["output_0"] == {
        "shape": [None, 8, 8, 1],
        "dtype": "uint8",
        "range": [0, 255],
    }

    model = keras.saving.load_model(trained_run / "model.keras")
    run_z = np.random.default_rng(0).standard_normal((5, model.latent_dim)).astype(np.float32)
    np.save(tmp_path / "run_z.npy", run_z)
    z = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    _run_without_tfgen(
        textwrap.dedent(f"""
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(trained_run / "saved_model")!r})
        run_z = tf.constant(np.load("run_z.npy"))
        (out,) = loaded.signatures["generate"](z=run_z).values()
        default = loaded.signatures["serving_default"](z=run_z)
        np.testing.assert_array_equal(list(default.values())[0].numpy(), out.numpy())
        np.save("out.npy", out.numpy())

        loaded = tf.saved_model.load({str(out)!r})
        z = tf.constant(np.load("z.npy"))
        (pixels,) = loaded.signatures["generate_uint8"](z=z).values()
        (floats,) = loaded.signatures["generate"](z=z).values()
        assert pixels.dtype == tf.uint8
        np.save("pixels.npy", pixels.numpy())
        np.save("floats.npy", floats.numpy())
        """),
        tmp_path,
    )
    run_images = np.load(tmp_path / "out.npy")
    assert run_images.shape == (5, 8, 8, 1)
    np.testing.assert_allclose(run_images, model(run_z).numpy(), atol=1e-5)
    pixels, floats = np.load(tmp_path / "pixels.npy"), np.load(tmp_path / "floats.npy")
    np.testing.assert_array_equal(pixels, images.to_uint8(floats))  # same rounding as the PNGs
    expected = model(z).numpy()
    np.testing.assert_allclose(floats, expected, atol=1e-5)
    assert np.abs(pixels.astype(int) - images.to_uint8(expected)).max() <= 1


def test_uint8_export_of_a_vae_converts_only_the_image_signatures(tmp_path):
    from helpers import toy_model

    from tfgen.export import export_saved_model

    model = toy_model("cond_vae", latent_dim=2, width=4)
    export_saved_model(model, tmp_path / "vae", class_names=[str(i) for i in range(10)], uint8=True)
    loaded = tf.saved_model.load(str(tmp_path / "vae"))
    assert set(loaded.signatures) == {"encode", "decode", "sample", "decode_uint8", "sample_uint8", "serving_default"}
    sampled = list(loaded.signatures["sample_uint8"](count=tf.constant(3), label=tf.constant(7)).values())[0]
    assert sampled.dtype == tf.uint8 and sampled.shape == (3, 8, 8, 1)
    meta = json.loads((tmp_path / "vae" / "tfgen.json").read_text())
    assert meta["num_classes"] == 10 and meta["class_names"][7] == "7"
    assert meta["signatures"]["encode"]["outputs"]["mean"] == {"shape": [None, 2], "dtype": "float32"}
    assert meta["signatures"]["decode_uint8"]["inputs"]["label"] == {"shape": [None], "dtype": "int32"}


def test_export_cli_keras_format_reloads_under_safe_mode(trained_run):
    import keras

    from tfgen import export

    assert export.main(["--run", str(trained_run), "--format", "keras"]) == 0
    path = trained_run / "export" / "keras" / "model.keras"
    reloaded = keras.saving.load_model(path, safe_mode=True)
    original = keras.saving.load_model(trained_run / "model.keras", safe_mode=True)
    z = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(reloaded.generate(z), original.generate(z))
    assert json.loads((path.parent / "tfgen.json").read_text())["latent_dim"] == 4


def test_export_cli_replaces_an_earlier_export_but_not_other_folders(trained_run, tmp_path, capsys):
    from tfgen import export

    out = tmp_path / "again"
    assert export.main(["--run", str(trained_run), "--out", str(out)]) == 0
    (out / "stale.txt").write_text("from an earlier export")
    assert export.main(["--run", str(trained_run), "--out", str(out)]) == 0
    assert not (out / "stale.txt").exists() and (out / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no temporary folders left
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert export.main(["--run", str(trained_run), "--out", str(precious)]) == 2
    assert "is not an earlier tfgen export" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--uint8", "--format", "keras"], "--uint8 adds uint8 signatures to a SavedModel"),
        (["--run", "/nonexistent/run"], "is not a run directory"),
    ],
)
def test_export_cli_errors_exit_2_in_one_line(trained_run, capsys, args, message):
    from tfgen import export

    argv = ["--run", str(trained_run), *args] if args[0] != "--run" else args
    assert export.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_frozen_tfsm_layer_inside_a_new_keras_model_trains_only_the_head(trained_run):
    import keras

    generator = keras.layers.TFSMLayer(str(trained_run / "saved_model"), call_endpoint="generate", trainable=False)
    z = keras.Input((4,))
    head = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(z, head(keras.layers.Flatten()(generator(z))))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    latents = np.random.default_rng(3).standard_normal((64, 4)).astype(np.float32)
    targets = (latents[:, 0] > 0).astype(np.float32)  # something simple about each image's z
    generator_before = [w.numpy().copy() for w in generator.weights]
    images_before = np.asarray(generator(latents[:4]))
    head_before = [w.numpy().copy() for w in head.weights]
    model.fit(latents, targets, epochs=2, batch_size=16, verbose=0)
    assert generator.weights and not generator.trainable_weights
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(generator_before, generator.weights))
    np.testing.assert_array_equal(np.asarray(generator(latents[:4])), images_before)
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(head_before, head.weights))


def test_reuse_tool_runs_on_a_toy_run(trained_run):
    result = subprocess.run(
        [sys.executable, "tools/reuse_generator.py", "--run", str(trained_run), "--steps", "4"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "generator output unchanged: True" in result.stdout
    assert "fine-tuning step 2" in result.stdout and "discriminator unchanged: True" in result.stdout
