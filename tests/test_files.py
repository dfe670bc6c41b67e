"""Atomic writes: all-or-nothing, and the files they leave follow the user's umask."""

import os
import stat

import pytest
from helpers import toy_model

from tfgen.export import export_saved_model
from tfgen.files import atomic_path, write_text


@pytest.fixture
def umask():
    """Set the process umask for one test (the test's argument), restoring it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_follow_the_umask(tmp_path, umask):
    umask(0o022)
    write_text(tmp_path / "config.yaml", "a: 1\n")
    assert mode(tmp_path / "config.yaml") == 0o644
    umask(0o077)
    with atomic_path(tmp_path / "samples" / "epoch_001.png") as tmp:
        tmp.write_bytes(b"png")
    assert mode(tmp_path / "samples" / "epoch_001.png") == 0o600


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    write_text(tmp_path / "config.yaml", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "config.yaml") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert (tmp_path / "config.yaml").read_text() == "old"
    assert os.listdir(tmp_path) == ["config.yaml"]


def test_saved_model_folder_follows_the_umask(tmp_path, umask):
    umask(0o022)
    path = export_saved_model(toy_model("dcgan", latent_dim=4, g_width=4, d_width=4), tmp_path / "saved_model")
    assert mode(path) == 0o755
    for folder, dirs, files in os.walk(path):
        assert all(mode(os.path.join(folder, d)) == 0o755 for d in dirs)
        assert all(mode(os.path.join(folder, f)) == 0o644 for f in files)
