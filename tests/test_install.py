"""tfgen as a new user gets it: a wheel built from the sdist, installed into a fresh venv, run elsewhere.

The wheel is installed without its dependencies: TensorFlow and the rest (about 1 GB) come
from the interpreter running the tests, whose site-packages a `.pth` line adds to the new
venv after its own. The checkout is never on the new venv's path, and the test checks that
`tfgen` is imported from the wheel's files.

The current interpreter is always checked. Others (Python 3.10 and 3.12; setup.cfg names the
supported ones) are checked when TFGEN_TEST_PYTHONS lists interpreters, separated by the
path separator, each with tfgen's dependencies installed, e.g. a venv made with
`pip install tfgen-*.whl`.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TF_LINE = re.compile(r"^[IWEF]\d{4} .*\] |absl::InitializeLog|oneDNN|cuda|cuInit", re.IGNORECASE)
NOT_SHIPPED = (".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")
TOY = [
    "--set",
    "data.image_size=8",
    "--set",
    "data.limit=64",
    "--set",
    "data.batch_size=8",
    "--set",
    "model.g_width=4",
    "--set",
    "model.d_width=4",
    "--set",
    "train.epochs=1",
    "--set",
    "train.steps_per_epoch=1",
    "--set",
    "train.num_samples=4",
    "--set",
    "train.jit_compile=false",
    "--set",
    "train.mixed_precision=none",
    "--set",
    "train.distribute=none",
]
PYTHONS = [sys.executable, *filter(None, os.environ.get("TFGEN_TEST_PYTHONS", "").split(os.pathsep))]


def readme_example():
    """The README's Python example: the first python block under "## Use from Python"."""
    section = (REPO / "README.md").read_text().split("## Use from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run(args, cwd, env=None, timeout=600):
    return finish(start(args, cwd, env), timeout)


def start(args, cwd, env=None):
    """`args` started in the background (each command imports TensorFlow, mostly on one core)."""
    process = subprocess.Popen(
        [str(a) for a in args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process.args = args
    return process


def finish(process, timeout=600):
    """Wait for a `start`ed command; it must succeed. Its CompletedProcess."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert result.returncode == 0, f"{process.args}\n{stdout[-3000:]}\n{stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Build the sdist from a copy of the checkout, then the wheel from the sdist, as `python -m build` does."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    dist = tmp / "dist"
    if importlib.util.find_spec("setuptools"):  # offline: the build backend is already here
        sdist = run(
            [
                sys.executable,
                "-c",
                "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))",
                dist,
            ],
            cwd=src,
        ).stdout.split()[-1]
        run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, dist / sdist],
            cwd=tmp,
        )
    else:  # pip fetches setuptools into an isolated build environment
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src], cwd=tmp)
    (path,) = dist.glob("tfgen-*.whl")
    names = zipfile.ZipFile(path).namelist()
    assert "tfgen/configs/mnist5k_dcgan.yaml" in names and "tfgen/studio/index.html" in names
    for part in ("preset.json", "samples.png", "saved_model/saved_model.pb", "saved_model/tfgen.json"):
        assert f"tfgen/presets/mnist5k_dcgan/{part}" in names, part
    assert any(n.startswith("tfgen/presets/mnist5k_cond_gan/saved_model/variables/variables.data") for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)
    return path


def venv_with(wheel, python, root):
    """A venv from `python` in `root` with `wheel` installed, and `python`'s installed packages
    after its own through a .pth line (added after the install, so pip sees only the venv); its python."""
    run([python, "-m", "venv", "--without-pip", root], cwd=root.parent)
    new_python = root / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", new_python, "install", "--no-deps", "-q", wheel], cwd=root)
    purelib = run([new_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).stdout
    dependencies = run([python, "-c", "import site; print('\\n'.join(site.getsitepackages()))"], cwd=root).stdout
    (Path(purelib.strip()) / "tfgen_test_dependencies.pth").write_text(dependencies)
    return new_python


@pytest.mark.parametrize("python", PYTHONS)
def test_the_wheel_works_in_a_fresh_venv_from_any_folder(python, wheel, tmp_path):
    new_python = venv_with(wheel, python, tmp_path / "venv")
    bin_dir = new_python.parent
    work = tmp_path / "work"  # an empty folder: no ./configs, not the checkout
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"  # as after `source venv/bin/activate`

    # the wheel's files, not the checkout's (find_spec locates the package without importing TensorFlow)
    where = run(
        [new_python, "-c", "import importlib.util; print(importlib.util.find_spec('tfgen').origin)"], cwd=work, env=env
    ).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where
    assert (bin_dir / "tfgen-train").is_file()

    # The commands below are independent (the README example writes only digits_dcgan.keras),
    # so they run side by side: each spends seconds importing TensorFlow on one core.
    (work / "example.py").write_text(readme_example())
    example = start([new_python, "example.py"], cwd=work, env=env)
    version, configs, models, listed = (
        start(["tfgen", *command], cwd=work, env=env)
        for command in (["--version"], ["configs"], ["models", "dcgan"], ["presets"])
    )
    # a preset from the wheel: images without training
    from_preset = start(["tfgen", "generate", "--preset", "mnist5k_dcgan", "--num", "4", "--out", "p.png"], work, env)

    # a bare config name from the package data; quiet like every command, exports included
    trained = run(["tfgen", "train", "--config", "mnist5k_dcgan.yaml", *TOY], cwd=work, env=env)
    assert "tfgen: done in" in trained.stderr
    assert [line for line in trained.stderr.splitlines() if TF_LINE.search(line)] == []
    run_dir = work / "runs" / "mnist5k_dcgan"
    assert (run_dir / "model.keras").is_file() and (run_dir / "saved_model" / "tfgen.json").is_file()

    assert finish(version).stdout.strip() == f"tfgen {wheel.name.split('-')[1]}"
    configs = finish(configs).stdout
    assert "mnist5k_dcgan.yaml" in configs and "DCGAN on real MNIST" in configs
    assert "    latent_dim: int = 100" in finish(models).stdout
    assert "(16, 16, 16, 1) uint8" in finish(example).stdout
    assert "  mnist5k_dcgan: " in finish(listed).stdout
    finish(from_preset)
    assert (work / "p.png").is_file()
