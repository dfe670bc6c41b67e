import numpy as np

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
    rows = [{"epoch": str(e), "d_loss": "1.0", "g_loss": "0.5", "real_score": "0.6",
             "fake_score": "0.4", "sample_diversity": "0.3", "val_d_loss": "", "val_g_loss": "NA"} for e in range(3)]
    callbacks.plot_curves(rows, tmp_path / "curves.png")
    from PIL import Image

    width, height = Image.open(tmp_path / "curves.png").size
    assert width == 3 * 6 * 100 and height == 400  # three panels, 6x4 inches each at 100 dpi
