"""A throw-away PostgreSQL server for the avatar store's tests: `initdb` and `pg_ctl` in a temp
folder, trust authentication on 127.0.0.1 only, run as the `postgres` user when started by root
(PostgreSQL refuses to run as root).

    python tests/postgres.py start /tmp/tfgen-pg   # prints the URL; .ci/run exports it
    python tests/postgres.py start /tmp/tfgen-pg --durable   # fsync on, for benchmarks
    python tests/postgres.py stop /tmp/tfgen-pg

The tests use $TFGEN_TEST_POSTGRES when it is set, else start one with `start_server` and
skip when PostgreSQL is not installed.
"""

import glob
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path


def binaries():
    """The folder holding initdb and pg_ctl, or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _as_server_user(command):
    return ["runuser", "-u", "postgres", "--", *command] if os.getuid() == 0 else command


def start_server(folder, durable=False):
    """Start a server with its data in `folder` (created); its URL (database `postgres`).
    Tests run it with fsync off; `durable` (benchmarks) keeps PostgreSQL's default, fsync on."""
    bin_dir = binaries()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL is not installed (no initdb)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    if os.getuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run(
        _as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "tfgen", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if not durable:
        options += " -c fsync=off"
    subprocess.run(
        _as_server_user(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    return f"postgresql://tfgen@127.0.0.1:{port}/postgres"


def stop_server(folder):
    bin_dir = binaries()
    subprocess.run(
        _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(Path(folder) / "data"), "-m", "immediate", "stop"]),
        capture_output=True,
    )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    action, folder = sys.argv[1:3]
    if action == "start":
        print(start_server(folder, durable="--durable" in sys.argv))
    else:
        stop_server(folder)
