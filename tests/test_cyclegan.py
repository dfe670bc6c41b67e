"""CycleGAN at toy size: networks, losses, image pool, two-domain data, training, translation."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import checkpoint_values, run_tool, toy_model
from PIL import Image

from tfgen import callbacks, train, training, translate
from tfgen.config import DataConfig, load_config
from tfgen.data import build_dataset
from tfgen.errors import ConfigError
from tfgen.layers import InstanceNormalization

REPO = Path(__file__).resolve().parents[1]
SIZE = dict(width=4, d_width=4, residual_blocks=1)


def domains(n=4, shape=(8, 8, 3)):
    """Two tiny synthetic domains: reddish noise (A) and bluish noise (B), with dummy labels."""
    a = tf.random.stateless_uniform((n, *shape), seed=(1, 0)) * [1.0, 0.2, 0.2] * 2 - 1
    b = tf.random.stateless_uniform((n, *shape), seed=(2, 0)) * [0.2, 0.2, 1.0] * 2 - 1
    labels = tf.zeros([n], tf.int64)
    return (a, labels), (b, labels)


def test_networks_follow_the_paper():
    model = toy_model("cyclegan", (16, 16, 3), **SIZE)
    names = [type(layer).__name__ for layer in model.generator_ab.layers]
    assert "BatchNormalization" not in names and "ReflectionPadding2D" in names
    assert sum(isinstance(layer, InstanceNormalization) for layer in model.generator_ab.layers) == 7  # 1 block
    (a, _), _ = domains(2, (16, 16, 3))
    out = model.translate(a, "a2b")
    assert out.shape == a.shape and float(tf.reduce_max(tf.abs(out))) <= 1.0
    patches = model.discriminator_a(a)
    assert patches.shape[1:] == (2, 2, 1)  # a map of patch logits, not one score
    assert model.default_blocks(256) == 9 and model.default_blocks(128) == 6


def test_cycle_loss_falls_and_every_network_trains():
    model = toy_model("cyclegan", (8, 8, 3), lr=2e-3, **SIZE)
    data = domains()
    (a, _), (b, _) = data

    def cycle():
        return float(tf.reduce_mean(tf.abs(model.translate(model.translate(a, "a2b"), "b2a") - a)))

    before = {
        name: [w.numpy().copy() for w in getattr(model, name).trainable_weights]
        for name in ("generator_ab", "generator_ba", "discriminator_a", "discriminator_b")
    }
    start = cycle()
    step = tf.function(model.train_step)
    for _ in range(30):
        logs = step(data)
    assert cycle() < 0.7 * start
    for name, weights in before.items():
        after = getattr(model, name).trainable_weights
        assert any(not np.allclose(w0, w.numpy()) for w0, w in zip(weights, after)), name
    assert set(logs) == {"d_a_loss", "d_b_loss", "g_ab_loss", "g_ba_loss", "cycle_loss", "identity_loss"}


def test_identity_term_is_zero_when_disabled():
    data = domains()
    assert float(toy_model("cyclegan", (8, 8, 3), identity_weight=0.0, **SIZE).train_step(data)["identity_loss"]) == 0.0
    assert float(toy_model("cyclegan", (8, 8, 3), **SIZE).train_step(data)["identity_loss"]) > 0.0


def test_image_pool_fills_then_mixes_new_and_old_fakes():
    model = toy_model("cyclegan", (8, 8, 3), pool_size=4, **SIZE)
    pool = model.pool_a

    def batch(value, n=2):
        return tf.fill([n, 8, 8, 3], float(value))

    out = pool.query(batch(1), tf.constant([0, 0], tf.int64))
    np.testing.assert_array_equal(out, batch(1))  # while filling: the new fakes themselves
    pool.query(batch(2), tf.constant([1, 0], tf.int64))
    assert int(pool.count.value) == 4
    returned = []
    for i in range(20):
        out = pool.query(batch(10 + i), tf.constant([2 + i, 0], tf.int64))
        returned += [float(image[0, 0, 0]) for image in out]
    new = [v for v in returned if v >= 10 and returned.index(v) // 2 == v - 10]
    assert 0.2 < len(new) / len(returned) < 0.8  # about half new
    assert any(v in (1.0, 2.0) for v in returned)  # and old ones come back
    assert int(pool.count.value) == 4


def test_keras_round_trip_and_export_signatures(tmp_path):
    from tfgen.export import export_saved_model

    model = toy_model("cyclegan", (8, 8, 3), **SIZE)
    model.train_step(domains())
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    (a, _), (b, _) = domains()
    np.testing.assert_allclose(loaded.translate(a, "a2b"), model.translate(a, "a2b"), atol=1e-5)
    np.testing.assert_allclose(loaded.translate(b, "b2a"), model.translate(b, "b2a"), atol=1e-5)
    export_saved_model(model, tmp_path / "saved", uint8=True)
    meta = json.loads((tmp_path / "saved" / "tfgen.json").read_text())
    assert set(meta["signatures"]) == {"a_to_b", "b_to_a", "a_to_b_uint8", "b_to_a_uint8"}
    assert meta["model"] == "cyclegan" and meta["image_shape"] == [8, 8, 3]
    # the signatures in plain TensorFlow (no tfgen process of its own: the reuse tool's test
    # below loads a run's SavedModel where tfgen is never imported)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    x = tf.ones((1, 8, 8, 3)) * 0.5
    out = loaded.signatures["b_to_a"](images=x)["output_0"].numpy()
    assert loaded.signatures["b_to_a_uint8"](images=x)["output_0"].dtype == tf.uint8
    np.testing.assert_allclose(out, model.translate(x, "b2a"), atol=1e-5)


def write_domain(folder, n, colour, size=(12, 10)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(n):
        pixels = (rng.uniform(0.3, 1.0, (size[1], size[0], 3)) * colour).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")


def two_domain_config(tmp_path, extra=""):
    write_domain(tmp_path / "a", 10, (255, 60, 60))
    write_domain(tmp_path / "b", 6, (60, 60, 255))
    path = tmp_path / "cg.yaml"
    path.write_text(
        "model: {name: cyclegan, width: 4, d_width: 4, residual_blocks: 1, pool_size: 4}\n"
        "data:\n  image_size: 8\n  channels: 3\n  batch_size: 2\n"
        f"  domain_a: {{source: folder, path: {tmp_path / 'a'}}}\n"
        f"  domain_b: {{source: folder, path: {tmp_path / 'b'}, fit: pad}}\n"
        "train: {epochs: 2, sample_every: 1, num_samples: 4, lr_schedule: linear_decay, "
        "jit_compile: false, distribute: none}\n"
        f"run_dir: {tmp_path / 'runs'}\n" + extra
    )
    return path


def test_two_domain_data_pairs_batches_and_an_epoch_is_the_larger_domain(tmp_path):
    cfg = load_config(str(two_domain_config(tmp_path)))
    assert cfg.data.domain_b.fit == "pad" and cfg.data.domain_a.image_size == 8
    data = build_dataset(cfg.data, domains=2)
    assert data.steps_per_epoch == 10 // 2 and data.image_shape == (8, 8, 3)
    pairs = list(data.stream(0).take(12).as_numpy_iterator())
    (a, _), (b, _) = pairs[0]
    assert a.shape == b.shape == (2, 8, 8, 3)
    assert a[..., 0].mean() > a[..., 2].mean() and b[..., 2].mean() > b[..., 0].mean()
    resumed = list(data.stream(7).take(2).as_numpy_iterator())  # B (3 steps a pass) wraps around
    for (got_a, got_b), (want_a, want_b) in zip(resumed, pairs[7:9]):
        np.testing.assert_array_equal(got_a[0], want_a[0])
        np.testing.assert_array_equal(got_b[0], want_b[0])


def test_two_domain_configs_are_checked(tmp_path):
    path = two_domain_config(tmp_path)
    with pytest.raises(ConfigError, match="data.domain_a.image_size.*valid keys"):
        load_config(str(path), ["data.domain_a.image_size=16"])
    with pytest.raises(ConfigError, match="set data.domain_a and data.domain_b"):
        build_dataset(DataConfig(source="digits"), domains=2)
    with pytest.raises(ConfigError, match="data.domain_a: only two-domain models"):
        build_dataset(load_config(str(path)).data)  # read as one domain, as a DCGAN would
    with pytest.raises(ConfigError, match="eval.every_epochs"):
        training.train(load_config(str(path), ["eval.every_epochs=1"]), tmp_path)


def test_linear_decay_holds_then_falls_to_zero_over_the_second_half():
    rates = callbacks.LearningRates({"g_optimizer": 1.0}, epochs=10, schedule="linear_decay")
    factors = [rates.factor(e) for e in range(10)]
    assert factors[:5] == [1.0] * 5
    assert all(later < earlier for earlier, later in zip(factors[4:], factors[5:]))
    assert 0 < factors[-1] < 0.2
    assert callbacks.LearningRates({}, 10).factor(9) == 1.0


@pytest.fixture(scope="module")
def trained_cyclegan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cyclegan")
    assert train.main(["--config", str(two_domain_config(tmp))]) == 0
    return tmp / "runs" / "cg"


def test_training_writes_translation_grids_and_both_signatures(trained_cyclegan):
    run = trained_cyclegan
    grid = np.asarray(Image.open(run / "samples" / "epoch_002.png"))
    assert grid.shape[0] > grid.shape[1] / 4 * 1.4  # six rows of four: A, A->B, A->B->A, B, ...
    assert (run / "progress.gif").is_file() and (run / "curves.png").is_file()
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "cycle_loss" in header and "identity_loss" in header and "sample_diversity" not in header
    meta = json.loads((run / "saved_model" / "tfgen.json").read_text())
    assert {"a_to_b", "b_to_a"} <= set(meta["signatures"])
    # linear_decay over 2 epochs: the second ran at half the configured 2e-4
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    rates = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if "_learning_rate" in k]
    np.testing.assert_allclose(rates, [1e-4, 1e-4], rtol=1e-5)


def test_translate_cli_on_a_folder_with_an_exif_rotated_jpeg_and_a_broken_file(trained_cyclegan, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    # a 40 x 20 landscape stored as 20 x 40 portrait with EXIF orientation 6 (rotate 90 CW to view)
    stored = np.zeros((40, 20, 3), np.uint8)
    stored[:, :10] = (255, 0, 0)  # left half red in storage -> top half red when viewed upright
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(photos / "rotated.jpg", exif=exif, quality=95)
    Image.new("RGB", (9, 9), (0, 200, 0)).save(photos / "square.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    code = translate.main(["--run", str(trained_cyclegan), "--input", str(photos), "--out", str(out), "--side-by-side"])
    assert code == 0
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and "skipped 1 of 3" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["rotated.png", "square.png"]
    pair = np.asarray(Image.open(out / "rotated.png"))
    assert pair.shape == (8, 16, 3)  # input | output at the model's size
    # upright: the viewed-upright top is red, the bottom black (centre crop of the 40x20 view)
    left = pair[:, :8].astype(int)
    assert left[0, :, 0].mean() > 150 and left[-1, :, 0].mean() < 60, left[..., 0]
    single = tmp_path / "single"
    assert (
        translate.main(
            [
                "--run",
                str(trained_cyclegan),
                "--input",
                str(photos / "square.png"),
                "--out",
                str(single),
                "--direction",
                "b2a",
            ]
        )
        == 0
    )
    assert np.asarray(Image.open(single / "square.png")).shape == (8, 8, 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "missing.jpg"], "missing.jpg does not exist"),
        (["--direction", "sideways"], "unknown direction 'sideways'"),
    ],
)
def test_translate_cli_errors_are_one_line(trained_cyclegan, tmp_path, capsys, args, message):
    (tmp_path / "x.png").write_bytes(b"")
    base = {"--input": str(tmp_path / "x.png"), "--out": str(tmp_path / "o"), "--direction": "a2b"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value if flag != "--input" else str(tmp_path / value)
    argv = ["--run", str(trained_cyclegan)] + [x for kv in base.items() for x in kv]
    assert translate.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_translate_cli_names_an_undecodable_single_file(trained_cyclegan, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    assert (
        translate.main(
            ["--run", str(trained_cyclegan), "--input", str(tmp_path / "bad.png"), "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert "bad.png" in capsys.readouterr().err


def test_reuse_translator_tool_runs_without_tfgen(trained_cyclegan, tmp_path):
    Image.new("RGB", (20, 12), (250, 80, 80)).save(tmp_path / "in.png")
    done = subprocess.run(
        [
            sys.executable,
            "tools/reuse_translator.py",
            "--run",
            str(trained_cyclegan),
            "--input",
            str(tmp_path / "in.png"),
            "--out",
            str(tmp_path / "pair.png"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "round-trip L1" in done.stdout
    assert np.asarray(Image.open(tmp_path / "pair.png")).shape == (8, 24, 3)


def test_generate_cli_points_a_translator_to_translate(trained_cyclegan, capsys):
    from tfgen import generate

    assert generate.main(["--run", str(trained_cyclegan), "--num", "2", "--out", "x.png"]) == 2
    assert "use tfgen translate" in capsys.readouterr().err


def test_translate_never_overwrites_and_keeps_clashing_names_apart(tmp_path):
    Image.new("RGB", (9, 9), (0, 200, 0)).save(tmp_path / "a.png")
    Image.new("RGB", (9, 9), (0, 0, 200)).save(tmp_path / "a.jpg")
    names = [str(name) for _, name in translate.input_files(tmp_path, tmp_path / "out")]
    assert sorted(names) == ["a.jpg.png", "a.png.png"]
    Image.new("RGB", (9, 9)).save(tmp_path / "b.png")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (9, 9)).save(tmp_path / "sub" / "c.png")
    with pytest.raises(ConfigError, match="would overwrite the input"):
        translate.input_files(tmp_path / "sub", tmp_path / "sub")


def test_domain_keys_round_trip_and_a_later_set_still_reaches_them(tmp_path):
    import yaml

    cfg = load_config(str(two_domain_config(tmp_path)))
    written = tmp_path / "written.yaml"
    written.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    assert load_config(str(written)).data == cfg.data
    assert set(cfg.to_dict()["data"]["domain_b"]) == {"source", "path", "fit"}
    again = load_config(str(written), ["data.cache=false"])
    assert again.data.domain_a.cache is False and again.data.domain_b.cache is False


def test_preview_tool_shows_both_domains(tmp_path):
    done = run_tool("preview_data.py", "--config", two_domain_config(tmp_path), "--out", tmp_path / "preview.png")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(A, 10 images)" in done.stdout and "(B, 6)" in done.stdout
    grid = np.asarray(Image.open(tmp_path / "preview.png")).astype(int)
    top, bottom = grid[: grid.shape[0] // 2], grid[grid.shape[0] // 2 :]
    assert top[..., 0].mean() > top[..., 2].mean() and bottom[..., 2].mean() > bottom[..., 0].mean()  # A red, B blue


def test_a_stopped_and_resumed_run_ends_like_an_uninterrupted_one(trained_cyclegan, tmp_path):
    """Both domains' stream positions and the pools of past fakes resume exactly (one device)."""
    path = trained_cyclegan.parent.parent / "cg.yaml"  # the uninterrupted run's config, and its images
    # (no SavedModel: a third of a toy CycleGAN's time, and not what this test is about)
    stop = [
        "--set",
        "name=split",
        "--set",
        f"run_dir={tmp_path / 'runs'}",
        "--set",
        "export.saved_model=false",
        "--max-minutes",
        "0.0001",
    ]
    assert train.main(["--config", str(path), *stop]) == 0
    split = tmp_path / "runs" / "split"
    stopped = int(tf.train.latest_checkpoint(str(split / "checkpoints")).rsplit("-", 1)[1])
    assert 0 < stopped < 10 and not (split / "model.keras").exists()
    assert train.main(["--config", str(split / "config.yaml"), "--resume"]) == 0

    want = checkpoint_values(trained_cyclegan / "checkpoints" / "ckpt-10")
    got = checkpoint_values(split / "checkpoints" / "ckpt-10")
    assert got.keys() == want.keys() and any("pool_a_images" in k for k in want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)
