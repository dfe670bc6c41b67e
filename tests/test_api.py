"""tfgen.load and tfgen.build: a trained model, or one to train, from Python without the CLI."""

import numpy as np
import pytest

import tfgen
from tfgen import generate, images
from tfgen.config import load_config
from tfgen.errors import ConfigError, RunError


@pytest.fixture(scope="module")
def conditional_run(cond_toy_run):
    """A finished toy cond_gan run on the digits (labels 0-9), with model.keras and saved_model/
    (the session's, conftest)."""
    return cond_toy_run


def test_load_gives_the_same_images_from_a_run_its_keras_file_and_its_savedmodel(conditional_run):
    from_run = tfgen.load(conditional_run)
    from_keras = tfgen.load(conditional_run / "model.keras")
    from_export = tfgen.load(conditional_run / "saved_model")
    pictures = from_run.sample(6, seed=3, label=7)
    assert pictures.shape == (6, 8, 8, 1) and pictures.dtype == np.float32
    assert pictures.min() >= -1 and pictures.max() <= 1
    np.testing.assert_array_equal(from_keras.sample(6, seed=3, label=7), pictures)
    np.testing.assert_allclose(from_export.sample(6, seed=3, label=7), pictures, atol=1e-5)
    for sampler in (from_run, from_keras, from_export):
        assert sampler.class_names == [str(i) for i in range(10)]
    # the Keras model itself, for reuse in other Keras code
    assert from_run.model.generator.output.shape[1:] == (8, 8, 1)


def test_sample_is_seeded_takes_labels_by_index_or_name_and_gives_uint8(conditional_run):
    sampler = tfgen.load(conditional_run)
    again = sampler.sample(4, seed=1, label=2)
    np.testing.assert_array_equal(sampler.sample(4, seed=1, label="2"), again)
    np.testing.assert_array_equal(sampler.sample(4, seed=1, label=2, uint8=True), images.to_uint8(again))
    assert sampler.sample(4, seed=1, label=2, uint8=True).dtype == np.uint8
    # without a label, image i is of class i mod 10: the 11th is a 0 like the first
    z = sampler.noise(np.random.default_rng(5), 11)
    np.testing.assert_array_equal(sampler.sample(11, seed=5), sampler.images(z, np.arange(11) % 10))
    with pytest.raises(ConfigError, match="out of range"):
        sampler.sample(2, label=10)
    with pytest.raises(ConfigError, match="unknown class"):
        sampler.sample(2, label="ten")
    with pytest.raises(ConfigError, match="n must be an integer >= 1"):
        sampler.sample(0)


def test_sample_matches_the_generate_command(conditional_run, tmp_path):
    out = tmp_path / "sevens.npy"
    assert (
        generate.main(["--run", str(conditional_run), "--num", "5", "--seed", "9", "--label", "7", "--out", str(out)])
        == 0
    )
    np.testing.assert_array_equal(tfgen.load(conditional_run).sample(5, seed=9, label=7), np.load(out))


def test_load_names_what_it_accepts(tmp_path):
    with pytest.raises(RunError, match="not a run folder .* it does not exist"):
        tfgen.load(tmp_path / "missing")
    with pytest.raises(RunError, match="not a run folder"):
        tfgen.load(tmp_path)


def test_build_gives_a_compiled_model_and_data_that_fit_trains(toy_config):
    experiment = tfgen.build(str(toy_config), model={"latent_dim": 6}, data={"limit": 32}, name="notebook")
    model, cfg = experiment.model, experiment.config
    assert cfg.name == "notebook" and cfg.model.params["latent_dim"] == 6 and model.latent_dim == 6
    assert experiment.steps_per_epoch == 2  # the config's train.steps_per_epoch
    assert experiment.data.num_examples == 32
    before = [w.numpy().copy() for w in model.generator.trainable_weights]
    history = model.fit(
        experiment.dataset, steps_per_epoch=experiment.steps_per_epoch, epochs=2, verbose=0, shuffle=False
    )
    assert set(history.history) >= {"d_loss", "g_loss"} and len(history.history["g_loss"]) == 2
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.generator.trainable_weights))
    pictures = experiment.sampler().sample(3, seed=0, uint8=True)
    assert pictures.shape == (3, 8, 8, 1) and pictures.dtype == np.uint8


def test_build_takes_a_config_object_and_checks_overrides_like_the_yaml(toy_config):
    cfg = load_config(str(toy_config))
    assert tfgen.build(cfg, train={"learning_rate": 1e-3}).config.train.learning_rate == 1e-3
    with pytest.raises(
        ConfigError, match=r"train\.epohcs=3: unknown key train\.epohcs \(did you mean train\.epochs\?\)"
    ):
        tfgen.build(str(toy_config), train={"epohcs": 3})
    with pytest.raises(ConfigError, match=r"model\.latent_dim='big': model\.latent_dim: invalid value 'big'"):
        tfgen.build(str(toy_config), model={"latent_dim": "big"})
    with pytest.raises(ConfigError, match="expected a section as a dict"):
        tfgen.build(str(toy_config), epochs=3)
