"""tfgen commands hide TensorFlow's C++ log lines unless --verbose; a library import hides no more.

(That a real `tfgen train` prints no TensorFlow line is checked end to end by
tests/test_install.py, from the installed wheel; which command lines hide them, here.)"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tfgen import cli

REPO = Path(__file__).resolve().parents[1]
TF_LINE = re.compile(r"^[IWEF]\d{4} .*\] |absl::InitializeLog|oneDNN|cuda|cuInit", re.IGNORECASE)


def run_command(*args):
    """`python -m tfgen.train ARGS` as a user's shell runs it (no TF_CPP_MIN_LOG_LEVEL of ours)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-m", "tfgen.train", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )


@pytest.mark.parametrize(
    "argv, orig_argv, hides",
    [
        (["-m", "--config", "x.yaml"], ["python", "-m", "tfgen.train", "--config", "x.yaml"], True),
        (["-m", "--run", "r"], ["python", "-X", "dev", "-m", "tfgen.evaluate", "--run", "r"], True),
        (["/venv/bin/tfgen-train", "--config", "x.yaml"], ["python", "/venv/bin/tfgen-train"], True),
        (["-m", "--config", "x.yaml", "--verbose"], ["python", "-m", "tfgen.train"], False),
        (["/venv/bin/tfgen-train", "--verb"], ["python", "/venv/bin/tfgen-train", "--verb"], False),
        (["/venv/bin/tfgen", "train", "--config", "x.yaml"], ["python", "/venv/bin/tfgen", "train"], True),
        (["/venv/bin/tfgen", "train", "--verbose"], ["python", "/venv/bin/tfgen", "train", "--verbose"], False),
        (["-m", "train", "--config", "x.yaml"], ["python", "-m", "tfgen", "train", "--config", "x.yaml"], True),
        (["/home/me/tfgen.py"], ["python", "/home/me/tfgen.py"], False),  # a user's script named tfgen
        (["-m", "-q"], ["python", "-m", "pytest", "-q"], False),  # a tool that imports tfgen
        (["script.py"], ["python", "script.py"], False),
    ],
)
def test_only_tfgen_commands_without_verbose_hide_tensorflow_logs(monkeypatch, argv, orig_argv, hides):
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    assert cli.hides_tensorflow_logs() is hides


@pytest.mark.parametrize(
    "argv, orig_argv, needs",
    [
        (["/venv/bin/tfgen", "configs"], ["python", "/venv/bin/tfgen", "configs"], False),
        (["/venv/bin/tfgen", "--version"], ["python", "/venv/bin/tfgen", "--version"], False),
        (["-m", "presets"], ["python", "-m", "tfgen", "presets"], False),
        (["-m", "-h"], ["python", "-X", "dev", "-m", "tfgen", "-h"], False),
        (["/venv/bin/tfgen", "models"], ["python", "/venv/bin/tfgen", "models"], True),  # the model classes
        (["/venv/bin/tfgen", "train", "configs"], ["python", "/venv/bin/tfgen", "train", "configs"], True),
        (["/venv/bin/tfgen"], ["python", "/venv/bin/tfgen"], True),
        (["/venv/bin/tfgen-train", "--help"], ["python", "/venv/bin/tfgen-train", "--help"], True),
        (["-m", "--help"], ["python", "-m", "tfgen.train", "--help"], True),
        (["script.py", "configs"], ["python", "script.py", "configs"], True),  # tfgen as a library
    ],
)
def test_only_the_listings_version_and_help_of_tfgen_skip_tensorflow(monkeypatch, argv, orig_argv, needs):
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    assert cli.needs_tensorflow() is needs


def test_the_listings_answer_without_importing_tensorflow():
    """`tfgen configs`, `presets`, `--version` and `--help` read shipped files only: in a fresh
    interpreter they import neither TensorFlow nor Keras (about 8 s of a core saved each)."""
    script = (
        "import contextlib, io, sys\n"
        "from tfgen.__main__ import main\n"
        "for args in (['configs'], ['presets'], ['--version'], ['--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try:\n"
        "            main(args)\n"
        "        except SystemExit as exit:  # --version and --help exit\n"
        "            assert exit.code == 0, args\n"
        "    assert out.getvalue(), args\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.argv = ['tfgen', 'configs']\n{script}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "[]"


def test_verbose_shows_tensorflow_lines_and_a_user_error_is_still_one_line(tmp_path):
    """`python -m tfgen.train` with a config value it refuses: exit status 2 and one line naming
    the file, key and value, no traceback (--verbose changes only which log lines show)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: -1}\n")
    result = run_command("--verbose", "--config", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"tfgen: error: {bad}: train.epochs: invalid value -1" in result.stderr
    # this TensorFlow build announces oneDNN (x86) or the missing CUDA driver at start-up
    assert any(TF_LINE.search(line) for line in result.stderr.splitlines()), result.stderr
