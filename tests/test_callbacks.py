import numpy as np
import tensorflow as tf

from tfgen import callbacks

from helpers import digits, toy_model


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
    rows = [{"epoch": str(e), "d_loss": "1.0", "g_loss": "0.5", "real_score": "0.6",
             "fake_score": "0.4", "sample_diversity": "0.3", "val_d_loss": "", "val_g_loss": "NA"} for e in range(3)]
    callbacks.plot_curves(rows, tmp_path / "curves.png")
    from PIL import Image

    width, height = Image.open(tmp_path / "curves.png").size
    assert width == 3 * 6 * 100 and height == 400  # three panels, 6x4 inches each at 100 dpi


def test_sample_grids_are_tensorboard_images_too(tmp_path):
    model = toy_model("dcgan", latent_dim=4, g_width=4, d_width=4)
    latent = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    grids = callbacks.SampleGrid(tmp_path, latent, every=1, last_epoch=2)
    model.fit(digits(limit=32), epochs=2, steps_per_epoch=1, callbacks=[grids], shuffle=False, verbose=0)

    events = [event for path in sorted((tmp_path / "logs" / "samples").glob("events.out.tfevents.*"))
              for event in tf.compat.v1.train.summary_iterator(str(path))]
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
    assert get_model_class("conv_vae").pictures == ("reconstructions",)
    assert get_model_class("vae_gan").pictures == ("reconstructions",)
    assert get_model_class("dcgan").pictures == ()
