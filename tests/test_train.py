import csv

import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image

from tfgen import experiment, train, training
from tfgen.config import load_config, shipped_configs
from tfgen.runs import prepare_run_dir


def run_cli(config, *extra):
    return train.main(["--config", str(config), "--set", "train.jit_compile=false", *extra])


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_cli_writes_every_artefact(toy_run):
    run = toy_run  # the toy config trained by run_cli's command line (conftest)
    toy_config = run.parent.parent / "toy.yaml"
    # the resolved config alone reproduces the run
    resolved = load_config(str(run / "config.yaml"))
    # (auto kernel gradients resolve to TensorFlow's: the toy's layers are too thin for products)
    expected = load_config(str(toy_config), ["train.jit_compile=false", "train.conv_kernel_grad=native"])
    assert resolved.to_dict() == expected.to_dict()
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"d_loss", "g_loss", "real_score", "fake_score", "sample_diversity"} <= set(rows[0])
    assert float(rows[0]["sample_diversity"]) > 0
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["epoch_001.png", "epoch_002.png"]
    grid = Image.open(run / "samples" / "epoch_002.png")
    assert grid.size[0] >= 512  # small images are enlarged to be legible
    gif = Image.open(run / "progress.gif")
    assert gif.n_frames == 2
    assert Image.open(run / "curves.png").size[0] > 0
    assert (run / "checkpoints" / "checkpoint").is_file()
    assert list((run / "checkpoints").glob("ckpt-4.index"))  # numbered by step: 2 epochs x 2 steps
    assert list((run / "logs").rglob("events.out.tfevents.*"))
    assert (run / "model.keras").is_file()
    assert (run / "saved_model" / "saved_model.pb").is_file()
    assert yaml.safe_load((run / "saved_model" / "tfgen.json").read_text())["latent_dim"] == 4


def test_existing_run_is_not_overwritten_silently(toy_config, toy_run_copy, tmp_path, capsys):
    before = (tmp_path / "runs" / "toy" / "metrics.csv").read_text()
    assert run_cli(toy_config) == 2
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "runs" / "toy" / "metrics.csv").read_text() == before
    assert run_cli(toy_config, "--overwrite") == 0


def test_resume_continues_counters_and_files(toy_config, toy_run_copy, tmp_path):
    run = tmp_path / "runs" / "toy"
    latent = np.load(run / "samples" / "latent.npy")
    assert run_cli(toy_config, "--resume", "--set", "train.epochs=3") == 0
    assert [r["epoch"] for r in read_metrics(run)] == ["0", "1", "2"]
    assert (run / "samples" / "epoch_003.png").is_file()
    np.testing.assert_array_equal(np.load(run / "samples" / "latent.npy"), latent)
    assert load_config(str(run / "config.yaml")).train.epochs == 3
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / "ckpt-6"))
    names = reader.get_variable_to_shape_map()
    # 3 epochs x 2 steps: both optimizers carried their iteration counts across the resume
    iterations = [reader.get_tensor(n) for n in names if n.endswith("_iterations/.ATTRIBUTES/VARIABLE_VALUE")]
    assert sorted(int(i) for i in iterations) == [6, 6]
    assert int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == 6


def test_resume_without_checkpoints_is_an_error(toy_config, capsys):
    assert run_cli(toy_config, "--resume") == 2
    assert "no checkpoints" in capsys.readouterr().err


def test_missing_folder_fails_before_any_model_is_built(toy_config, tmp_path, capsys, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be built")

    monkeypatch.setattr(experiment, "build_model", no_model)
    code = run_cli(toy_config, "--set", "data.source=folder", "--set", f"data.path={tmp_path / 'nope'}")
    assert code == 2
    err = capsys.readouterr().err
    assert "data.path" in err and "does not exist" in err


def test_model_argument_errors_are_config_errors(toy_config, capsys):
    assert run_cli(toy_config, "--set", "data.image_size=12") == 2
    assert "image_size 12" in capsys.readouterr().err


def test_a_failed_start_leaves_the_run_folder_as_it_was(toy_config, toy_run_copy, tmp_path, capsys):
    run = tmp_path / "runs" / "toy"
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    # --overwrite with a model value the model refuses: the old run is kept, byte for byte
    assert run_cli(toy_config, "--overwrite", "--set", "model.latent_dim=0") == 2
    assert "latent_dim" in capsys.readouterr().err
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # --resume with an override that fails: the recorded config is not rewritten
    assert (
        run_cli(toy_config, "--resume", "--set", "data.source=folder", "--set", f"data.path={tmp_path / 'nope'}") == 2
    )
    assert (run / "config.yaml").read_bytes() == before[__import__("pathlib").Path("config.yaml")]
    # a new name whose data is missing: no folder is left behind to block the corrected run
    assert (
        run_cli(
            toy_config, "--set", "name=fresh", "--set", "data.source=folder", "--set", f"data.path={tmp_path / 'nope'}"
        )
        == 2
    )
    assert not (tmp_path / "runs" / "fresh").exists()
    assert run_cli(toy_config, "--set", "name=fresh") == 0


def test_xla_step_on_one_device(toy_config, tmp_path):
    code = train.main(["--config", str(toy_config), "--set", "train.jit_compile=true", "--set", "train.epochs=1"])
    assert code == 0
    assert np.isfinite(float(read_metrics(tmp_path / "runs" / "toy")[0]["d_loss"]))


TOY_RUN = [
    "--set",
    "data.image_size=8",
    "--set",
    "data.limit=64",
    "--set",
    "data.batch_size=8",
    "--set",
    "train.epochs=1",
    "--set",
    "train.steps_per_epoch=2",
    "--set",
    "train.jit_compile=false",
    "--set",
    "train.mixed_precision=none",
    "--set",
    "train.conv_kernel_grad=native",  # not what these tests are about: no timing of candidates
]
# diffusion and flow matching at toy size: a narrow U-Net and two sampling steps (their
# 25-step sampling loops, traced for the pictures and the export, took a minute a config)
# (no SavedModel: a third of a toy U-Net run's time, tracing the sampler; test_contract exports
# every model, test_diffusion the shipped conditional config's, bit for bit)
TOY_DENOISER = [
    *("--set", "model.width=8", "--set", "model.levels=2", "--set", "model.block_depth=1"),
    *("--set", "model.sampling_steps=2", "--set", "export.saved_model=false"),
]
# trained at toy size by `tfgen train` in another module, which then uses the run
TRAINED_ELSEWHERE = {"mnist5k_cond_ddpm.yaml": "tests/test_diffusion.py"}
# the 8 px digits twins of mnist5k configs of the same model, which train below: these are
# built (data and model, every value checked), not trained again
BUILT_ONLY = {
    "digits_dcgan.yaml": "mnist5k_dcgan.yaml",
    "digits_cond_gan.yaml": "mnist5k_cond_gan.yaml",
    "digits_vae_gan.yaml": "mnist5k_vae_gan.yaml",
}
OFFLINE_CONFIGS = [
    name
    for name in shipped_configs()
    if name.startswith(("digits_", "mnist5k_")) and name not in TRAINED_ELSEWHERE and name not in BUILT_ONLY
]


@pytest.fixture(scope="module")
def toy_size_run(tmp_path_factory):
    """`toy_size_run(config)`: the run dir of a shipped config trained with TOY_RUN, trained
    once in this module however many tests look at it."""
    runs = {}

    def run(config):
        if config not in runs:
            root = tmp_path_factory.mktemp("toy_size")
            extra = TOY_DENOISER if is_denoiser(config) else []
            assert train.main(["--config", config, "--set", f"run_dir={root}", *TOY_RUN, *extra]) == 0
            runs[config] = root / config[: -len(".yaml")]
        return runs[config]

    return run


def is_denoiser(config):
    return "ddpm" in config or "flow_matching" in config


@pytest.mark.parametrize("config", OFFLINE_CONFIGS)
def test_every_offline_config_trains_at_toy_size(config, toy_size_run):
    run = toy_size_run(config)
    assert (run / "samples" / "epoch_001.png").is_file() and (run / "model.keras").is_file()
    assert (run / "saved_model").is_dir() != is_denoiser(config)


@pytest.mark.parametrize("config", sorted(BUILT_ONLY))
def test_the_digits_twins_build_as_configured(config):
    twin = load_config(BUILT_ONLY[config])
    cfg = load_config(config, TOY_RUN[1::2])
    assert cfg.model.name == twin.model.name and BUILT_ONLY[config] in OFFLINE_CONFIGS
    model, data, cfg = experiment.prepare(cfg, tf.distribute.get_strategy())
    assert data.image_shape == (8, 8, 1) and model.image_shape == (8, 8, 1)
    assert model.optimizer_names and all(v.shape.rank is not None for v in model.trainable_variables)


def test_vae_run_writes_every_picture(toy_size_run):
    run = toy_size_run("digits_conv_vae.yaml")
    for name in (
        "reconstructions.png",
        "interpolation.png",
        "interpolation.gif",
        "manifold.png",
        "latent_scatter.png",
        "curves.png",
        "progress.gif",
    ):
        assert (run / name).is_file(), name
    assert Image.open(run / "interpolation.gif").n_frames > 1  # (PIL merges identical frames)
    rows = read_metrics(run)
    assert {"loss", "reconstruction", "kl"} <= set(rows[0])


def test_conditional_grid_has_one_row_per_class(toy_size_run):
    run = toy_size_run("digits_cond_vae.yaml")
    assert load_config(str(run / "config.yaml")).train.num_samples == 80
    grid = np.asarray(Image.open(run / "samples" / "epoch_001.png"))
    # 80 samples: 10 rows (one per class) x 8 columns of 8 px images with 2 px padding, enlarged by an integer factor
    assert grid.shape[0] / grid.shape[1] == pytest.approx((10 * 10 + 2) / (8 * 10 + 2))


@pytest.mark.parametrize(
    "config, policy",
    [
        ("digits_dcgan.yaml", "mixed_float16"),
        ("digits_vae_gan.yaml", "mixed_bfloat16"),
        ("digits_conv_vae.yaml", "mixed_float16"),
    ],
)
def test_mixed_precision_trains_with_float32_outputs(config, policy, tmp_path):
    import keras

    try:
        cfg = load_config(
            config,
            [
                f"run_dir={tmp_path}",
                f"train.mixed_precision={policy}",
                "data.image_size=8",
                "data.limit=64",
                "data.batch_size=8",
                "train.epochs=1",
                "train.steps_per_epoch=2",
                "train.jit_compile=false",
            ],
        )
        model, _, stop = training.train(cfg, prepare_run_dir(cfg, resume=False, overwrite=False))
        assert stop is None
        assert keras.mixed_precision.global_policy().name == policy
        if policy == "mixed_float16":
            assert all(
                isinstance(getattr(model, n), keras.optimizers.LossScaleOptimizer) for n in model.optimizer_names
            )
        assert any(v.dtype == "float32" for v in model.trainable_variables)  # variables stay float32
        images = model.generate(tf.random.normal((2, model.latent_dim)))
        assert images.dtype == tf.float32 and np.all(np.isfinite(images.numpy()))
        rows = read_metrics(tmp_path / cfg.name)
        assert all(np.isfinite(float(v)) for k, v in rows[-1].items() if k != "epoch" and v not in ("", "NA"))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_resume_refuses_a_change_of_loss_scaling_or_of_the_scored_metrics(toy_config, toy_run_copy, tmp_path, capsys):
    run = tmp_path / "runs" / "toy"
    before = (run / "metrics.csv").read_text()
    assert run_cli(toy_config, "--resume", "--set", "train.mixed_precision=mixed_float16") == 2
    assert "train.mixed_precision" in capsys.readouterr().err
    assert run_cli(toy_config, "--resume", "--set", "eval.every_epochs=1") == 2
    assert "metrics.csv's columns" in capsys.readouterr().err
    assert (run / "metrics.csv").read_text() == before
    # bfloat16 <-> float32 keeps the optimizer's variables: allowed
    import keras

    try:
        assert (
            run_cli(toy_config, "--resume", "--set", "train.mixed_precision=mixed_bfloat16", "--set", "train.epochs=3")
            == 0
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_resume_refuses_a_change_of_model_shape(toy_config, toy_run_copy, tmp_path, capsys):
    assert run_cli(toy_config, "--resume", "--set", "model.latent_dim=8") == 2
    err = capsys.readouterr().err
    assert "model.latent_dim was 4" in err and "cannot become 8" in err
    assert (tmp_path / "runs" / "toy" / "checkpoints" / "checkpoint").is_file()  # the run is untouched
