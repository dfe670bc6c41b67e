"""`auto` XLA and mixed precision: measured once per model and device, cached, plain unless faster."""

import json
import os
import time

import keras
import pytest
import tensorflow as tf

from tfgen import autotune, distribute, experiment, fastconv, train
from tfgen.config import load_config
from tfgen.data import build_dataset

KEY = {"model": {"name": "dcgan"}, "image_shape": [8, 8, 1], "batch_size": 8}


def never_built(jit, policy, grad):
    raise AssertionError("no timing run expected")


@pytest.fixture
def cache_file(tmp_path, monkeypatch):
    """The cache in a fresh folder; the machine's load unknown, so verdicts are cached even
    while other work shares the CPUs with the tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(autotune, "cpu_times", lambda: None)
    return tmp_path / "tfgen" / "autotune.json"


def test_explicit_settings_pass_through_without_timing(cache_file):
    for policy in ("none", "mixed_float16", "mixed_bfloat16"):
        assert autotune.resolve([True], policy, KEY, never_built, None) == (True, policy, "native")
    assert not cache_file.exists()


def test_cpu_without_native_bf16_stays_float32(monkeypatch, cache_file, caplog):
    monkeypatch.setattr(autotune, "half_precision_candidate", lambda: (None, "CPU Old"))
    with caplog.at_level("INFO", logger="tfgen"):
        assert autotune.resolve([False], "auto", KEY, never_built, None) == (False, "none", "native")
    assert "float32 (CPU Old has no native half-precision arithmetic)" in caplog.text


class FakeModel:
    train_function = None

    def __init__(self, jit):
        self.jit = jit

    def make_train_function(self):
        self.train_function = self.jit  # read back by the fake timer below


@pytest.mark.parametrize(
    "rates, expected",
    [
        (
            {
                "XLA off, float32": 1.0,
                "XLA on, float32": 0.5,
                "XLA off, mixed_bfloat16": 2.0,
                "XLA on, mixed_bfloat16": 1.0,
            },
            (False, "mixed_bfloat16", "native"),
        ),
        (
            {
                "XLA off, float32": 1.0,
                "XLA on, float32": 1.5,
                "XLA off, mixed_bfloat16": 0.8,
                "XLA on, mixed_bfloat16": 1.2,
            },
            (True, "none", "native"),
        ),
        (
            {
                "XLA off, float32": 1.0,
                "XLA on, float32": 1.02,
                "XLA off, mixed_bfloat16": 1.03,
                "XLA on, mixed_bfloat16": 0.5,
            },
            (False, "none", "native"),
        ),  # within MIN_SPEEDUP: timing noise never moves off the plain setting
    ],
)
def test_auto_times_every_candidate_once_and_caches(monkeypatch, cache_file, rates, expected):
    monkeypatch.setattr(autotune, "half_precision_candidate", lambda: ("mixed_bfloat16", "CPU New"))
    built = []

    def build(jit, policy, grad):
        built.append((jit, policy, keras.mixed_precision.global_policy().name))
        return FakeModel(jit)

    def fake_rate(jit, iterator):
        return rates[autotune.describe(jit, keras.mixed_precision.global_policy().name.replace("float32", "none"))]

    monkeypatch.setattr(autotune, "warm_up", fake_rate)
    monkeypatch.setattr(autotune, "steps_per_second", fake_rate)
    assert autotune.resolve([False, True], "auto", KEY, build, lambda model: None) == expected
    assert [(j, p) for j, p, _ in built] == [
        (False, "none"),
        (True, "none"),
        (False, "mixed_bfloat16"),
        (True, "mixed_bfloat16"),
    ]
    assert all(active == ("float32" if p == "none" else p) for _, p, active in built)  # built under its policy
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after timing
    (cached,) = json.loads(cache_file.read_text()).values()
    assert cached == rates
    # the second run reads the verdict instead of timing again
    assert autotune.resolve([False, True], "auto", KEY, never_built, None) == expected
    # another shape is another entry
    autotune.resolve([False, True], "auto", {**KEY, "image_shape": [16, 16, 1]}, build, lambda model: None)
    assert len(json.loads(cache_file.read_text())) == 2


def test_a_verdict_timed_on_a_busy_machine_is_used_but_not_cached(monkeypatch, cache_file, caplog):
    monkeypatch.setattr(autotune, "half_precision_candidate", lambda: (None, "CPU Test"))
    rates = {"XLA off, float32": 1.0, "XLA on, float32": 2.0}
    monkeypatch.setattr(autotune, "warm_up", lambda jit, it: rates[autotune.describe(jit, "none")])
    monkeypatch.setattr(autotune, "steps_per_second", lambda jit, it: rates[autotune.describe(jit, "none")])
    # (busy, total, own) ticks before and after: 1,000 ticks pass, 700 busy, 300 of them ours
    readings = iter([(5_000, 20_000, 1_000), (5_700, 21_000, 1_300)])
    monkeypatch.setattr(autotune, "cpu_times", lambda: next(readings))
    with caplog.at_level("INFO", logger="tfgen"):
        assert autotune.resolve(
            [False, True], "auto", KEY, lambda jit, policy, grad: FakeModel(jit), lambda model: None
        ) == (True, "none", "native")
    assert "other processes kept 40% of the CPUs busy while timing" in caplog.text
    assert "cached in" not in caplog.text  # no line claims a cache that was not written
    assert not cache_file.exists()
    # a quiet machine (100 of 1,000 ticks someone else's): cached, and the log says where
    readings = iter([(5_000, 20_000, 1_000), (5_700, 21_000, 1_600)])
    caplog.clear()
    with caplog.at_level("INFO", logger="tfgen"):
        assert autotune.resolve(
            [False, True], "auto", KEY, lambda jit, policy, grad: FakeModel(jit), lambda model: None
        ) == (True, "none", "native")
    assert f"measurements cached in {cache_file}" in caplog.text
    assert list(json.loads(cache_file.read_text()).values()) == [rates]


def test_cpu_times_count_this_process_busy_time():
    before = autotune.cpu_times()
    if before is None:
        pytest.skip("no /proc here")
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # 0.3 s of our own CPU time
        pass
    after = autotune.cpu_times()
    busy, total, own = (a - b for a, b in zip(after, before))
    ticks = os.sysconf("SC_CLK_TCK")
    assert 0.2 * ticks <= own <= busy + 2 <= total + 2  # ours is part of the machine's busy time
    assert 0.0 <= autotune.others_share(before, after) <= 1.0
    assert autotune.others_share(None, after) is None


def test_real_timing_builds_and_steps_the_model(monkeypatch, cache_file, toy_config):
    monkeypatch.setattr(autotune, "half_precision_candidate", lambda: (None, "CPU Test"))
    cfg = load_config(str(toy_config), ["train.jit_compile=auto"])
    data = build_dataset(cfg.data)
    jit, policy, grad = experiment.speed_settings(cfg, data, distribute.make_strategy("none"))
    assert policy == "none" and jit in (False, True)
    assert grad == "native"  # the toy's layers are too thin for the matmul kernel gradient: not timed
    (cached,) = json.loads(cache_file.read_text()).values()
    assert set(cached) == {"XLA off, float32", "XLA on, float32"} and min(cached.values()) > 0


def test_a_failing_candidate_is_dropped_not_fatal(monkeypatch, cache_file, caplog):
    monkeypatch.setattr(autotune, "half_precision_candidate", lambda: (None, "CPU Test"))

    def build(jit, policy, grad):
        if jit:
            raise tf.errors.UnimplementedError(None, None, "XLA cannot compile op Foo")
        return FakeModel(jit)

    monkeypatch.setattr(autotune, "warm_up", lambda fn, it: 1.0)
    monkeypatch.setattr(autotune, "steps_per_second", lambda fn, it: 1.0)
    with caplog.at_level("WARNING", logger="tfgen"):
        assert autotune.resolve([False, True], "auto", KEY, build, lambda model: None) == (False, "none", "native")
    assert "XLA on, float32 fails for this model (XLA cannot compile op Foo)" in caplog.text


def test_the_run_records_what_auto_chose(monkeypatch, cache_file, toy_config, tmp_path):
    monkeypatch.setattr(autotune, "half_precision_candidate", lambda: ("mixed_bfloat16", "CPU Test"))

    def rate(fn, it):
        return 2.0 if keras.mixed_precision.global_policy().name == "mixed_bfloat16" else 1.0

    monkeypatch.setattr(autotune, "warm_up", rate)
    monkeypatch.setattr(autotune, "steps_per_second", rate)
    assert (
        train.main(["--config", str(toy_config), "--set", "train.mixed_precision=auto", "--set", "train.epochs=1"]) == 0
    )
    recorded = load_config(str(tmp_path / "runs" / "toy" / "config.yaml"))
    assert (recorded.train.jit_compile, recorded.train.mixed_precision) == (False, "mixed_bfloat16")
    keras.mixed_precision.set_global_policy("float32")


def test_matmul_kernel_gradients_are_timed_where_layers_can_take_them_and_recorded(
    monkeypatch, cache_file, toy_config, tmp_path
):
    """conv_kernel_grad auto: a model with layers that can take tfgen.fastconv's products is
    timed both ways; the faster is built, and written to the run's config.yaml for resumes."""
    monkeypatch.setattr(autotune, "half_precision_candidate", lambda: (None, "CPU Test"))
    monkeypatch.setattr(fastconv, "MIN_CHANNELS", 1)  # the toy's thin layers qualify
    monkeypatch.setattr(fastconv, "available", lambda: True)  # as on a CPU-only machine
    built = []
    real_build = experiment.build_model

    def build_model(cfg, *args, **kwargs):
        model = real_build(cfg, *args, **kwargs)
        built.append((cfg.train.conv_kernel_grad, len(fastconv.layers_taking_it(model))))
        return model

    monkeypatch.setattr(experiment, "build_model", build_model)
    monkeypatch.setattr(autotune, "warm_up", lambda fn, it: 1.0)
    rates = iter([1.0, 2.0] * 3)  # interleaved rounds: native, then the products, twice as fast
    monkeypatch.setattr(autotune, "steps_per_second", lambda fn, it: next(rates))
    assert train.main(["--config", str(toy_config), "--set", "train.epochs=1"]) == 0
    recorded = load_config(str(tmp_path / "runs" / "toy" / "config.yaml"))
    assert recorded.train.conv_kernel_grad == "matmul"
    (cached,) = json.loads(cache_file.read_text()).values()
    assert list(cached) == ["XLA off, float32", "XLA off, float32, matmul conv grads"]
    assert built[-1][0] == "matmul" and built[-1][1] > 0  # the run's model has them
    assert [grad for grad, _ in built[:-1]] == ["matmul", "native", "matmul"]  # probe, then the two timed
    assert all(n == 0 for grad, n in built if grad == "native")


def test_candidates_are_timed_in_interleaved_rounds_and_a_hopeless_one_only_warmed_up(monkeypatch):
    """Round-robin timing, so a machine that drifts in speed cannot favour one candidate;
    one far slower than the best at warm-up (XLA on a CPU) is not timed further."""
    warm = {False: 10.0, True: 1.0}
    timed = []
    monkeypatch.setattr(autotune, "warm_up", lambda jit, it: warm[jit])
    monkeypatch.setattr(autotune, "steps_per_second", lambda jit, it: timed.append((jit, it)) or 12.0 + len(timed))
    candidates = [(False, "none", "native"), (True, "none", "native"), (False, "mixed_bfloat16", "native")]
    rates = autotune._measure(candidates, lambda jit, policy, grad: FakeModel(jit), lambda model: model.jit, rounds=3)
    assert [jit for jit, _ in timed] == [False, False] * 3  # float32 and bf16 alternate; XLA is out
    assert rates == {"XLA off, float32": 17.0, "XLA on, float32": 1.0, "XLA off, mixed_bfloat16": 18.0}
    assert keras.mixed_precision.global_policy().name == "float32"


def test_timing_hides_tensorflows_retracing_warning_and_only_while_it_times(monkeypatch, caplog):
    """Each candidate's model brings its own train function built from the same code, which
    TensorFlow reports as excessive retracing; that paragraph is expected while timing only."""

    def traced_anew(value):  # a new tf.function from the same code each call, as Keras does per model
        @tf.function
        def step(x):
            return x + 1

        return step(tf.constant(float(value)))

    def build(jit, policy, grad):
        for value in range(4):
            traced_anew(value)
        tf.get_logger().warning("not about retracing")
        return FakeModel(jit)

    monkeypatch.setattr(autotune, "warm_up", lambda jit, it: 1.0)
    monkeypatch.setattr(autotune, "steps_per_second", lambda jit, it: 1.0)
    candidates = [(False, "none", "native"), (True, "none", "native")]
    with caplog.at_level("WARNING", logger="tensorflow"):
        autotune._measure(candidates, build, lambda model: model.jit, rounds=1)
    assert caplog.messages == ["not about retracing"] * 2

    def traced_anew_afterwards(value):  # TensorFlow warns at most twice per code location
        @tf.function
        def step(x):
            return x - 1

        return step(tf.constant(float(value)))

    with caplog.at_level("WARNING", logger="tensorflow"):
        for value in range(6):
            traced_anew_afterwards(value)
    assert any("triggered tf.function retracing" in m for m in caplog.messages)


def test_warm_up_compiles_then_times_a_warm_step():
    calls = []

    def step(iterator):
        calls.append(iterator)
        time.sleep(0.01)
        return {"loss": tf.constant(1.0)}

    assert 10 < autotune.warm_up(step, "it", warmup=3) < 100 and calls == ["it"] * 3
    assert 10 < autotune.steps_per_second(step, "it", steps=4) < 100 and len(calls) == 7


def test_a_slow_step_is_timed_fewer_times_a_round(monkeypatch):
    """A round times up to 8 steps, but no more than fit in ROUND_SECONDS by the first step's
    time, and always one: a 4-second step is timed once a round, not 8 times."""
    clock = {"now": 0.0}
    monkeypatch.setattr(autotune.time, "perf_counter", lambda: clock["now"])

    def train_function(seconds, calls):
        def step(iterator):
            clock["now"] += seconds
            calls.append(iterator)
            return {"loss": tf.constant(1.0)}

        return step

    for seconds, expected in ((0.01, 8), (0.5, 4), (4.0, 1)):
        calls = []
        rate = autotune.steps_per_second(train_function(seconds, calls), "batches", seconds=2.0)
        assert len(calls) == expected and calls[0] == "batches"
        assert rate == pytest.approx(1.0 / seconds)
