"""Two worker processes under MultiWorkerMirroredStrategy (TF_CONFIG on localhost) train
exactly as MirroredStrategy over this process's two logical CPUs: same replicas, same
halves of every global batch, same per-replica latents, so the same weights."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfgen import train
from tfgen.config import load_config

WORKER_TIMEOUT = 240  # seconds for the whole 2-worker run; it takes ~30 s on 2 cores
REPO = Path(__file__).resolve().parents[1]
SETTINGS = ["train.learning_rate=0.01", "model.ema_decay=0.5", "data.image_size=16"]


def free_ports(n):
    """n distinct ports free on all interfaces (TF's gRPC server binds 0.0.0.0:port)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run_workers(argv, logs_dir, n=2, env=None, timeout=WORKER_TIMEOUT, grace=15.0, attempts=3):
    """Run `argv` as n MWMS workers; their exit codes. A worker left waiting for a dead
    peer (in a collective, or in the strategy's wait for the cluster) is killed."""
    for attempt in range(attempts):
        ports = free_ports(n)
        cluster = {"worker": [f"localhost:{p}" for p in ports]}
        procs, logs = [], []
        for i in range(n):
            worker_env = dict(os.environ, **(env or {}), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                              TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
            logs.append(open(logs_dir / f"worker{i}.log", "w"))
            procs.append(subprocess.Popen(argv, cwd=REPO, env=worker_env, stdout=logs[-1], stderr=subprocess.STDOUT))
        start, failed_at = time.monotonic(), None
        try:
            while any(p.poll() is None for p in procs) and time.monotonic() - start < timeout:
                if failed_at is None and any(p.poll() not in (None, 0) for p in procs):
                    failed_at = time.monotonic()
                if failed_at is not None and time.monotonic() - failed_at > grace:
                    break
                time.sleep(0.2)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
            for f in logs:
                f.close()
        codes = [p.returncode for p in procs]
        texts = [(logs_dir / f"worker{i}.log").read_text() for i in range(n)]
        if any(codes) and any("Could not start gRPC server" in t for t in texts) and attempt + 1 < attempts:
            continue  # a port was taken between free_ports and the bind: new ports
        return codes, texts


def checkpoint_values(path):
    reader = tf.train.load_checkpoint(str(path))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name not in ("_CHECKPOINTABLE_OBJECT_GRAPH",) and not name.startswith("save_counter")}


def test_two_workers_train_like_mirrored_strategy(toy_config, tmp_path):
    runs = tmp_path / "multi"
    argv = [sys.executable, "-m", "tfgen.train", "--config", str(toy_config),
            "--set", "train.distribute=multi_worker", "--set", f"run_dir={runs}",
            *[a for s in SETTINGS for a in ("--set", s)]]
    scratch = tmp_path / "scratch"  # the workers' TMPDIR: where the non-chief writes
    scratch.mkdir()
    started = time.monotonic()
    codes, logs = run_workers(argv, tmp_path, env={"TMPDIR": str(scratch)})
    print(f"two workers: {time.monotonic() - started:.1f} s")
    assert codes == [0, 0], "\n\n".join(text[-3000:] for text in logs)

    # Only the chief's run directory exists, complete; the other worker's went with it.
    run_dir = runs / "toy"
    assert sorted(p.name for p in runs.iterdir()) == ["toy"]
    for name in ("config.yaml", "metrics.csv", "curves.png", "model.keras", "saved_model", "samples/epoch_002.png"):
        assert (run_dir / name).exists(), name
    assert not any(scratch.iterdir())  # the non-chief wrote there and cleaned up

    cfg = load_config(str(toy_config), ["train.distribute=mirrored", *SETTINGS])
    started = time.monotonic()
    train.train(cfg, train.prepare_run_dir(cfg, resume=False, overwrite=False))
    print(f"in-process MirroredStrategy reference: {time.monotonic() - started:.1f} s")
    expected = checkpoint_values(tmp_path / "runs" / "toy" / "checkpoints" / "ckpt-4")
    actual = checkpoint_values(run_dir / "checkpoints" / "ckpt-4")
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-6, atol=1e-7, err_msg=name)
    # the metrics the workers logged are the global ones too
    chief_rows = (run_dir / "metrics.csv").read_text().splitlines()
    reference_rows = (tmp_path / "runs" / "toy" / "metrics.csv").read_text().splitlines()
    assert chief_rows[0] == reference_rows[0]
    assert len(chief_rows) == len(reference_rows) == 3

    def numbers(row):
        return [float("nan") if x in ("", "NA") else float(x) for x in row.split(",")]

    for mine, theirs in zip(chief_rows[1:], reference_rows[1:]):
        np.testing.assert_allclose(numbers(mine), numbers(theirs), rtol=1e-6)


def test_two_workers_resume_from_the_chiefs_checkpoint(toy_config, tmp_path):
    # whole passes over the data (2 batches of 8), as a resume restarts at a data epoch
    settings = [*SETTINGS, "data.limit=16", "train.steps_per_epoch=0"]
    runs = tmp_path / "multi"
    base = [sys.executable, "-m", "tfgen.train", "--config", str(toy_config),
            "--set", "train.distribute=multi_worker", "--set", f"run_dir={runs}",
            *[a for s in settings for a in ("--set", s)]]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    codes, logs = run_workers([*base, "--set", "train.epochs=1"], tmp_path, env={"TMPDIR": str(scratch)})
    assert codes == [0, 0], "\n\n".join(text[-3000:] for text in logs)
    codes, logs = run_workers([*base, "--resume", "--set", "train.epochs=2"], tmp_path, env={"TMPDIR": str(scratch)})
    assert codes == [0, 0], "\n\n".join(text[-3000:] for text in logs)
    assert "resumed from" in logs[1]  # the non-chief restored too (from its copy of the chief's run)

    cfg = load_config(str(toy_config), ["train.distribute=mirrored", *settings])
    train.train(cfg, train.prepare_run_dir(cfg, resume=False, overwrite=False))
    expected = checkpoint_values(tmp_path / "runs" / "toy" / "checkpoints" / "ckpt-4")
    actual = checkpoint_values(runs / "toy" / "checkpoints" / "ckpt-4")
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-6, atol=1e-7, err_msg=name)
