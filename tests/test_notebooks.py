"""The notebooks in notebooks/ run top to bottom, as a user runs them, with small settings.

Each notebook is executed by nbclient on an IPython kernel of this interpreter, in a temporary
working directory, after small settings are appended to its "parameters" cell (papermill's
convention, done here with nbformat so papermill is not needed): one epoch of a few steps, a
few samples per score, a sweep of four short runs. The settings skip the `auto` speed timing
(XLA, precision and kernel gradients set), which would cost a minute per model shape here.
Then the test checks what the notebook wrote, not only that no cell raised. The committed
notebooks carry no outputs.
"""

import json
import math
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")  # with nbclient and ipykernel, in the [test] extra

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
COLAB = "https://colab.research.google.com/github/tfgen/tfgen/blob/main/notebooks/"
CELL_TIMEOUT = 300  # seconds; the slowest cell (the lab's sweep) takes about a minute on 2 cores

# every training plain: no `auto` setting, so no timing of candidate settings
FIXED_SPEED = ["train.jit_compile=false", "train.mixed_precision=none", "train.conv_kernel_grad=native"]
SMALL = {
    "01_tour.ipynb": {"EPOCHS": 1, "STEPS_PER_EPOCH": 5, "NUM_EVAL": 100, "SETTINGS": FIXED_SPEED},
    "02_your_images.ipynb": {
        "USE_POKEMON": False,  # the drawn folder, also where ../shared/data is at hand
        "NUM_SHAPES": 40,  # one full batch of 32
        "IMAGE_SIZE": 32,
        "EPOCHS": 1,
        "STEPS_PER_EPOCH": 3,
        "SETTINGS": FIXED_SPEED,
    },
    "03_gan_vs_vae_lab.ipynb": {
        "LATENT_DIMS": [8],
        "LEARNING_RATES": [1e-3, 2e-4],
        "EPOCHS": 1,
        "STEPS_PER_EPOCH": 3,
        "NUM_EVAL": 100,
        "SETTINGS": FIXED_SPEED,
    },
}


def parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "a notebook has exactly one code cell tagged 'parameters'"
    return cells[0]


def inject(nb, values):
    """Append `NAME = value` lines to the parameters cell, as papermill does in a cell of its own."""
    cell = parameters_cell(nb)
    for name in values:  # a renamed parameter must fail here, not be silently ignored
        assert f"\n{name} = " in f"\n{cell.source}", f"no parameter {name} in the parameters cell"
    lines = [f"{name} = {value!r}" for name, value in values.items()]
    cell.source += "\n\n# injected by tests/test_notebooks.py\n" + "\n".join(lines)


def check_tour(folder, nb):
    run = folder / "runs" / "tour"
    assert (run / "samples" / "epoch_001.png").is_file()
    assert (run / "curves.png").is_file()
    scores = json.loads((run / "eval.json").read_text())
    assert scores["num_samples"] == SMALL["01_tour.ipynb"]["NUM_EVAL"] and math.isfinite(scores["fid"])
    assert (run / "export" / "saved_model" / "saved_model.pb").is_file()


def check_your_images(folder, nb):
    half = SMALL["02_your_images.ipynb"]["NUM_SHAPES"] // 2
    drawn = sorted(p.parent.name for p in (folder / "shapes").rglob("*.png"))
    assert drawn == ["circles"] * half + ["squares"] * half  # two classes, a sub-folder each
    run = folder / "runs" / "my_images"
    assert (run / "samples" / "epoch_001.png").is_file()
    assert "path: shapes" in (run / "config.yaml").read_text()


def check_lab(folder, nb):
    sweep = folder / "runs" / "sweeps" / "gan_vs_vae"
    small = SMALL["03_gan_vs_vae_lab.ipynb"]
    runs = 2 * len(small["LATENT_DIMS"]) * len(small["LEARNING_RATES"])  # a GAN and a VAE config
    names = re.findall(r"^\| \d+ \| (\S+) \|", (sweep / "results.md").read_text(), flags=re.MULTILINE)
    assert len(names) == runs, names  # a row per run
    for name in names:
        record = json.loads((sweep / name / "sweep.json").read_text())
        assert record["error"] is None and math.isfinite(record["metrics"]["fid"]), record
        assert (sweep / "thumbs" / f"{name}.png").is_file()
    tables = [o.data["text/html"] for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert any(t.count("data:image/png;base64,") == runs for t in tables), "the score table shows a thumbnail per run"
    assert (folder / "vae_interpolation.png").is_file()


CHECKS = {"01_tour.ipynb": check_tour, "02_your_images.ipynb": check_your_images, "03_gan_vs_vae_lab.ipynb": check_lab}


def test_every_notebook_is_covered():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(SMALL) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_committed_notebook_is_stripped_and_opens_in_colab(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), f"{name}: strip its outputs"
    assert f"{COLAB}{name})" in nb.cells[0].source, "the first cell links to this notebook in Colab"
    assert 'find_spec("tfgen")' in code[0].source, "the first code cell installs tfgen where it is missing"
    parameters_cell(nb)


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """The kernel is this interpreter (a "python3" kernelspec of its own, found first), and its
    shell commands (`!tfgen ...`) find this environment's tfgen."""
    pytest.importorskip("nbclient")
    kernelspec = pytest.importorskip("ipykernel.kernelspec")
    jupyter = tmp_path / "jupyter"
    kernelspec.write_kernel_spec(jupyter / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_runs_with_small_settings(name, kernel_env):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    inject(nb, SMALL[name])
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(kernel_env)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell raised

    text = "\n".join(output.get("text", "") for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs)
    # a failed `!tfgen ...` does not raise in the notebook: its one-line error shows in the output
    assert "tfgen: error" not in text, text[-3000:]
    pictures = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert pictures >= 3, "the notebook shows its pictures inline"
    CHECKS[name](kernel_env, nb)
