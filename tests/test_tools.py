from helpers import run_tool
from PIL import Image


def test_preview_data_writes_a_grid_of_the_first_batch(tmp_path):
    out = tmp_path / "preview.png"
    result = run_tool("preview_data.py", "--config", "digits_dcgan.yaml", "--set", "data.batch_size=16", "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1797 of 16x16x1" in result.stdout
    assert "0, 1, 2" in result.stdout
    grid = Image.open(out)
    assert grid.mode == "L" and grid.size[0] >= 512


def test_preview_data_reports_a_bad_folder_in_one_line(tmp_path):
    result = run_tool(
        "preview_data.py",
        "--config",
        "digits_dcgan.yaml",
        "--set",
        "data.source=folder",
        "--set",
        f"data.path={tmp_path / 'missing'}",
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def _fake_run(run, epochs, image_size=8, channels=3):
    """A run folder as training leaves it: config.yaml and one 16-cell grid per epoch, every
    cell of epoch e filled with the value e * 10 + its index."""
    import numpy as np
    import yaml

    from tfgen import images

    (run / "samples").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"image_size": image_size}}))
    for epoch in epochs:
        cells = np.stack([np.full((image_size, image_size, channels), epoch * 10 + i, np.uint8) for i in range(16)])
        images.save_png(run / "samples" / f"epoch_{epoch:03d}.png", images.make_grid(cells))


def test_epoch_strip_stacks_the_first_grid_rows_of_each_chosen_epoch(tmp_path):
    import numpy as np

    from tfgen import images

    run = tmp_path / "run"
    _fake_run(run, [1, 5, 12])
    out = tmp_path / "strip.png"
    result = _strip("--run", run, "--epochs", 5, 12, "--rows", 2, "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    strip = np.asarray(Image.open(out))
    grid = np.asarray(Image.open(run / "samples" / "epoch_005.png"))
    factor = grid.shape[1] // (4 * 10 + 2)  # 4 columns of 8 px cells and 2 px padding, enlarged
    band = (2 * 10 + 2) * factor  # 2 of the grid's 4 rows
    assert strip.shape[0] == 2 * band
    # each band is its epoch's first 8 cells (values e * 10 + 0..7), right of the label
    for k, epoch in enumerate([5, 12]):
        cells = images.grid_cells(strip[k * band : (k + 1) * band, -grid.shape[1] :], 8)
        assert cells.shape[:2] == (2, 4)
        np.testing.assert_array_equal(cells[..., 0, 0, 0].ravel(), epoch * 10 + np.arange(8))
    # the label column holds dark text
    assert strip[:, :80].min() < 100


def _strip(*args):
    return run_tool("epoch_strip.py", *args)


def test_epoch_strip_of_a_grey_run_picks_the_rows_asked_and_each_epoch_once(tmp_path):
    import numpy as np

    from tfgen import images

    run = tmp_path / "run"
    _fake_run(run, [1, 5], channels=1)
    out = tmp_path / "strip.png"
    result = _strip("--run", run, "--epochs", 5, 5, 1, "--first-row", 3, "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    strip = Image.open(out)
    assert strip.mode == "L"
    strip = np.asarray(strip)
    grid_width = np.asarray(Image.open(run / "samples" / "epoch_001.png")).shape[1]
    band = strip.shape[0] // 2  # 2 bands: epoch 5 once, then epoch 1
    assert strip.shape[0] == 2 * band
    for k, epoch in enumerate([5, 1]):
        cells = images.grid_cells(strip[k * band : (k + 1) * band, -grid_width:], 8)
        np.testing.assert_array_equal(cells[..., 0, 0, 0].ravel(), epoch * 10 + np.arange(8, 12))


def test_epoch_strip_refuses_rows_the_grid_does_not_have(tmp_path):
    run = tmp_path / "run"
    _fake_run(run, [1])
    result = _strip("--run", run, "--first-row", 4, "--rows", 2)
    assert result.returncode == 2
    assert "--first-row 4 --rows 2" in result.stderr and "has only 4 grid rows" in result.stderr
    assert not (run / "epoch_strip.png").exists()


def test_epoch_strip_names_a_config_without_image_size(tmp_path):
    run = tmp_path / "run"
    _fake_run(run, [1])
    (run / "config.yaml").write_text("model: {name: dcgan}\n")
    result = _strip("--run", run)
    assert result.returncode == 2
    assert "config.yaml: no readable data.image_size" in result.stderr and "Traceback" not in result.stderr


def test_epoch_strip_names_the_epochs_a_run_has(tmp_path):
    run = tmp_path / "run"
    _fake_run(run, [1, 10])
    result = _strip("--run", run, "--epochs", 7, 7)
    assert result.returncode == 2
    assert "no grid for epoch 7; it has 1, 10" in result.stderr and "Traceback" not in result.stderr
    assert not (run / "epoch_strip.png").exists()
