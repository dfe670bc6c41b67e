import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def test_preview_data_writes_a_grid_of_the_first_batch(tmp_path):
    out = tmp_path / "preview.png"
    result = subprocess.run(
        [sys.executable, "tools/preview_data.py", "--config", "digits_dcgan.yaml",
         "--set", "data.batch_size=16", "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1797 of 16x16x1" in result.stdout
    assert "0, 1, 2" in result.stdout
    grid = Image.open(out)
    assert grid.mode == "L" and grid.size[0] >= 512


def test_preview_data_reports_a_bad_folder_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "tools/preview_data.py", "--config", "digits_dcgan.yaml",
         "--set", "data.source=folder", "--set", f"data.path={tmp_path / 'missing'}"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
