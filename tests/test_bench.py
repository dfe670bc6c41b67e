"""The benchmark's pieces run and measure something; its figures are not asserted (no timed tests)."""

import numpy as np
import tensorflow as tf

from tfgen import bench
from tfgen.config import load_config
from tfgen.data import build_dataset

TOY = [
    "data.image_size=8",
    "data.batch_size=16",
    "data.limit=64",
    "model.latent_dim=4",
    "model.g_width=4",
    "model.d_width=4",
    "train.distribute=none",
    "train.jit_compile=false",
]


def test_train_example_sampling_and_flops_measurements(caplog):
    cfg = load_config("digits_dcgan.yaml", TOY)
    data = build_dataset(cfg.data)
    train_step, images, model = bench.train_runner(cfg, data)
    before = model.generator.get_weights()[0].copy()
    rates = bench.interleaved_rates(
        {"tfgen": (train_step, images), "example": bench.example_runner(model, data)}, steps=2, rounds=2
    )
    assert images == 16 and rates["tfgen"] > 0 and rates["example"] > 0
    assert not np.allclose(model.generator.get_weights()[0], before)  # the timed step really trains
    assert bench.sampling_throughput(model, steps=2, batch=8) > 0
    # a DCGAN step is at least the generator's and discriminator's forward passes; counting
    # them prints no TensorFlow deprecation notice (the profiler's own TF1 helper)
    with caplog.at_level("WARNING", logger="tensorflow"):
        assert bench.flops_per_image(model, data) > 1000
    assert not [m for m in caplog.messages if "deprecated" in m]


def test_keras_example_loop_trains_copies_of_the_same_networks():
    cfg = load_config("digits_dcgan.yaml", TOY)
    data = build_dataset(cfg.data)
    _, _, model = bench.train_runner(cfg, data)
    g, d = model.generator.get_weights(), model.discriminator.get_weights()
    example = bench.KerasExampleGAN(
        *(
            bench.keras.models.clone_model(n, clone_function=bench.stock_layer)
            for n in (model.generator, model.discriminator)
        ),
        model.latent_dim,
    )
    # the baseline is users' Keras code: stock convolutions, none of tfgen's faster ones
    kinds = {type(layer) for net in (example.generator, example.discriminator) for layer in net.layers}
    assert {bench.keras.layers.Conv2D, bench.keras.layers.Conv2DTranspose} <= kinds
    assert not kinds & set(bench.STOCK)
    assert {type(layer) for layer in model.discriminator.layers} & set(bench.STOCK)  # tfgen's own has them
    example.compile(bench.keras.optimizers.Adam(1e-3), bench.keras.optimizers.Adam(1e-3))
    assert [w.shape for w in example.generator.get_weights()] == [w.shape for w in g]
    assert [w.shape for w in example.discriminator.get_weights()] == [w.shape for w in d]
    before = [w.copy() for w in example.generator.get_weights() + example.discriminator.get_weights()]
    example.fit(data.stream(0), steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    after = example.generator.get_weights() + example.discriminator.get_weights()
    assert all(not np.allclose(a, b) for a, b in zip(after, before) if a.ndim > 1)  # every kernel moved
    np.testing.assert_array_equal(model.generator.get_weights()[0], g[0])  # tfgen's own G untouched


def test_convolutions_are_counted_once_per_output_position_tap_and_channel():
    """The 28 px D's 7 -> 4 px 'valid' layer: its two gradients run the forward's products
    (TensorFlow's profiler registry counts them by the 7 px side, 3x too many)."""

    @tf.function
    def step(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            loss = tf.reduce_sum(tf.square(tf.nn.conv2d(x, w, 1, "VALID")))
        return tape.gradient(loss, [x, w])

    graph = step.get_concrete_function(tf.TensorSpec([2, 7, 7, 3]), tf.TensorSpec([4, 4, 3, 5])).graph
    flops = {op.type: bench.conv_flops(op) for op in graph.get_operations() if op.type in bench.CONV_OPS}
    assert flops == dict.fromkeys(bench.CONV_OPS, 2 * (2 * 4 * 4 * 5) * (4 * 4 * 3))


def test_input_pipeline_and_peak(tmp_path):
    bench.write_jpeg_folder(tmp_path, 256)
    cold, warm, cfg, data = bench.input_pipeline(tmp_path, steps=2)
    assert cold > 0 and warm > 0 and data.image_shape == (64, 64, 3)
    peak, source, matmul = bench.machine_peak("float32")
    assert peak > 0 and "float32" in source and "matmul" in source
    assert matmul().shape == (2048, 2048)
    peak16, source16, _ = bench.machine_peak("mixed_bfloat16")
    assert peak16 > 0 and "bfloat16" in source16


def fake_runners(monkeypatch, seconds_per_call):
    """Runners whose i-th call takes seconds_per_call[label][i] on a fake clock; (runner, calls)."""
    clock, calls = {"t": 0.0}, []
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock["t"])

    def runner(label):
        def run_step():
            clock["t"] += seconds_per_call[label][sum(c == label for c in calls)]
            calls.append(label)

        return run_step

    return runner, calls


def test_rates_are_timed_in_interleaved_rounds_keeping_each_best(monkeypatch):
    """A runner that speeds up after round 1 gets its best round; nobody is timed back to back."""
    # each: 2 warm-up calls, 1 calibration call, then 3 rounds of 3
    runner, calls = fake_runners(
        monkeypatch, {"a": [0, 0, 1.0] + [1.0] * 3 + [0.5] * 6, "b": [0, 0, 0.25] + [0.25] * 9}
    )
    rates = bench.interleaved_rates({"a": (runner("a"), 4), "b": (runner("b"), 2)}, steps=3, rounds=3, min_seconds=0)
    assert calls == ["a"] * 3 + ["b"] * 3 + (["a"] * 3 + ["b"] * 3) * 3
    assert rates == {"a": 3 * 4 / 1.5, "b": 3 * 2 / 0.75}  # each one's best round


def test_a_round_lasts_at_least_min_seconds(monkeypatch):
    runner, calls = fake_runners(monkeypatch, {"a": [0.25] * 20})
    rates = bench.interleaved_rates({"a": (runner("a"), 1)}, steps=2, rounds=2, min_seconds=1.0)
    assert len(calls) == 3 + 2 * 4  # 0.25 s calls: 4 per round instead of 2
    assert rates == {"a": 4.0}


def test_format_results_lists_every_figure():
    case = {
        "config": "c.yaml",
        "overrides": ["a=b"],
        "train": [{"setting": "default (XLA off, none)", "images_per_s": 10.0}],
        "example_images_per_s": 5.0,
        "ratio_to_example": 2.0,
        "example_same_precision_images_per_s": 8.0,
        "ratio_same_precision": 1.25,
        "flops_per_train_image": 1e6,
        "peak_flops": {"value": 1e9, "source": "s"},
        "fraction_of_peak": 0.01,
    }
    results = {
        "device": "cpu",
        "tensorflow": "x",
        "steps": 1,
        "rounds": 3,
        "cases": {"mnist 28 px DCGAN": case},
        "sampling_images_per_s": 100.0,
        "input_pipeline": {
            "shape": "s",
            "cold_images_per_s": 1.0,
            "warm_images_per_s": 2.0,
            "train_images_per_s": 0.5,
            "cold_ratio_to_train": 4.0,
        },
    }
    text = bench.format_results(results)
    for figure in (
        "2.00x",
        "1.25x",
        "1e+06",
        "1.0%",
        "4.0x",
        "100",
        "Keras example loop",
        "mnist 28 px DCGAN",
        "best of 3 interleaved rounds",
    ):
        assert figure in text
