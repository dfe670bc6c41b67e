import json

from tfgen import sweep

TOY = """\
model: {name: dcgan, latent_dim: 4, g_width: 4, d_width: 4}
data: {source: digits, image_size: 8, batch_size: 16, limit: 128}
train: {epochs: 1, steps_per_epoch: 4, sample_every: 1, jit_compile: false, distribute: none}
"""


def test_sweep_writes_both_tables_with_every_row_and_survives_a_failed_run(tmp_path, capsys):
    config = tmp_path / "toy_sweep.yaml"
    config.write_text(TOY + f"run_dir: {tmp_path / 'runs'}\n")
    # g_width 0 is caught by the model itself, in the training process: a failed run
    argv = [
        "--config",
        str(config),
        "--grid",
        "model.latent_dim=2,4",
        "--grid",
        "model.g_width=4,0",
        "--num",
        "100",
        "--metric",
        "fid,kid",
    ]
    assert sweep.main(argv) == 0
    out_dir = tmp_path / "runs" / "sweeps" / "toy_sweep"
    markdown = (out_dir / "results.md").read_text()
    page = (out_dir / "results.html").read_text()
    names = [f"toy_sweep__latent_dim-{l}__g_width-{w}" for l in (2, 4) for w in (4, 0)]
    for name in names:
        assert name in markdown and name in page
    lines = [l for l in markdown.splitlines() if l.startswith("| ") and "toy_sweep__" in l]
    # best first: the two good runs by FID, then the two failures with their error
    good = [json.loads((out_dir / n / "sweep.json").read_text()) for n in names if n.endswith("-4")]
    best = min(good, key=lambda r: r["metrics"]["fid"])["name"]
    assert best in lines[0]
    assert all("g_width must be an integer >= 1" in l for l in lines[2:])
    assert page.count("<img ") == 2 and page.count('class="failed"') == 2
    assert (out_dir / "thumbs" / f"{best}.png").is_file()

    # resumable: a second call re-trains nothing that finished (asked for the finished runs
    # only: it would train the failed ones again, a subprocess each)
    before = {n: (out_dir / n / "sweep.json").stat().st_mtime for n in names if n.endswith("-4")}
    finished = ["model.g_width=4" if a == "model.g_width=4,0" else a for a in argv]
    assert sweep.main(finished) == 0
    assert "already done" in capsys.readouterr().err
    for name, mtime in before.items():
        assert (out_dir / name / "sweep.json").stat().st_mtime == mtime


def test_bad_grid_values_fail_before_any_training(tmp_path, capsys):
    config = tmp_path / "toy_sweep.yaml"
    config.write_text(TOY + f"run_dir: {tmp_path / 'runs'}\n")
    assert sweep.main(["--config", str(config), "--grid", "train.epochs=1,many"]) == 2
    assert "train.epochs" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "sweeps").exists()


def test_variants_and_configs_compare_at_equal_wall_time(tmp_path):
    """Two configs x a variant; a time budget ends each run (exported) after its first epoch."""
    for name, width in (("small", 4), ("wide", 6)):
        (tmp_path / f"{name}.yaml").write_text(
            TOY.replace("g_width: 4", f"g_width: {width}") + f"run_dir: {tmp_path / 'runs'}\n"
        )
    argv = [
        "--config",
        str(tmp_path / "small.yaml"),
        "--config",
        str(tmp_path / "wide.yaml"),
        "--variant",
        "model.top_k=true,model.top_k_min=0.5",
        "--set",
        "train.epochs=50",
        "--set",
        "train.time_budget_minutes=0.0001",
        "--name",
        "budget",
        "--num",
        "100",
    ]
    assert sweep.main(argv) == 0
    out_dir = tmp_path / "runs" / "sweeps" / "budget"
    markdown = (out_dir / "results.md").read_text()
    header = markdown.splitlines()[2]
    assert "| model | model.top_k | model.top_k_min |" in header
    assert markdown.count("| small__") == 1 and markdown.count("| wide__") == 1
    for name in ("small__top_k-true__top_k_min-0.5", "wide__top_k-true__top_k_min-0.5"):
        record = json.loads((out_dir / name / "sweep.json").read_text())
        assert record["error"] is None and "fid" in record["metrics"], record
        rows = (out_dir / name / "metrics.csv").read_text().splitlines()
        assert len(rows) == 2  # header + the one epoch the budget allowed, of 50
        assert (out_dir / name / "model.keras").is_file() and (out_dir / name / "samples" / "epoch_001.png").is_file()


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
