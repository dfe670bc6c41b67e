"""Presets (tfgen.presets): packaged by tools/make_preset.py, used by name from the command
line, from Python, from plain Keras and in the studio; the shipped ones load and fit the wheel."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import run_tool
from PIL import Image

import tfgen
from tfgen import __main__ as tfgen_main
from tfgen import generate, presets, serve
from tfgen.errors import ConfigError
from tfgen.sampling import Sampler

WHEEL_BUDGET = 15e6  # bytes: every shipped preset together


@pytest.fixture(scope="module")
def preset(cond_toy_run, tmp_path_factory):
    """The conditional toy run packaged as a preset by the tool, scored on 20 samples."""
    out = tmp_path_factory.mktemp("presets")
    config = cond_toy_run.parent.parent / "cond_toy.yaml"
    result = run_tool(
        "make_preset.py",
        *("--config", config, "--name", "toy_digits", "--description", "toy digits"),
        *("--from-run", cond_toy_run, "--train-seconds", 12, "--num", 20, "--out", out),
    )
    assert result.returncode == 0, result.stderr
    assert f"written: {out / 'toy_digits'}" in result.stdout
    return out / "toy_digits"


def test_the_tool_writes_the_export_a_grid_and_what_the_preset_is(preset, cond_toy_run):
    meta = json.loads((preset / "preset.json").read_text())
    assert meta["name"] == "toy_digits" and meta["description"] == "toy digits"
    assert meta["config"]["model"]["name"] == "cond_gan" and meta["config"]["data"]["source"] == "digits"
    assert meta["trained"]["seconds"] == 12 and meta["trained"]["machine"]
    assert meta["tfgen_version"] == tfgen.__version__
    assert set(meta["scores"]) >= {"fid", "fid_floor", "precision", "recall"} and meta["scores"]["num_samples"] == 20
    assert "--config" in meta["rebuild"] and "--seed 0" in meta["rebuild"]
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert (preset / "saved_model" / "saved_model.pb").is_file()
    assert Image.open(preset / "samples.png").size[0] > 8
    assert not list(preset.parent.glob(".toy_digits-*")), "the staging folder is left behind"


def test_a_config_other_than_the_runs_is_refused(cond_toy_run, tmp_path):
    config = cond_toy_run.parent.parent / "cond_toy.yaml"
    result = run_tool(
        "make_preset.py",
        *("--config", config, "--set", "model.latent_dim=9", "--from-run", cond_toy_run),
        *("--train-seconds", 1, "--out", tmp_path),
    )
    assert result.returncode == 2 and "model.latent_dim is 4, not 9" in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())


def test_load_gives_the_runs_images_by_folder_and_the_same_from_plain_keras(preset, cond_toy_run):
    sampler = tfgen.load(preset)
    assert sampler.description == str(preset) and sampler.class_names == [str(i) for i in range(10)]
    ours = sampler.sample(10, seed=3, uint8=True)
    theirs = Sampler.from_run(cond_toy_run).sample(10, seed=3, uint8=True)
    np.testing.assert_array_equal(ours, theirs)
    # plain TensorFlow, no tfgen model code: the uint8 signature with the same noise and labels
    # (TFSMLayer calls an endpoint with one input, so it serves the unconditional presets)
    signature = tf.saved_model.load(str(preset / "saved_model")).signatures["generate_uint8"]
    z = sampler.noise(np.random.default_rng(3), 10)
    (pixels,) = signature(z=tf.constant(z), label=tf.range(10, dtype=tf.int32)).values()
    np.testing.assert_array_equal(pixels.numpy(), ours)


def test_generate_takes_a_preset_and_names_bad_handles_in_one_line(preset, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert generate.main(["--preset", str(preset), "--num", "20", "--seed", "1", "--out", str(out)]) == 0
    assert np.asarray(Image.open(out)).std() > 0, "a blank grid"
    capsys.readouterr()
    for handle, words in [
        ("preset:nope", "unknown preset 'nope'"),
        ("kaggle://keras/tfgen/mnist", "tfgen does not download presets"),
        ("hf://someone/tfgen-mnist", "tfgen does not download presets"),
        (str(tmp_path), "is not a preset folder"),
    ]:
        assert generate.main(["--preset", handle, "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    with pytest.raises(ConfigError, match="tfgen does not download presets"):
        tfgen.load("kaggle://keras/tfgen/mnist")


def test_the_studio_serves_a_preset_screened_against_its_training_images(preset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = serve.parse_args(["--theme", f"digits={preset}", "--min-distance", "0.05"])
    studio = serve.build_studio(args)
    source = next(iter(studio.themes.values())).source
    assert source.training is not None, "a preset of the digits data is screened against the digits"
    assert source.sampler.cfg.data.source == "digits"
    assert len(studio.themes) == 10  # a conditional preset: a theme per class
    assert (preset / "avatars.db").is_file(), "a local preset folder keeps its store beside it"


def test_a_shipped_preset_keeps_its_store_in_the_working_directory(preset, tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "PRESET_DIR", preset.parent)
    (preset / "avatars.db").unlink(missing_ok=True)  # the earlier test's
    monkeypatch.chdir(tmp_path)
    assert [n for n, _ in serve.parse_themes(["d=preset:toy_digits"])] == ["d"]
    serve.build_studio(serve.parse_args(["--theme", "d=preset:toy_digits"]))
    assert (tmp_path / "avatars.db").is_file() and not (preset / "avatars.db").exists()
    with pytest.raises(ConfigError, match="unknown preset 'other'; shipped presets: toy_digits"):
        serve.parse_themes(["d=preset:other"])


def test_every_shipped_preset_loads_samples_and_all_fit_the_wheel_budget(capsys):
    """Each through tfgen.load, and the unconditional ones through plain Keras (TFSMLayer) too,
    bit for bit."""
    shipped = presets.shipped()
    assert {"mnist5k_dcgan", "mnist5k_cond_gan"} <= set(shipped)
    size = sum(f.stat().st_size for f in presets.PRESET_DIR.rglob("*") if f.is_file())
    assert size <= WHEEL_BUDGET, f"the presets take {size / 1e6:.1f} MB of the wheel, over {WHEEL_BUDGET / 1e6:.0f}"
    for name, preset in shipped.items():
        meta = preset.meta
        assert {"fid", "precision", "recall"} <= set(meta["scores"]), name
        assert meta["rebuild"].startswith("python tools/make_preset.py --config"), name
        sampler = tfgen.load(f"preset:{name}")
        pictures = sampler.sample(2, seed=0)
        assert pictures.shape == (2, *meta["image_shape"]) and -1 <= pictures.min() <= pictures.max() <= 1
        if not sampler.conditional:
            layer = keras.layers.TFSMLayer(str(preset.saved_model), call_endpoint="generate_uint8")
            pixels = layer(sampler.noise(np.random.default_rng(0), 2))
            pixels = next(iter(pixels.values())) if isinstance(pixels, dict) else pixels  # one output: a tensor
            np.testing.assert_array_equal(np.asarray(pixels), sampler.sample(2, seed=0, uint8=True))
    assert tfgen_main.main(["presets"]) == 0
    listing = capsys.readouterr().out
    for name, preset in shipped.items():
        assert f"  {name}: " in listing and f"FID {preset.meta['scores']['fid']:.2f} (floor " in listing
