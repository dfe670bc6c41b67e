import json

from tfgen import sweep

TOY = """\
model: {name: dcgan, latent_dim: 4, g_width: 4, d_width: 4}
data: {source: digits, image_size: 8, batch_size: 16, limit: 128}
train: {epochs: 1, steps_per_epoch: 4, sample_every: 1, jit_compile: false, conv_kernel_grad: native, distribute: none}
"""
# flow matching's U-Net at toy size, on the same data
TOY_FLOW = TOY.replace(
    "{name: dcgan, latent_dim: 4, g_width: 4, d_width: 4}",
    "{name: flow_matching, width: 8, levels: 2, block_depth: 1, sampling_steps: 2}",
)


def test_bad_grid_values_fail_before_any_training(tmp_path, capsys):
    config = tmp_path / "toy_sweep.yaml"
    config.write_text(TOY + f"run_dir: {tmp_path / 'runs'}\n")
    assert sweep.main(["--config", str(config), "--grid", "train.epochs=1,many"]) == 2
    assert "train.epochs" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "sweeps").exists()


def test_a_sweep_of_two_families_variants_and_a_grid_ranks_runs_survives_failures_and_resumes(tmp_path, capsys):
    """A DCGAN and a flow-matching config x two variants x a one-value grid: four runs, each
    ended (and exported) by a time budget after its first epoch. ema_decay 1.5 passes the
    config's checks and is refused by each model itself, in the training process: two failed
    runs. One sweep, as the trainings are the test's cost."""
    for name, text in (("gan", TOY), ("flow", TOY_FLOW)):
        (tmp_path / f"{name}.yaml").write_text(text + f"run_dir: {tmp_path / 'runs'}\n")
    argv = [
        "--config",
        str(tmp_path / "gan.yaml"),
        "--config",
        str(tmp_path / "flow.yaml"),
        "--variant",
        "model.ema_decay=0.5",
        "--variant",
        "model.ema_decay=1.5",
        "--grid",
        "train.learning_rate=0.002",
        "--set",
        "train.epochs=50",
        "--set",
        "train.time_budget_minutes=0.0001",
        "--set",
        "export.saved_model=false",  # not what a sweep is about; the flow model's takes seconds
        "--name",
        "budget",
        "--num",
        "100",
        "--metric",
        "fid,kid",
    ]
    assert sweep.main(argv) == 0
    out_dir = tmp_path / "runs" / "sweeps" / "budget"
    markdown = (out_dir / "results.md").read_text()
    page = (out_dir / "results.html").read_text()
    header = markdown.splitlines()[2]
    assert "| model | model.ema_decay | train.learning_rate | fid | kid | train time |" in header
    good = [f"{c}__ema_decay-0.5__learning_rate-0.002" for c in ("gan", "flow")]
    failed = [f"{c}__ema_decay-1.5__learning_rate-0.002" for c in ("gan", "flow")]
    lines = [l for l in markdown.splitlines() if l.startswith("| ") and "__ema_decay-" in l]
    assert len(lines) == 4 and all(name in page for name in good + failed)
    assert "| dcgan |" in markdown and "| flow_matching |" in markdown
    # best first: the two good runs by FID, then the two failures with their error
    records = {n: json.loads((out_dir / n / "sweep.json").read_text()) for n in good}
    best = min(records.values(), key=lambda r: r["metrics"]["fid"])["name"]
    assert best in lines[0] and {l.split(" | ")[1] for l in lines[2:]} == set(failed)
    assert all("ema_decay must be in [0, 1)" in l for l in lines[2:])
    assert page.count("<img ") == 2 and page.count('class="failed"') == 2
    for name, record in records.items():
        assert record["error"] is None and {"fid", "kid"} <= set(record["metrics"]), record
        rows = (out_dir / name / "metrics.csv").read_text().splitlines()
        assert len(rows) == 2  # header + the one epoch the budget allowed, of 50
        assert (out_dir / name / "model.keras").is_file() and (out_dir / name / "samples" / "epoch_001.png").is_file()
        assert (out_dir / "thumbs" / f"{name}.png").is_file()

    # resumable: a second call re-trains nothing that finished (asked for the finished runs
    # only: it would train the failed ones again, a subprocess each)
    before = {n: (out_dir / n / "sweep.json").stat().st_mtime for n in good}
    failing = argv.index("model.ema_decay=1.5")
    assert sweep.main(argv[: failing - 1] + argv[failing + 1 :]) == 0
    assert capsys.readouterr().err.count("already done") == 2
    for name, mtime in before.items():
        assert (out_dir / name / "sweep.json").stat().st_mtime == mtime


def test_values_holding_commas_are_one_setting():
    assert sweep.parse_variant("model.diffaugment=color,translation,model.top_k=true") == [
        ("model.diffaugment", "color,translation"),
        ("model.top_k", "true"),
    ]
    assert sweep.parse_variant("") == []
    assert sweep.parse_grid(["model.diffaugment=color|color,translation", "model.latent_dim=8,16"]) == [
        ("model.diffaugment", ["color", "color,translation"]),
        ("model.latent_dim", ["8", "16"]),
    ]


def test_a_bad_grid_key_names_the_sweep_run(tmp_path, capsys):
    config = tmp_path / "toy_sweep.yaml"
    config.write_text(TOY + f"run_dir: {tmp_path / 'runs'}\n")
    assert sweep.main(["--config", str(config), "--grid", "model.bogus=1,2"]) == 2
    err = capsys.readouterr().err
    assert "sweep's run of toy_sweep.yaml with model.bogus=1" in err and "unknown key model.bogus" in err
