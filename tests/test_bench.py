"""The benchmark's pieces run and measure something; its figures are not asserted (no timed tests)."""

from tfgen import bench
from tfgen.config import load_config
from tfgen.data import build_dataset

TOY = ["data.image_size=8", "data.batch_size=16", "data.limit=64", "model.latent_dim=4",
       "model.g_width=4", "model.d_width=4", "train.distribute=none", "train.jit_compile=false"]


def test_train_naive_sampling_and_flops_measurements():
    cfg = load_config("digits_dcgan.yaml", TOY)
    data = build_dataset(cfg.data)
    rate, model = bench.train_throughput(cfg, data, steps=2)
    assert rate > 0
    assert bench.naive_throughput(model, data, steps=2) > 0
    assert bench.sampling_throughput(model, steps=2, batch=8) > 0
    # a DCGAN step is at least the generator's and discriminator's forward passes
    assert bench.flops_per_image(model, data) > 1000


def test_input_pipeline_and_peak():
    cold, warm, cfg, data = bench.input_pipeline(steps=2, num_images=256)
    assert cold > 0 and warm > 0 and data.image_shape == (64, 64, 3)
    peak, source = bench.machine_peak("float32")
    assert peak > 0 and "matmul" in source


def test_format_results_lists_every_figure():
    results = {"device": "cpu", "tensorflow": "x", "config": "c", "steps": 1,
               "train": [{"xla": True, "precision": "none", "replicas": 1, "images_per_s": 10.0}],
               "naive_baseline_images_per_s": 5.0, "ratio_to_naive": 2.0, "sampling_images_per_s": 100.0,
               "flops_per_train_image": 1e6, "peak_flops": {"value": 1e9, "source": "s"}, "fraction_of_peak": 0.01,
               "input_pipeline": {"shape": "s", "cold_images_per_s": 1.0, "warm_images_per_s": 2.0,
                                  "anime_dcgan_train_images_per_s": 0.5, "warm_ratio_to_train": 4.0}}
    text = bench.format_results(results)
    for figure in ("2.00x", "1e+06", "1.00%", "4.0x", "100"):
        assert figure in text
