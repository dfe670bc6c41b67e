"""`python -m tfgen.bench [--config digits_dcgan.yaml] [--steps 20] [--out bench.json]`

Prints and writes (JSON) the throughput figures the README's performance table is built
from, all measured in the same process so ratios are fair:

- training images/second of the config's model for each option: XLA off/on, mixed
  precision (float16 on a GPU, bfloat16 on a CPU), 1 vs N replicas where N devices exist;
- the same networks trained by a naive baseline, a plain `tf.function` loop without Keras,
  and the ratio of tfgen's default setting to it;
- the input pipeline's own images/second on a folder of 64x64 JPEGs (the anime config's
  shape), cold (decoding) and warm (cached), against the 64x64 DCGAN step it feeds;
- sampling images/second from the exported SavedModel;
- FLOPs per training image (from the step's graph) and the achieved fraction of the
  machine's peak: a datasheet figure for known GPUs, a measured matmul rate on a CPU.

Speed targets live here, never in timed tests.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from tfgen import cli, distribute, losses
from tfgen.config import load_config
from tfgen.data import build_dataset
from tfgen.export import export_saved_model
from tfgen.train import build_model

log = cli.log

# Dense tensor-core peaks (TFLOP/s) from NVIDIA's datasheets, by precision.
GPU_PEAKS = {
    "H100": {"float32": 67.0, "mixed_float16": 989.0, "mixed_bfloat16": 989.0},
    "H200": {"float32": 67.0, "mixed_float16": 989.0, "mixed_bfloat16": 989.0},
    "A100": {"float32": 19.5, "mixed_float16": 312.0, "mixed_bfloat16": 312.0},
}


def _timed_steps(run_step, steps, warmup=2):
    """Seconds for `steps` calls of run_step() after `warmup` calls (compilation)."""
    for _ in range(warmup):
        run_step()
    start = time.perf_counter()
    for _ in range(steps):
        run_step()
    return time.perf_counter() - start


def train_throughput(cfg, data, steps):
    """Images/second of tfgen's train step (Keras' compiled train function) for `cfg`."""
    keras.mixed_precision.set_global_policy(
        "float32" if cfg.train.mixed_precision == "none" else cfg.train.mixed_precision
    )
    try:
        strategy = distribute.make_strategy(cfg.train.distribute)
        jit = distribute.resolve_jit_compile(cfg.train.jit_compile, strategy)
        with strategy.scope():
            model = build_model(cfg, data.image_shape, len(data.class_names), jit)
        iterator = iter(strategy.experimental_distribute_dataset(data.stream(0)))
        model.make_train_function()
        train_function = model.train_function

        def run_step():
            logs = train_function(iterator)
            float(logs["d_loss"] if "d_loss" in logs else logs["loss"])  # wait for the step

        seconds = _timed_steps(run_step, steps)
        return steps * cfg.data.batch_size / seconds, model
    finally:
        keras.mixed_precision.set_global_policy("float32")


def naive_throughput(model, data, steps):
    """Images/second of the same G and D trained by a plain tf.function loop (no Keras fit)."""
    generator = keras.models.clone_model(model.generator)
    discriminator = keras.models.clone_model(model.discriminator)
    g_opt, d_opt = keras.optimizers.Adam(2e-4, 0.5), keras.optimizers.Adam(2e-4, 0.5)
    iterator = iter(data.stream(0))
    latent_dim = model.latent_dim

    @tf.function
    def step(real):
        z = tf.random.normal([tf.shape(real)[0], latent_dim])
        with tf.GradientTape() as tape:
            fake = generator(z, training=True)
            d_loss = tf.reduce_mean(losses.non_saturating_d(discriminator(real, training=True),
                                                            discriminator(fake, training=True)))
        d_opt.apply_gradients(zip(tape.gradient(d_loss, discriminator.trainable_variables),
                                  discriminator.trainable_variables))
        with tf.GradientTape() as tape:
            fake = generator(tf.random.normal([tf.shape(real)[0], latent_dim]), training=True)
            g_loss = tf.reduce_mean(losses.non_saturating_g(discriminator(fake, training=True)))
        g_opt.apply_gradients(zip(tape.gradient(g_loss, generator.trainable_variables),
                                  generator.trainable_variables))
        return d_loss

    def run_step():
        float(step(next(iterator)[0]))

    return steps * data.batch_size / _timed_steps(run_step, steps)


def flops_per_image(model, data):
    """Float operations of one train step divided by the batch size (from the step's graph)."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    spec = tf.TensorSpec([data.batch_size, *data.image_shape], tf.float32)
    labels = tf.TensorSpec([data.batch_size], tf.int64)
    concrete = tf.function(model.train_step).get_concrete_function((spec, labels))
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = model_analyzer.profile(concrete.graph, options=options)
    return profile.total_float_ops / data.batch_size


def machine_peak(precision):
    """(peak FLOP/s, how it was obtained) for this machine's first GPU, or a measured CPU matmul."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "")
        for key, peaks in GPU_PEAKS.items():
            if key in name:
                return peaks[precision] * 1e12, f"{name} datasheet"
        return None, f"{name} (no datasheet figure)"
    a = tf.random.normal([2048, 2048])
    matmul = tf.function(lambda: tf.linalg.matmul(a, a))
    seconds = _timed_steps(lambda: matmul().numpy(), 10)
    return 10 * 2 * 2048**3 / seconds, "measured float32 2048x2048 matmul"


def input_pipeline(steps, num_images=1024):
    """(cold, warm) images/second of the folder pipeline on 64x64 JPEGs, batch 128."""
    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        for i in range(num_images):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(f"{folder}/{i:05d}.jpg")
        cfg = load_config("anime_dcgan.yaml", ["data.source=folder", f"data.path={folder}"])
        data = build_dataset(cfg.data)
        per_epoch = data.steps_per_epoch
        start = time.perf_counter()
        for _ in data.dataset:  # first pass: decode + resize + fill the cache
            pass
        cold = per_epoch * cfg.data.batch_size / (time.perf_counter() - start)
        iterator = iter(data.stream(data.steps_per_epoch))
        seconds = _timed_steps(lambda: next(iterator)[0].numpy(), steps)
        return cold, steps * cfg.data.batch_size / seconds, cfg, data


def sampling_throughput(model, steps, batch=256):
    """Images/second from the SavedModel export's generate signature."""
    with tempfile.TemporaryDirectory() as folder:
        export_saved_model(model, Path(folder) / "sm")
        generate = tf.saved_model.load(str(Path(folder) / "sm")).signatures["generate"]
        z = tf.random.normal([batch, model.latent_dim])
        seconds = _timed_steps(lambda: list(generate(z=z).values())[0].numpy(), steps)
        return steps * batch / seconds


def bench(args):
    """All measurements as a dict (also printed as a table)."""
    gpus = tf.config.list_logical_devices("GPU")
    results = {"device": gpus[0].name if gpus else "cpu", "tensorflow": tf.__version__, "config": args.config,
               "steps": args.steps, "train": []}
    half = "mixed_float16" if gpus else "mixed_bfloat16"
    variants = [("none", False, "none"), ("none", True, "none"), ("none", True, half)]
    if len(gpus) > 1:
        variants.append(("mirrored", True, half))
    default_model = None
    for dist, xla, precision in variants:
        cfg = load_config(args.config, [*args.set, f"train.distribute={dist}", f"train.jit_compile={str(xla).lower()}",
                                        f"train.mixed_precision={precision}"])
        data = build_dataset(cfg.data, seed=cfg.train.seed)
        rate, model = train_throughput(cfg, data, args.steps)
        replicas = distribute.make_strategy(dist).num_replicas_in_sync
        results["train"].append({"xla": xla, "precision": precision, "replicas": replicas, "images_per_s": rate})
        log.info("train: XLA %s, %s, %d replica(s): %.0f images/s", xla, precision, replicas, rate)
        if (dist, xla, precision) == ("none", True, "none"):
            default_model, default_rate, default_data = model, rate, data

    if hasattr(default_model, "discriminator") and hasattr(default_model, "generator"):
        naive = naive_throughput(default_model, default_data, args.steps)
        results["naive_baseline_images_per_s"] = naive
        results["ratio_to_naive"] = default_rate / naive
        log.info("naive tf.function loop: %.0f images/s; tfgen (XLA) is %.2fx", naive, default_rate / naive)
        results["sampling_images_per_s"] = sampling_throughput(default_model, args.steps)

    flops = flops_per_image(default_model, default_data)
    peak, source = machine_peak("float32")
    results["flops_per_train_image"] = flops
    results["peak_flops"] = {"value": peak, "source": source}
    if peak:
        results["fraction_of_peak"] = flops * default_rate / peak

    cold, warm, anime_cfg, anime_data = input_pipeline(args.steps)
    anime_rate, _ = train_throughput(anime_cfg, anime_data, max(2, args.steps // 10))
    results["input_pipeline"] = {
        "shape": "64x64x3 JPEG, batch 128", "cold_images_per_s": cold, "warm_images_per_s": warm,
        "anime_dcgan_train_images_per_s": anime_rate, "warm_ratio_to_train": warm / anime_rate,
    }
    return results


def format_results(r):
    lines = [f"device: {r['device']}  (TensorFlow {r['tensorflow']}, {r['config']}, {r['steps']} timed steps)", "",
             "training                                images/s"]
    for t in r["train"]:
        lines.append(f"  XLA {'on ' if t['xla'] else 'off'} {t['precision']:<15} {t['replicas']} replica(s) {t['images_per_s']:>10.0f}")
    if "naive_baseline_images_per_s" in r:
        lines.append(f"  naive tf.function loop (no XLA)         {r['naive_baseline_images_per_s']:>10.0f}")
        lines.append(f"  tfgen default / naive                   {r['ratio_to_naive']:>10.2f}x")
        lines.append(f"sampling from the SavedModel             {r['sampling_images_per_s']:>10.0f}")
    peak = r["peak_flops"]
    lines.append(f"FLOPs per training image                 {r['flops_per_train_image']:>10.3g}")
    if "fraction_of_peak" in r:
        lines.append(f"achieved fraction of peak                {100 * r['fraction_of_peak']:>9.2f}%  "
                     f"(peak {peak['value'] / 1e9:.0f} GFLOP/s, {peak['source']})")
    p = r["input_pipeline"]
    lines += [f"input pipeline ({p['shape']}): cold {p['cold_images_per_s']:.0f}, warm {p['warm_images_per_s']:.0f} images/s",
              f"  64x64 DCGAN train step: {p['anime_dcgan_train_images_per_s']:.0f} images/s; "
              f"pipeline/step = {p['warm_ratio_to_train']:.1f}x"]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tfgen.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="digits_dcgan.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement (after 2 warm-up steps)")
    parser.add_argument("--out", default="bench.json")
    return cli.run(_bench_command, parser.parse_args(argv))


def _bench_command(args):
    results = bench(args)
    print(format_results(results))
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
