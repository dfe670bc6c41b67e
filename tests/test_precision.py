"""`train.mixed_precision: auto`: measured once per model and device, cached, float32 unless faster."""

import json

import keras
import pytest

from tfgen import precision, train
from tfgen.config import load_config
from tfgen.data import build_dataset

KEY = {"model": {"name": "dcgan"}, "image_shape": [8, 8, 1], "batch_size": 8}


def never_built(policy):
    raise AssertionError("no timing run expected")


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "tfgen" / "mixed_precision.json"


def test_explicit_settings_pass_through():
    for setting in ("none", "mixed_float16", "mixed_bfloat16"):
        assert precision.resolve_mixed_precision(setting, KEY, never_built, None) == setting


def test_cpu_without_native_bf16_stays_float32_without_timing(monkeypatch, cache_home, caplog):
    monkeypatch.setattr(precision, "half_precision_candidate", lambda: (None, "CPU Old"))
    with caplog.at_level("INFO", logger="tfgen"):
        assert precision.resolve_mixed_precision("auto", KEY, never_built, None) == "none"
    assert "float32 (CPU Old has no native half-precision arithmetic)" in caplog.text
    assert not cache_home.exists()


@pytest.mark.parametrize("half_rate, expected", [(2.0, "mixed_bfloat16"), (1.02, "none"), (0.8, "none")])
def test_auto_times_both_once_and_caches_the_verdict(monkeypatch, cache_home, half_rate, expected):
    monkeypatch.setattr(precision, "half_precision_candidate", lambda: ("mixed_bfloat16", "CPU New"))
    built = []

    class Model:
        train_function = None

        def make_train_function(self):
            pass

    def build(policy):
        built.append((policy, keras.mixed_precision.global_policy().name))
        return Model()

    monkeypatch.setattr(precision, "steps_per_second",
                        lambda fn, it: half_rate if keras.mixed_precision.global_policy().name == "mixed_bfloat16" else 1.0)
    assert precision.resolve_mixed_precision("auto", KEY, build, lambda: None) == expected
    assert built == [("none", "float32"), ("mixed_bfloat16", "mixed_bfloat16")]
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after timing
    (entry,) = json.loads(cache_home.read_text()).values()
    assert entry["speedup"] == pytest.approx(half_rate)
    # the second run reads the verdict instead of timing again
    assert precision.resolve_mixed_precision("auto", KEY, never_built, None) == expected
    # another shape is another entry
    monkeypatch.setattr(precision, "steps_per_second", lambda fn, it: 1.0)
    precision.resolve_mixed_precision("auto", {**KEY, "image_shape": [16, 16, 1]}, build, lambda: None)
    assert len(json.loads(cache_home.read_text())) == 2


def test_real_timing_run_builds_and_steps_the_model(monkeypatch, cache_home, toy_config):
    monkeypatch.setattr(precision, "half_precision_candidate", lambda: ("mixed_bfloat16", "CPU Test"))
    cfg = load_config(str(toy_config), ["train.mixed_precision=auto"])
    data = build_dataset(cfg.data)
    jit, policy = train.speed_settings(cfg, data, train.distribute.make_strategy("none"))
    assert jit is False and policy in ("none", "mixed_bfloat16")
    (entry,) = json.loads(cache_home.read_text()).values()
    assert entry["speedup"] > 0
