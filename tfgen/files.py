"""Atomic file writes: a run killed at any moment never leaves a half-written file behind.

Everything in a run directory that a resumed run reads back (configs, latents, pictures,
records) is written to a temporary file beside its target and renamed over it, which POSIX
makes atomic: readers see the old file or the new one, never a torn one.
"""

import contextlib
import os
import secrets
from pathlib import Path


def user_cache_dir():
    """tfgen's folder in the user's cache (`$XDG_CACHE_HOME/tfgen`, else `~/.cache/tfgen`): what is
    measured or trained once per machine (auto settings, a preset's feature extractor)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tfgen"


def make_temp_beside(path, directory=False):
    """Create an empty file (or, with `directory`, folder) with a fresh hidden name beside `path`.

    Not `tempfile.mkstemp`/`mkdtemp`: their private 0600/0700 modes would survive the rename,
    leaving run artefacts readable by their owner alone. Here the kernel applies the umask
    to 0666/0777, as for any file the user writes (0644/0755 under the usual umask 022).
    """
    path = Path(path)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{path.suffix}")
        try:
            if directory:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_path(path, durable=False):
    """Yield a temporary path beside `path`; on success rename it to `path`, else delete it.

    `durable`: flush the file and the rename to the disk before returning, for records whose
    loss after a reported success would break a promise (a kept avatar), not for pictures.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_beside(path)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """Atomically replace `path` with `text`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
