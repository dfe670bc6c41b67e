"""Issue 7: nothing a user trained is lost, and bad input never costs a run."""

import errno
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from helpers import toy_model
from PIL import Image

from tfgen import callbacks, evaluate, train, training
from tfgen.config import load_config

REPO = Path(__file__).resolve().parents[1]

SLOW = """\
model: {name: dcgan, latent_dim: 4, g_width: 8, d_width: 8, d_dropout: 0.2}
data: {source: digits, image_size: 16, batch_size: 16, limit: 480}
train: {epochs: 6, sample_every: 1, checkpoint_every: 1, keep_checkpoints: 10, jit_compile: false, distribute: none}
export: {saved_model: false}
"""


def write_config(tmp_path, text=SLOW, name="rel"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text + f"run_dir: {tmp_path / 'runs'}\n")
    return path


def start(config, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "tfgen.train", "--config", str(config), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path, process, timeout=120):
    end = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.02)


def variables(checkpoint_prefix):
    reader = tf.train.load_checkpoint(str(checkpoint_prefix))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


def metrics_rows(run):
    """metrics.csv as (header, [[floats] per row])."""
    lines = (run / "metrics.csv").read_text().splitlines()
    return lines[0], [
        [float(x) if x not in ("", "NA") else float("nan") for x in line.split(",")] for line in lines[1:]
    ]


def assert_same_run(run, reference, final_step, epochs):
    """`run` ended exactly as the uninterrupted `reference`: every checkpointed variable
    (weights, optimizer moments and iterations, RNG states, running metrics, step) and
    every metrics.csv row, one per epoch, none twice."""
    got = variables(run / "checkpoints" / f"ckpt-{final_step}")
    want = variables(reference / "checkpoints" / f"ckpt-{final_step}")
    assert got.keys() == want.keys()
    for name in want:
        if name.startswith("save_counter"):  # counts saves (a stop adds one), not training state
            continue
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)
    header, rows = metrics_rows(run)
    want_header, want_rows = metrics_rows(reference)
    assert header == want_header
    assert [int(r[0]) for r in rows] == list(range(epochs))
    np.testing.assert_allclose(rows, want_rows, rtol=1e-4, atol=1e-5)
    assert len(sorted((run / "samples").glob("epoch_*.png"))) == epochs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted SLOW run, trained once for every test that stops and resumes it:
    how often a run checkpoints changes none of its numbers, only which steps are saved."""
    tmp = tmp_path_factory.mktemp("reference")
    assert train.main(["--config", str(write_config(tmp, name="ref"))]) == 0
    return tmp / "runs" / "ref"


def stopped_step(output):
    """The global step a stopped run says it saved."""
    line = next(line for line in output.splitlines() if "stopped at" in line)
    return int(line.rsplit("ckpt-", 1)[1].split()[0].rstrip(".;"))


def test_sigint_and_sigterm_ask_the_guard_to_stop_and_a_second_one_is_not_caught():
    """Ctrl-C (SIGINT) and a scheduler's SIGTERM take the same path: each asks the Guard to stop
    after the current step, naming the signal, and hands the signal back to its previous
    handler, so a second one (e.g. during a long compile) ends the run at once. (The stop and
    resume that follow are the end-to-end test's below, with SIGTERM.)"""
    reasons = []
    guard = types.SimpleNamespace(request_stop=reasons.append)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with training.stop_on_signals(guard):
        for signum in (signal.SIGINT, signal.SIGTERM):
            assert signal.getsignal(signum) is not before[signum]
            os.kill(os.getpid(), signum)
            time.sleep(0.01)  # Python runs the handler between bytecodes of the main thread
            assert signal.getsignal(signum) is before[signum]
    assert reasons == ["SIGINT received", "SIGTERM received"]
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_stop_signal_at_a_random_moment_then_resume_matches_an_uninterrupted_run(reference, tmp_path, capsys):
    """SIGTERM (a scheduler; Ctrl-C's SIGINT takes the same path, tested above) mid-run: the
    run checkpoints the step it stopped at, says how to resume and exports nothing; the resumed
    run ends as the uninterrupted one."""
    signum, seed = signal.SIGTERM, 1
    steps = 480 // 16
    config = write_config(tmp_path)
    run = tmp_path / "runs" / "rel"
    victim = start(config)
    wait_for(run / "checkpoints" / f"ckpt-{steps}.index", victim)
    time.sleep(np.random.default_rng(seed).uniform(0.0, 1.5))
    victim.send_signal(signum)
    output = victim.communicate(timeout=120)[0]
    assert victim.returncode == 130, output[-3000:]
    assert f"{signal.Signals(signum).name} received" in output and "--resume" in output
    stopped = stopped_step(output)
    assert steps < stopped < 6 * steps, "the signal came too late to test anything"
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith(f"ckpt-{stopped}")
    assert not (run / "model.keras").exists()  # an unfinished run is not exported
    # the victim was another process: nothing of it survives in this one but its files
    assert train.main(["--config", str(config), "--resume"]) == 0
    assert f"resumed from {run / 'checkpoints' / f'ckpt-{stopped}'}" in capsys.readouterr().err
    assert (run / "model.keras").is_file()
    assert_same_run(run, reference, 6 * steps, 6)


class JumpingClock:
    """`time` for the Guard: the real clock until step `jump_at` ends, then an hour later, so
    the --max-minutes deadline passes at a chosen step however fast the machine trains."""

    def __init__(self, jump_at):
        self.jump_at, self.calls = jump_at, 0

    def monotonic(self):
        self.calls += 1
        return time.monotonic() + (3600 if self.calls >= self.jump_at else 0)


def test_max_minutes_mid_epoch_then_resume_matches_an_uninterrupted_run(reference, tmp_path, capsys, monkeypatch):
    steps = 480 // 16
    config = write_config(tmp_path)
    run = tmp_path / "runs" / "rel"
    rng = np.random.default_rng()
    jump_at = int(rng.integers(1, 5)) * steps + int(rng.integers(1, steps))  # inside epoch 2-5
    monkeypatch.setattr(callbacks.control, "time", JumpingClock(jump_at))  # the Guard checks once a step
    assert train.main(["--config", str(config), "--max-minutes", "10"]) == 0
    stopped = stopped_step(capsys.readouterr().err)
    assert stopped == jump_at and not (run / "model.keras").exists()
    assert (run / "curves.png").is_file()  # the epochs before the stop are drawn, however short
    monkeypatch.undo()
    assert train.main(["--config", str(config), "--resume"]) == 0
    assert_same_run(run, reference, 6 * steps, 6)


def test_sigkill_after_a_mid_epoch_checkpoint_resumes_exactly(reference, tmp_path):
    """A kill -9 mid-run, then --resume, ends as the uninterrupted run; with
    train.checkpoint_every_steps, a kill inside a long epoch loses at most that many steps."""
    steps = 480 // 16
    text = SLOW.replace("checkpoint_every: 1", "checkpoint_every: 3, checkpoint_every_steps: 7")
    config = write_config(tmp_path, text)
    run = tmp_path / "runs" / "rel"
    victim = start(config)
    wait_for(run / "checkpoints" / f"ckpt-{steps + 5}.index", victim)  # 35 = 5 x 7, inside epoch 2
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    latest = int(tf.train.latest_checkpoint(str(run / "checkpoints")).rsplit("-", 1)[1])
    assert latest % 7 == 0 and latest % steps and latest < 3 * steps, latest
    assert train.main(["--config", str(config), "--resume"]) == 0
    assert_same_run(run, reference, 6 * steps, 6)


def test_max_minutes_checkpoints_and_stops_cleanly(tmp_path):
    config = write_config(tmp_path)
    assert train.main(["--config", str(config), "--max-minutes", "0.0001"]) == 0
    run = tmp_path / "runs" / "rel"
    assert not (run / "model.keras").exists()
    latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    assert latest and int(latest.rsplit("-", 1)[1]) >= 1
    assert train.main(["--config", str(config), "--resume", "--set", "train.epochs=1"]) == 0
    assert (run / "model.keras").is_file()


def test_corrupted_latest_checkpoint_falls_back_to_the_previous(tmp_path, capsys):
    config = write_config(tmp_path, SLOW.replace("epochs: 6", "epochs: 2"))
    assert train.main(["--config", str(config)]) == 0
    checkpoints = tmp_path / "runs" / "rel" / "checkpoints"
    newest = checkpoints / "ckpt-60.data-00000-of-00001"
    newest.write_bytes(b"\0garbage" * 10)
    assert train.main(["--config", str(config), "--resume", "--set", "train.epochs=3"]) == 0
    log = capsys.readouterr().err
    assert "ckpt-60 is unreadable" in log
    assert "resumed from" in log and "ckpt-30 at the end of epoch 1" in log
    rows = (tmp_path / "runs" / "rel" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]


def test_nan_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    config = write_config(tmp_path, SLOW.replace("epochs: 6", "epochs: 3"))
    assert train.main(["--config", str(config), "--set", "train.epochs=1"]) == 0
    run = tmp_path / "runs" / "rel"
    code = train.main(
        ["--config", str(config), "--resume", "--set", "train.epochs=3", "--set", "train.learning_rate=1e30"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "training diverged" in err and "at epoch 2, step" in err and "ckpt-30" in err
    good = variables(run / "checkpoints" / "ckpt-30")
    assert all(np.all(np.isfinite(v)) for v in good.values() if v.dtype.kind == "f")
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-30")
    assert not (run / "samples" / "epoch_002.png").exists()


def test_nan_rollback_lowers_the_learning_rate_then_gives_up(tmp_path, capsys):
    config = write_config(tmp_path, SLOW.replace("epochs: 6", "epochs: 2"))
    code = train.main(
        [
            "--config",
            str(config),
            "--set",
            "train.learning_rate=1e30",
            "--set",
            "train.on_nan=rollback",
            "--set",
            "train.max_rollbacks=2",
            "--set",
            "train.rollback_lr_factor=0.1",
        ]
    )
    assert code == 2
    log = capsys.readouterr().err
    assert log.count("rolled back to") == 2
    assert "learning rates now 1e+29" in log and "1e+28" in log
    assert "after 2 rollback(s)" in log
    # A resume carries the rollbacks on: the next one lowers the rate further, not back to 1e+29.
    code = train.main(
        ["--config", str(tmp_path / "runs" / "rel" / "config.yaml"), "--resume", "--set", "train.max_rollbacks=3"]
    )
    assert code == 2
    log = capsys.readouterr().err
    assert log.count("rolled back to") == 1 and "learning rates now 1e+27" in log
    assert "after 3 rollback(s)" in log
    # New learning rates on a resume start the count again, from them.
    code = train.main(
        [
            "--config",
            str(tmp_path / "runs" / "rel" / "config.yaml"),
            "--resume",
            "--set",
            "train.learning_rate=1e31",
            "--set",
            "train.max_rollbacks=1",
        ]
    )
    assert code == 2
    log = capsys.readouterr().err
    assert log.count("rolled back to") == 1 and "learning rates now 1e+30" in log


def test_metrics_csv_torn_line_and_later_epochs_are_dropped(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,d_loss\n0,1.0\n1,0.9\n2,0.8\n3,0.")
    callbacks.truncate_metrics(path, 2)
    assert path.read_text().splitlines() == ["epoch,d_loss", "0,1.0", "1,0.9"]


def test_full_disk_is_a_clear_error_and_keeps_checkpoints(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path, SLOW.replace("epochs: 6", "epochs: 2"))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "rel" / "curves.png"))

    monkeypatch.setattr(callbacks.pictures, "plot_curves", full)
    assert train.main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "curves.png" in err and "--resume" in err
    assert tf.train.latest_checkpoint(str(tmp_path / "runs" / "rel" / "checkpoints"))


def test_run_dir_that_is_a_file_is_refused(tmp_path, capsys):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    config = write_config(tmp_path)
    assert train.main(["--config", str(config)]) == 2
    assert "cannot create run directory" in capsys.readouterr().err


def test_huge_and_broken_images_are_skipped_not_fatal(tmp_path, monkeypatch):
    from tfgen.config import DataConfig
    from tfgen.data import build_dataset, folder

    for i in range(4):
        Image.new("RGB", (12, 12), (40 * i, 0, 0)).save(tmp_path / f"ok{i}.png")
    Image.new("L", (300, 200)).save(tmp_path / "huge.png")
    (tmp_path / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    (tmp_path / "notes.png").write_text("this is text")
    monkeypatch.setattr(folder, "MAX_PIXELS", 300 * 200 - 1)
    data = build_dataset(DataConfig(source="folder", path=str(tmp_path), image_size=8, channels=3, batch_size=2))
    assert data.num_examples == 4
    assert sorted(Path(p).name for p in data.skipped) == ["huge.png", "notes.png", "truncated.jpg"]


def test_unsafe_keras_archive_is_refused(tmp_path, capsys):
    run = tmp_path / "runs" / "evil"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "evil"}))
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(run / "model.keras")
    assert evaluate.main(["--run", str(run)]) == 2
    assert "refused to load" in capsys.readouterr().err


def test_run_name_with_parent_reference_is_refused(tmp_path):
    config = write_config(tmp_path)
    from tfgen.errors import ConfigError

    with pytest.raises(ConfigError, match="no path separators"):
        load_config(str(config), ["name=../outside"])


def test_resume_is_exact_when_an_epoch_is_shorter_than_a_pass(tmp_path):
    """steps_per_epoch 3 of 8 batches per pass: the resumed run continues mid-pass."""
    text = SLOW.replace("limit: 480", "limit: 128").replace("epochs: 6", "epochs: 3, steps_per_epoch: 3")
    whole = write_config(tmp_path, text, name="whole")
    split = write_config(tmp_path, text, name="split")
    assert train.main(["--config", str(whole)]) == 0
    assert train.main(["--config", str(split), "--set", "train.epochs=2"]) == 0
    assert train.main(["--config", str(split), "--resume", "--set", "train.epochs=3"]) == 0
    want = variables(tmp_path / "runs" / "whole" / "checkpoints" / "ckpt-9")
    got = variables(tmp_path / "runs" / "split" / "checkpoints" / "ckpt-9")
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_rollback_skips_a_checkpoint_whose_weights_already_blew_up(tmp_path):
    """A step's loss is finite before its update makes the weights NaN: the checkpoint saved
    after it is broken, and a rollback must go back past it."""
    model = toy_model("dcgan", latent_dim=4, g_width=4, d_width=4)
    checkpoint = tf.train.Checkpoint(model=model)
    manager = tf.train.CheckpointManager(checkpoint, tmp_path, max_to_keep=5)
    good = manager.save(checkpoint_number=1)
    kernel = model.generator.trainable_variables[0]
    kept = kernel.numpy()
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    manager.save(checkpoint_number=2)
    assert training.restore_latest(checkpoint, manager, model.variables) == good
    np.testing.assert_array_equal(kernel.numpy(), kept)


def test_resume_refuses_a_new_batch_size(tmp_path, capsys):
    config = write_config(tmp_path, SLOW.replace("epochs: 6", "epochs: 1"))
    assert train.main(["--config", str(config)]) == 0
    assert train.main(["--config", str(config), "--resume", "--set", "data.batch_size=8"]) == 2
    assert "data.batch_size was 16" in capsys.readouterr().err


def test_more_critic_batches_than_images_is_a_clear_error(tmp_path, capsys):
    config = write_config(tmp_path, SLOW.replace("d_dropout: 0.2", "d_steps: 40"))
    assert train.main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "40 batches of data.batch_size 16" in err and "lower model.d_steps" in err
