"""Diffusion (`ddpm`, `cond_ddpm`) and flow matching (`flow_matching`, `cond_flow_matching`):
the schedule, the prediction targets, the samplers and their options, and that a short fit
learns. The contract (fit moves the U-Net, save/reload, export) is tests/test_contract.py's."""

import asyncio
import io
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import checkpoint_values, run_tool, toy_model
from PIL import Image

from tfgen import evaluate, generate, images, serve, store, train
from tfgen.export import export_run, export_saved_model
from tfgen.models import ddpm, flow_matching
from tfgen.models.unet import build_unet
from tfgen.sampling import Sampler

TOY = dict(width=8, levels=2, block_depth=1, sampling_steps=4)
SHAPE = (8, 8, 1)


def sampling_model(name, **kwargs):
    """A toy model whose U-Net predicts something (the output convolution starts at zero)."""
    model = toy_model(name, SHAPE, **{**TOY, **kwargs})
    network = model.ema_unet if model.ema_decay else model.unet
    out = network.layers[-1]
    out.kernel.assign(np.random.default_rng(0).normal(0, 0.3, out.kernel.shape).astype(np.float32))
    return model


def noise(n=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)


def test_the_cosine_schedule():
    t = np.linspace(0, 1, 11, dtype=np.float32)
    alpha_bar = ddpm.cosine_alpha_bar(t).numpy()
    s = ddpm.COSINE_OFFSET
    expected = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    np.testing.assert_allclose(alpha_bar[:-1], expected[:-1], rtol=1e-5)
    assert alpha_bar[0] == pytest.approx(1.0) and alpha_bar[-1] == pytest.approx(ddpm.MIN_ALPHA_BAR)
    assert alpha_bar[5] == pytest.approx(0.4939, abs=1e-3)  # Nichol & Dhariwal's curve at the midpoint
    assert np.all(np.diff(alpha_bar) < 0)
    alpha, sigma = (v.numpy() for v in ddpm.signal_and_noise(t))
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, rtol=1e-6)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_a_perfect_prediction_of_either_kind_gives_back_image_and_noise(prediction):
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (3, *SHAPE)).astype(np.float32)
    eps = rng.standard_normal((3, *SHAPE)).astype(np.float32)
    alpha, sigma = ddpm.signal_and_noise(tf.reshape([0.1, 0.5, 0.9], [-1, 1, 1, 1]))
    noisy = alpha * images + sigma * eps
    target = ddpm.target(images, eps, alpha, sigma, prediction)
    x0, recovered_eps = ddpm.to_images_and_noise(target, noisy, alpha, sigma, prediction)
    np.testing.assert_allclose(x0, images, atol=1e-4)
    np.testing.assert_allclose(recovered_eps, eps, atol=1e-4)
    # the model's own corruption uses the same forward process and target
    model = toy_model("ddpm", SHAPE, prediction=prediction, **TOY)
    got_noisy, got_target = model.corrupt(images, eps, tf.constant([0.1, 0.5, 0.9]))
    np.testing.assert_allclose(got_noisy, noisy, atol=1e-6)
    np.testing.assert_allclose(got_target, target, atol=1e-6)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_the_same_noise_gives_the_same_image_wherever_it_is_in_the_batch(sampler):
    model = sampling_model("ddpm", sampler=sampler)
    z = noise(4)
    first = model.generate(z).numpy()
    np.testing.assert_array_equal(model.generate(z).numpy(), first)
    # in a smaller batch (the studio regenerates one image): the same image, up to the float
    # rounding a different batch size brings; the ancestral sampler's noise follows the example
    np.testing.assert_allclose(model.generate(z[2:]).numpy(), first[2:], atol=1e-5)
    assert np.abs(first[0] - first[1]).max() > 1e-3


def test_sampling_options_change_the_images_and_bad_ones_are_named():
    model = sampling_model("ddpm")
    assert model.sampling_options == {"steps": 4, "sampler": "ddim"}
    z = noise(2)
    four, ten = model.generate(z).numpy(), model.generate(z, steps=10).numpy()
    ancestral = model.generate(z, sampler="ddpm").numpy()
    assert np.abs(four - ten).max() > 1e-3 and np.abs(four - ancestral).max() > 1e-3
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        model.generate(z, steps=0)
    with pytest.raises(ValueError, match="sampler must be one of ddim, ddpm, got 'euler'"):
        model.generate(z, sampler="euler")


@pytest.mark.parametrize("name", ["cond_ddpm", "cond_flow_matching"])
def test_guidance_changes_conditional_samples(name):
    model = sampling_model(name, guidance=0.0)
    assert model.sampling_options["guidance"] == 0.0
    z, labels = noise(2), np.array([1, 2], np.int32)
    plain, guided = model.generate(z, labels).numpy(), model.generate(z, labels, guidance=3.0).numpy()
    assert np.abs(plain - guided).max() > 1e-3
    other_class = model.generate(z, np.array([3, 4], np.int32)).numpy()
    assert np.abs(plain - other_class).max() > 1e-3


def test_euler_and_heun_on_known_fields():
    x = tf.constant([[2.0, -1.0]])
    # a constant field is integrated exactly in any number of steps
    for integrate in (flow_matching.euler, flow_matching.heun):
        np.testing.assert_allclose(integrate(lambda x, t: tf.ones_like(x) * 3.0, x, 7), x - 3.0, atol=1e-5)
    # dx/dt = x from t = 1 to 0: x(0) = x(1) / e; Euler takes (1 - h)^N, Heun (1 - h + h^2 / 2)^N
    n = 10
    h = 1.0 / n
    np.testing.assert_allclose(flow_matching.euler(lambda x, t: x, x, n), x * (1 - h) ** n, rtol=1e-5)
    np.testing.assert_allclose(flow_matching.heun(lambda x, t: x, x, n), x * (1 - h + h * h / 2) ** n, rtol=1e-5)
    # dx/dt = t: x(0) = x(1) - 1/2; Euler's left sums overshoot by h / 2, Heun's trapezoids are exact
    time_field = lambda x, t: tf.ones_like(x) * t  # noqa: E731
    np.testing.assert_allclose(flow_matching.euler(time_field, x, n), x - (0.5 + h / 2), atol=1e-5)
    np.testing.assert_allclose(flow_matching.heun(time_field, x, n), x - 0.5, atol=1e-5)


def test_flow_matching_samples_follow_its_velocity_network():
    """generate() is Euler (or Heun) on the EMA network's velocity at the declared times."""
    model = sampling_model("flow_matching", sampling_steps=3)
    z = noise(2)
    x = tf.constant(z)
    for i in range(3):
        t = 1.0 - i / 3
        x = x - (1 / 3) * model.ema_unet([x, tf.fill([2], t)])
    np.testing.assert_allclose(
        model.generate(z).numpy(), np.clip(x.numpy(), -1, 1), atol=1e-3
    )  # graph vs eager float32 rounding
    corrupted, velocity = model.corrupt(tf.ones((1, *SHAPE)), tf.zeros((1, *SHAPE)), tf.constant([0.25]))
    np.testing.assert_allclose(corrupted, 0.75)
    np.testing.assert_allclose(velocity, -1.0)


@pytest.mark.parametrize("name", ["ddpm", "flow_matching"])
def test_a_short_fit_lowers_the_denoising_loss(name):
    rng = np.random.default_rng(0)
    pattern = np.where(np.add.outer(np.arange(8), np.arange(8)) % 4 < 2, 0.8, -0.8).reshape(SHAPE)
    images = np.repeat(pattern[None], 64, 0).astype(np.float32)
    model = toy_model(name, SHAPE, lr=3e-3, ema_decay=0.0, **{k: v for k, v in TOY.items() if k != "sampling_steps"})
    eps = rng.standard_normal(images.shape).astype(np.float32)
    t = tf.constant(rng.uniform(0.05, 0.95, 64), tf.float32)

    def loss():
        noisy, target = model.corrupt(images, eps, t)
        return float(tf.reduce_mean(tf.square(model.unet([noisy, t]) - target)))

    before = loss()
    weights = [v.numpy().copy() for v in model.unet.trainable_variables]
    history = model.fit(tf.data.Dataset.from_tensor_slices(images).batch(16), epochs=8, verbose=0).history
    assert loss() < 0.7 * before, (before, loss())
    assert history["loss"][-1] < history["loss"][0]
    assert all(not np.array_equal(w, v.numpy()) for w, v in zip(weights, model.unet.trainable_variables))


def test_the_ema_unet_follows_the_trained_one():
    model = toy_model("ddpm", SHAPE, ema_decay=0.9, **TOY)
    before = [v.numpy().copy() for v in model.ema_unet.weights]
    model.fit(tf.data.Dataset.from_tensor_slices(noise(8)).batch(4), epochs=1, verbose=0)
    moved = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.ema_unet.weights)]
    assert sum(moved) > len(moved) // 2
    assert any(not np.array_equal(e.numpy(), w.numpy()) for e, w in zip(model.ema_unet.weights, model.unet.weights))
    assert model.export_networks == ("ema_unet",)


def test_the_saved_model_gives_the_same_image_bit_for_bit(tmp_path):
    model = sampling_model("cond_ddpm")
    z, labels = noise(3), np.array([0, 5, 9], np.int32)
    signature = tf.saved_model.load(str(export_saved_model(model, tmp_path / "saved_model"))).signatures["generate"]
    (got,) = signature(z=tf.constant(z), label=tf.constant(labels)).values()
    np.testing.assert_array_equal(got.numpy(), model.generate(z, labels).numpy())


def test_the_unet_takes_28_px_without_padding_and_checks_its_levels():
    unet = build_unet((28, 28, 1), width=8, levels=3, block_depth=1, attention=True)
    sizes = {layer.output.shape[1] for layer in unet.layers if type(layer).__name__ == "Conv2D"}
    assert sizes == {28, 14, 7}
    assert unet([tf.zeros((2, 28, 28, 1)), tf.zeros((2,))]).shape == (2, 28, 28, 1)
    with pytest.raises(ValueError, match="levels 4 halves the image 3 times, but image_size 28 is not divisible by 8"):
        build_unet((28, 28, 1), levels=4)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(unet)).count_params() == (
        unet.count_params()
    )


# -- a run of the shipped config, end to end ------------------------------------------------

TOY_RUN = [
    *("--set", "data.image_size=8", "--set", "data.limit=64", "--set", "data.batch_size=8"),
    *("--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set", "train.jit_compile=false"),
    *("--set", "train.mixed_precision=none", "--set", "train.conv_kernel_grad=native"),
    *("--set", "model.width=8", "--set", "model.levels=2", "--set", "model.block_depth=1"),
    *("--set", "model.sampling_steps=3"),
]


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    """mnist5k_cond_ddpm.yaml trained by `tfgen train` at toy size (8 px, 2 steps)."""
    root = tmp_path_factory.mktemp("cond_ddpm")
    assert train.main(["--config", "mnist5k_cond_ddpm.yaml", "--set", f"run_dir={root}", *TOY_RUN]) == 0
    return root / "mnist5k_cond_ddpm"


def test_a_fixed_noise_is_the_same_image_in_python_the_saved_model_and_the_studio(cond_run, tmp_path):
    sampler = Sampler.from_run(cond_run)
    z, labels = sampler.noise(np.random.default_rng(7), 3), np.array([2, 5, 9], np.int32)
    ours = images.to_uint8(sampler.images(z, labels))
    exported = export_run(cond_run, uint8=True, out=tmp_path / "export")
    signature = tf.saved_model.load(str(exported)).signatures["generate_uint8"]
    (pixels,) = signature(z=tf.constant(z), label=tf.constant(labels)).values()
    np.testing.assert_array_equal(pixels.numpy(), ours)

    # the studio keeps what it drew (in a batch of draws), then regenerates it from the stored noise alone
    studio = serve.build_studio(
        serve.parse_args(["--theme", f"d={cond_run}", "--min-distance", "0", "--db", str(tmp_path / "a.db")])
    )
    theme_id = next(t for t, theme in studio.themes.items() if theme.label == 5)

    async def keep_then_download():
        candidate = await studio.generate(theme_id, "owner")
        avatar = await studio.owned_avatar(await studio.keep(candidate.id, "owner"), "owner")
        studio.sources["d"].pictures.clear()  # no cached picture: the download regenerates it
        return candidate, avatar, await studio.avatar_png(avatar)

    candidate, avatar, png = asyncio.run(keep_then_download())
    downloaded = np.asarray(Image.open(io.BytesIO(png)))
    kept_z = np.reshape(avatar["z"], (1, *sampler.noise_shape))
    by_python = images.to_uint8(sampler.images(kept_z, np.array([5], np.int32)))[0]
    np.testing.assert_array_equal(downloaded.reshape(by_python.shape), by_python)
    np.testing.assert_array_equal(images.to_uint8(candidate.picture), by_python)


def test_evaluate_and_the_steps_tool_take_the_number_of_sampling_steps(cond_run, capsys):
    assert evaluate.main(["--run", str(cond_run), "--metric", "fid", "--num", "20", "--option", "steps=2"]) == 0
    assert json.loads((cond_run / "eval.json").read_text())["sampling_options"] == {"steps": 2}
    capsys.readouterr()
    result = run_tool("sampling_steps.py", "--run", cond_run, "--steps", 1, 4, "--num", 20)
    assert result.returncode == 0, result.stderr
    rows = json.loads((cond_run / "sampling_steps.json").read_text())["results"]
    assert [r["steps"] for r in rows] == [1, 4] and all(r["images_per_s"] > 0 and r["fid"] >= 0 for r in rows)
    assert json.loads((cond_run / "eval.json").read_text())["sampling_options"] == {"steps": 2}  # left alone
    strip = np.asarray(Image.open(cond_run / "sampling_steps.png"))
    assert strip.shape[0] < strip.shape[1]  # two rows of ten


def test_a_stopped_and_resumed_run_ends_like_the_uninterrupted_one(cond_run, tmp_path):
    """Diffusion draws its noise levels, noise and dropped labels inside `train_step` from the
    model's seed state: stopped after its first step and resumed, the run ends bit for bit as
    `cond_run` (the same config, uninterrupted)."""
    split = [*TOY_RUN, "--set", f"run_dir={tmp_path}", "--set", "name=split", "--set", "export.saved_model=false"]
    assert train.main(["--config", "mnist5k_cond_ddpm.yaml", *split, "--max-minutes", "0.0001"]) == 0
    run = tmp_path / "split"
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-1")
    assert not (run / "model.keras").exists()
    assert train.main(["--config", str(run / "config.yaml"), "--resume"]) == 0
    want = checkpoint_values(cond_run / "checkpoints" / "ckpt-2")
    got = checkpoint_values(run / "checkpoints" / "ckpt-2")
    assert got.keys() == want.keys()  # weights, EMA, optimizer moments, the seed state, the step
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_generate_unique_issues_avatars_the_store_can_regenerate(cond_run, tmp_path, capsys):
    """`tfgen generate --unique` on a conditional diffusion run: the store keeps each avatar's
    noise in the model's noise shape (flattened) and its label, and that alone gives back the
    written image."""
    out, db = tmp_path / "avatars", tmp_path / "avatars.db"
    args = ["--run", str(cond_run), "--unique", "--num", "2", "--label", "3", "--features", "pixels"]
    args += ["--min-distance", "1e-5", "--individual", "--out", str(out), "--seed", "4", "--db", str(db)]
    assert generate.main(args) == 0
    assert "2 issued in all" in capsys.readouterr().out
    rows = store.Store(db).export(cond_run.name)
    sampler = Sampler.from_run(cond_run)
    assert rows["z"].shape == (2, int(np.prod(sampler.noise_shape))) and rows["labels"].tolist() == [3, 3]
    again = images.to_uint8(sampler.images(rows["z"].reshape(2, *sampler.noise_shape), rows["labels"]))
    for avatar, pixels in zip(rows["ids"], again):
        written = np.asarray(Image.open(out / f"{avatar}.png"))
        np.testing.assert_array_equal(written.reshape(pixels.shape), pixels)
