"""Two worker processes under MultiWorkerMirroredStrategy (TF_CONFIG on localhost) train
exactly as MirroredStrategy over this process's two logical CPUs: same replicas, same
halves of every global batch, same per-replica latents, so the same weights."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from helpers import checkpoint_values

from tfgen import training
from tfgen.config import load_config
from tfgen.runs import prepare_run_dir

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


def start_workers(argv, logs_dir, n=2, env=None):
    """Start `argv` as n MWMS workers on free localhost ports: (processes, log files)."""
    ports = free_ports(n)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs, logs = [], []
    for i in range(n):
        worker_env = dict(
            os.environ,
            **(env or {}),
            TF_CPP_MIN_LOG_LEVEL="2",
            CUDA_VISIBLE_DEVICES="",
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
        )
        logs.append(open(logs_dir / f"worker{i}.log", "w"))
        procs.append(subprocess.Popen(argv, cwd=REPO, env=worker_env, stdout=logs[-1], stderr=subprocess.STDOUT))
    return procs, logs


def wait_workers(procs, logs, logs_dir, timeout=WORKER_TIMEOUT, grace=15.0):
    """Wait for the workers: (exit codes, log texts). A worker left waiting for a dead peer
    (in a collective, or in the strategy's wait for the cluster) is killed."""
    start, failed_at = time.monotonic(), None
    try:
        while any(p.poll() is None for p in procs) and time.monotonic() - start < timeout:
            if failed_at is None and any(p.poll() not in (None, 0, 130) for p in procs):
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
    return [p.returncode for p in procs], [(logs_dir / f"worker{i}.log").read_text() for i in range(len(procs))]


def run_workers(argv, logs_dir, n=2, env=None, attempts=3):
    """Run `argv` as n MWMS workers to the end: (exit codes, log texts)."""
    for attempt in range(attempts):
        codes, texts = wait_workers(*start_workers(argv, logs_dir, n, env), logs_dir)
        if any(codes) and any("Could not start gRPC server" in t for t in texts) and attempt + 1 < attempts:
            continue  # a port was taken between free_ports and the bind: new ports
        return codes, texts


def worker_argv(toy_config, runs, settings):
    return [
        sys.executable,
        "-m",
        "tfgen.train",
        "--config",
        str(toy_config),
        "--set",
        "train.distribute=multi_worker",
        "--set",
        f"run_dir={runs}",
        *[a for s in settings for a in ("--set", s)],
    ]


def mirrored_reference(toy_config, settings):
    """The same run in this process under MirroredStrategy on two logical CPUs: its run dir."""
    cfg = load_config(str(toy_config), ["train.distribute=mirrored", *settings])
    training.train(cfg, prepare_run_dir(cfg, resume=False, overwrite=False))
    return Path(cfg.run_dir) / cfg.name


def test_two_workers_stop_together_on_sigterm_resume_exactly_and_train_and_score_like_mirrored(toy_config, tmp_path):
    """A 2-worker run, scored during training. A stop request on one worker is agreed by all
    at a step boundary: both save that step and exit 130 (none dies waiting for the other).
    Resumed, both from the chief's checkpoint, the run ends as MirroredStrategy's
    uninterrupted one (weights and training metrics), in the chief's run folder alone, with
    FID in every row and the best checkpoint kept."""
    scored = ["eval.every_epochs=1", "eval.num_samples=32", "eval.metrics=fid"]
    settings = [*SETTINGS, "train.epochs=3", "train.steps_per_epoch=5", "train.sample_every=3"]
    runs = tmp_path / "multi"
    scratch = tmp_path / "scratch"  # the workers' TMPDIR: where the non-chief writes
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}
    argv = worker_argv(toy_config, runs, [*settings, *scored])
    procs, logs = start_workers(argv, tmp_path, env=env)
    first = runs / "toy" / "checkpoints" / "ckpt-5.index"
    end = time.monotonic() + WORKER_TIMEOUT
    while not first.exists() and time.monotonic() < end and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    time.sleep(np.random.default_rng().uniform(0.0, 0.5))
    procs[1].send_signal(signal.SIGTERM)  # the non-chief only
    codes, texts = wait_workers(procs, logs, tmp_path)
    assert codes == [130, 130], "\n\n".join(text[-3000:] for text in texts)
    assert "SIGTERM received" in texts[1] and "another worker received a signal" in texts[0]
    stopped = [int(t.split("stopped at", 1)[1].split("ckpt-", 1)[1].split(";")[0].split()[0]) for t in texts]
    assert stopped[0] == stopped[1] and 5 <= stopped[0] < 15, stopped

    codes, texts = run_workers([*argv, "--resume"], tmp_path, env=env)
    assert codes == [0, 0], "\n\n".join(text[-3000:] for text in texts)
    for text in texts:  # the non-chief restored too, from its copy of the chief's run
        assert "resumed from" in text and f"ckpt-{stopped[0]} at " in text, text[-3000:]

    # Only the chief's run directory exists, complete; the other worker's went with it.
    # (.cache: the feature extractor FID is scored with, beside the runs)
    run_dir = runs / "toy"
    assert sorted(p.name for p in runs.iterdir()) == [".cache", "toy"]
    for name in ("config.yaml", "metrics.csv", "curves.png", "model.keras", "saved_model", "samples/epoch_003.png"):
        assert (run_dir / name).exists(), name
    assert not any(scratch.iterdir())  # the non-chief wrote there and cleaned up
    # scored every epoch: a finite FID in each row, and the best epoch's checkpoint kept
    header, *rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["0", "1", "2"]
    fid = [float(r.split(",")[header.split(",").index("fid")]) for r in rows]
    assert all(np.isfinite(fid)) and min(fid) > 0
    assert json.loads((run_dir / "best.json").read_text())["value"] == min(fid)
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints" / "best"))

    # The reference is not scored: scoring reads the weights and changes none (nor any RNG state).
    reference = mirrored_reference(toy_config, settings)
    expected = checkpoint_values(reference / "checkpoints" / "ckpt-15")
    actual = checkpoint_values(run_dir / "checkpoints" / "ckpt-15")
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-6, atol=1e-7, err_msg=name)
    # the metrics the workers logged are the global ones too
    with open(run_dir / "metrics.csv", newline="") as f:
        chief_rows = list(csv.DictReader(f))
    with open(reference / "metrics.csv", newline="") as f:
        reference_rows = list(csv.DictReader(f))
    assert [k for k in chief_rows[0] if k not in ("fid", "val_fid")] == list(reference_rows[0])
    assert len(chief_rows) == len(reference_rows) == 3

    def numbers(row):
        return [float("nan") if x in ("", "NA") else float(x) for x in row]

    for mine, theirs in zip(chief_rows, reference_rows):
        np.testing.assert_allclose(numbers(mine[k] for k in theirs), numbers(theirs.values()), rtol=1e-5)


def test_nan_rollback_under_two_workers(toy_config, tmp_path):
    """Both workers see the same (all-reduced) NaN at the same step, roll back together,
    and give up together: no worker is left waiting in a collective."""
    settings = [
        *SETTINGS,
        "train.learning_rate=1e30",
        "train.on_nan=rollback",
        "train.max_rollbacks=1",
        "train.rollback_lr_factor=0.1",
    ]
    codes, texts = run_workers(worker_argv(toy_config, tmp_path / "multi", settings), tmp_path)
    assert codes == [2, 2], "\n\n".join(text[-3000:] for text in texts)
    for text in texts:
        assert text.count("rolled back to") == 1 and "learning rates now 1e+29" in text
        assert "training diverged after 1 rollback(s)" in text
