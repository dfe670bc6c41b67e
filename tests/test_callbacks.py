import numpy as np
import pytest
import tensorflow as tf
from helpers import digits, toy_model

from tfgen import callbacks


def test_sample_diversity_is_zero_for_copies_and_grows_with_spread():
    rng = np.random.default_rng(0)
    same = np.repeat(rng.uniform(-1, 1, (1, 8, 8, 1)), 16, axis=0)
    assert callbacks.sample_diversity(same) == 0.0
    narrow = rng.normal(0, 0.1, (16, 8, 8, 1))
    wide = rng.normal(0, 0.5, (16, 8, 8, 1))
    assert 0 < callbacks.sample_diversity(narrow) < callbacks.sample_diversity(wide)
    # two images at -1 and +1 everywhere are 2 apart per pixel
    assert callbacks.sample_diversity(np.stack([-np.ones((4, 4, 1)), np.ones((4, 4, 1))])) == 2.0


def test_curves_draw_losses_scores_and_diversity_panels(tmp_path):
    rows = [
        {
            "epoch": str(e),
            "d_loss": "1.0",
            "g_loss": "0.5",
            "real_score": "0.6",
            "fake_score": "0.4",
            "sample_diversity": "0.3",
            "val_d_loss": "",
            "val_g_loss": "NA",
        }
        for e in range(3)
    ]
    callbacks.plot_curves(rows, tmp_path / "curves.png")
    from PIL import Image

    width, height = Image.open(tmp_path / "curves.png").size
    assert width == 3 * 6 * 100 and height == 400  # three panels, 6x4 inches each at 100 dpi


def test_curves_are_redrawn_when_enough_time_has_passed_and_at_the_end(tmp_path, monkeypatch):
    """After an epoch curves.png is drawn if 10x its last drawing time has passed since the
    last drawing (0.3 s assumed before the first), and always at the end: short epochs do
    not spend their time drawing, and the last epoch is always in the picture."""
    now = [0.0]
    drawn = []  # rows in each drawing
    real_plot = callbacks.pictures.plot_curves

    def plot(rows, path):
        now[0] += 0.5  # each drawing takes 0.5 s
        drawn.append(len(rows))
        real_plot(rows, path)

    monkeypatch.setattr(callbacks.pictures, "plot_curves", plot)
    csv_path, png = tmp_path / "metrics.csv", tmp_path / "curves.png"
    curves = callbacks.Curves(csv_path, png, clock=lambda: now[0])

    def epoch_ends(epoch, at):
        now[0] = at
        csv_path.write_text("epoch,loss\n" + "".join(f"{e},{1 / (e + 1)}\n" for e in range(epoch + 1)))
        curves.on_epoch_end(epoch)

    curves.on_train_begin()
    epoch_ends(0, at=1.0)  # 1 s < 10 x 0.3 s
    assert drawn == [] and not png.exists()
    epoch_ends(1, at=3.5)
    assert drawn == [2] and png.is_file()
    epoch_ends(2, at=8.0)  # 4 s since the drawing ended, < 10 x its 0.5 s
    epoch_ends(3, at=8.5)
    assert drawn == [2]
    epoch_ends(4, at=14.0)
    assert drawn == [2, 5]
    epoch_ends(5, at=14.5)
    curves.on_train_end()
    assert drawn == [2, 5, 6]
    curves.flush()  # nothing new: no drawing
    assert drawn == [2, 5, 6]


def test_sample_grids_are_tensorboard_images_too(tmp_path):
    model = toy_model("dcgan", latent_dim=4, g_width=4, d_width=4)
    latent = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    grids = callbacks.SampleGrid(tmp_path, latent, every=1, last_epoch=2)
    model.fit(digits(limit=32), epochs=2, steps_per_epoch=1, callbacks=[grids], shuffle=False, verbose=0)

    events = [
        event
        for path in sorted((tmp_path / "logs" / "samples").glob("events.out.tfevents.*"))
        for event in tf.compat.v1.train.summary_iterator(str(path))
    ]
    pictures = {event.step: value for event in events for value in event.summary.value if value.tag == "samples"}
    assert sorted(pictures) == [0, 1]  # Keras' epoch index, as for the TensorBoard callback's scalars
    for step, value in pictures.items():
        width, height, png = tf.make_ndarray(value.tensor)
        on_disk = tf.io.decode_png((tmp_path / "samples" / f"epoch_{step + 1:03d}.png").read_bytes())
        assert (int(height), int(width)) == tuple(on_disk.shape[:2])
        np.testing.assert_array_equal(tf.io.decode_png(png), on_disk)


def test_every_model_asks_for_pictures_the_callbacks_know():
    from tfgen.callbacks import PICTURES
    from tfgen.models import get_model_class, registry

    for name in registry.MODELS:
        assert set(get_model_class(name).pictures) <= set(PICTURES), name
    assert get_model_class("conv_vae").pictures == ("samples", "reconstructions")
    assert get_model_class("vae_gan").pictures == ("samples", "reconstructions")
    assert get_model_class("dcgan").pictures == ("samples",)
    assert get_model_class("cyclegan").pictures == ("translations",)


def run_steps(guard, n, logs=None):
    for batch in range(n):
        guard.on_train_batch_end(batch, logs or {"d_loss": 0.5})


def test_guard_counts_global_steps_and_stops_on_request():
    guard = callbacks.Guard(steps_per_epoch=4, start_step=7)
    run_steps(guard, 2)
    assert guard.step == 9
    guard.request_stop("SIGTERM received")
    with pytest.raises(callbacks.Interrupted) as stop:
        run_steps(guard, 1)
    assert stop.value.step == 10 and stop.value.signalled and stop.value.reason == "SIGTERM received"


def test_guard_waits_for_the_epoch_end_before_stopping_after_an_epochs_last_step():
    """A stop after step 5 of 5 must let that epoch's row, grid and checkpoint be written."""
    guard = callbacks.Guard(steps_per_epoch=5, start_step=4)
    guard.request_stop("SIGINT received")
    run_steps(guard, 1)  # no raise: the epoch-end callbacks still have to run
    with pytest.raises(callbacks.Interrupted) as stop:
        guard.on_epoch_begin(1)
    assert stop.value.step == 5


def test_guard_names_the_epoch_and_step_of_a_nan():
    guard = callbacks.Guard(steps_per_epoch=5, start_step=6)
    with pytest.raises(callbacks.NonFiniteLoss, match="g_loss = nan at epoch 2, step 2"):
        run_steps(guard, 1, {"d_loss": 0.1, "g_loss": float("nan")})


def test_guard_follows_the_workers_agreement():
    """Under several workers the all-reduced flags decide: a deadline or a signal on another
    worker stops this one too, at the same step, with the reason and the exit kind shared."""
    seen = []

    def agree(flags, verdict=(False, False)):
        seen.append(list(flags))
        return list(verdict)

    guard = callbacks.Guard(steps_per_epoch=10, agree=agree)
    run_steps(guard, 2)
    guard.request_stop("SIGTERM received")  # agreed: nobody stops
    run_steps(guard, 1)
    assert seen == [[False, False], [False, False], [False, True]]
    guard = callbacks.Guard(steps_per_epoch=10, agree=lambda flags: [True, False])
    with pytest.raises(callbacks.Interrupted, match="deadline passed on another worker") as stop:
        run_steps(guard, 1)
    assert not stop.value.signalled
    guard = callbacks.Guard(steps_per_epoch=10, agree=lambda flags: [False, True])
    with pytest.raises(callbacks.Interrupted, match="another worker received a signal") as stop:
        run_steps(guard, 1)
    assert stop.value.signalled


@pytest.mark.parametrize(
    "name, kwargs, sampled",
    [
        ("dcgan", dict(latent_dim=4, g_width=4, d_width=4), [1, 2, 3, 4]),  # one pass: every epoch
        ("ddpm", dict(width=8, levels=2, block_depth=1, sampling_steps=3), [1, 3, 4]),  # the grids' epochs only
    ],
)
def test_a_many_step_sampler_draws_the_fixed_batch_only_for_the_grids(tmp_path, name, kwargs, sampled):
    model = toy_model(name, **kwargs)
    latent = model.sample_noise(4, np.random.default_rng(0))
    grids = callbacks.SampleGrid(tmp_path, latent, every=3, last_epoch=4)
    grids.set_model(model)
    calls = []
    generate = model.generate
    model.generate = lambda *args, **kw: calls.append(grids.epoch) or generate(*args, **kw)
    diversity = {}
    for epoch in range(4):
        grids.epoch, logs = epoch + 1, {}
        grids.on_epoch_end(epoch, logs)
        diversity[epoch + 1] = logs["sample_diversity"]
    assert calls == sampled
    assert all(np.isfinite(diversity[e]) == (e in sampled) for e in diversity)
    assert sorted(p.name for p in (tmp_path / "samples").glob("epoch_*.png")) == [
        "epoch_001.png",
        "epoch_003.png",
        "epoch_004.png",
    ]
