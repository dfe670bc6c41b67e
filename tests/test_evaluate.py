import dataclasses
import json
import math

import numpy as np
import pytest

from tfgen import evaluate, scoring, train, training
from tfgen.config import DataConfig, load_config
from tfgen.data import build_dataset
from tfgen.errors import RunError
from tfgen.models import get_model_class
from tfgen.runs import load_run

TRAINED = """\
model: {name: dcgan, latent_dim: 8, g_width: 8, d_width: 8}
data: {source: digits, image_size: 8, batch_size: 32}
train: {epochs: 4, sample_every: 2, jit_compile: false, distribute: none}
eval: {every_epochs: 2, metrics: 'fid,pr', num_samples: 200, best_metric: fid}
"""


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A digits DCGAN trained well enough to beat an untrained one, scored every 2 epochs while
    it trained (scoring reads the weights and changes none; it caches the trained classifier)."""
    tmp = tmp_path_factory.mktemp("evaluate")
    config = tmp / "eval_toy.yaml"
    config.write_text(TRAINED + f"run_dir: {tmp / 'runs'}\n")
    assert train.main(["--config", str(config)]) == 0
    return tmp / "runs" / "eval_toy"


def test_trained_generator_beats_untrained_on_fid_and_kid(trained_run):
    cfg, trained = load_run(trained_run)
    untrained = get_model_class("dcgan")(image_shape=(8, 8, 1), latent_dim=8, g_width=8, d_width=8, seed=0)
    data = build_dataset(cfg.data)
    cache = trained_run.parent / ".cache"
    key = scoring.dataset_key(cfg.data)
    extractor = scoring.make_extractor("classifier", data, cache, key)
    names = ("fid", "kid", "pr")
    good = scoring.evaluate_model(trained, data, names, 500, extractor, cache, key)
    bad = scoring.evaluate_model(untrained, data, names, 500, extractor, cache, key)
    assert good["fid"] < 0.7 * bad["fid"]
    assert good["kid"] < bad["kid"]
    assert good["recall"] >= bad["recall"]
    assert list(cache.glob("*_real.npz")), "real features are cached"


def test_cli_prints_table_with_real_floor_and_writes_eval_json(trained_run, capsys):
    assert evaluate.main(["--run", str(trained_run), "--metric", "fid,kid,is,pr", "--num", "300"]) == 0
    out = capsys.readouterr().out
    assert "real vs real" in out and "fid" in out and "precision" in out
    result = json.loads((trained_run / "eval.json").read_text())
    assert {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall"} <= set(result)
    floor = result["real_vs_real"]
    assert floor["fid"] < result["fid"]  # no generator beats the real data
    assert 1.0 <= result["is"] <= 10.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--metric", "fidd"], "unknown metric 'fidd'"),
        (["--num", "3"], "--num"),
        (["--option", "steps=3"], "--option: dcgan in "),
        (["--option", "steps=3"], "toy: no sampling option steps; its options: none"),
    ],
)
def test_cli_errors(trained_run, capsys, args, message):
    assert evaluate.main(["--run", str(trained_run), *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert evaluate.main(["--run", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_evaluation_during_training_logs_metrics_and_keeps_the_best(trained_run):
    run = trained_run
    import csv

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    fids = [float(r["fid"]) for r in rows]
    assert math.isnan(fids[0]) and math.isnan(fids[2]) and fids[1] > 0 and fids[3] > 0
    assert {"precision", "recall"} <= set(rows[0])
    best = json.loads((run / "best.json").read_text())
    assert best["value"] == pytest.approx(min(fids[1], fids[3]))
    assert list((run / "checkpoints" / "best").glob(f"ckpt-{best['epoch']}.index"))


def test_eval_config_is_validated(tmp_path):
    from tfgen.errors import ConfigError

    path = tmp_path / "x.yaml"
    path.write_text("eval: {metrics: 'kid', best_metric: fid}\n")
    with pytest.raises(ConfigError, match="eval.best_metric"):
        load_config(str(path))
    path.write_text("eval: {metrics: 'fid,xyz'}\n")
    with pytest.raises(ConfigError, match="unknown metric 'xyz'"):
        load_config(str(path))


def test_cache_key_tells_apart_every_setting_that_changes_the_real_images():
    base = DataConfig(
        source="kaggle", name="kvpratama/pokemon-images-dataset", path="pokemon", image_size=64, channels=3
    )
    keys = {scoring.dataset_key(base)} | {
        scoring.dataset_key(dataclasses.replace(base, **change))
        for change in (
            {"path": "pokemon_jpg"},
            {"name": "other/set"},
            {"image_size": 32},
            {"channels": 1},
            {"fit": "pad"},
            {"limit": 100},
            {"split": "test"},
        )
    }
    assert len(keys) == 8


def test_best_record_of_another_metric_or_not_finite_is_no_best(tmp_path):
    from tfgen.callbacks import read_best

    path = tmp_path / "best.json"
    assert read_best(path, "fid") is None
    path.write_text(json.dumps({"metric": "fid", "value": 96.7, "epoch": 3}))
    assert read_best(path, "fid") == 96.7
    assert read_best(path, "precision") is None  # a resume that changed eval.best_metric
    path.write_text(json.dumps({"metric": "fid", "value": float("nan"), "epoch": 3}))
    assert read_best(path, "fid") is None


def test_a_model_whose_samples_are_nan_is_an_error_not_a_score(trained_run):
    cfg, model = load_run(trained_run)
    kernel = model.generator.trainable_variables[0]
    kernel.assign(np.full(kernel.shape, np.nan, kernel.dtype))
    data = build_dataset(cfg.data)
    cache = trained_run.parent / ".cache"
    key = scoring.dataset_key(cfg.data)
    extractor = scoring.make_extractor("classifier", data, cache, key)
    with pytest.raises(RunError, match="NaN or infinite pixels"):
        scoring.evaluate_model(model, data, ("fid",), 100, extractor, cache, key)


def test_nan_samples_during_training_score_nan_and_training_goes_on(trained_run, tmp_path):
    import dataclasses as dc

    import tensorflow as tf

    cfg, model = load_run(trained_run)
    cfg = dc.replace(cfg, run_dir=str(trained_run.parent), eval=dc.replace(cfg.eval, metrics="fid,pr", num_samples=100))
    kernel = model.generator.trainable_variables[0]
    kernel.assign(np.full(kernel.shape, np.nan, kernel.dtype))
    step = tf.Variable(0, dtype=tf.int64)
    callback = training.evaluation_callback(
        cfg, build_dataset(cfg.data), tf.train.Checkpoint(model=model), step, 4, tmp_path
    )
    scores = callback.evaluate(model)
    assert set(scores) == {"fid", "precision", "recall"} and all(math.isnan(v) for v in scores.values())
