"""`tfgen bench [--steps 10] [--rounds 3] [--out bench.json] [--set key=value ...]`

Prints and writes (JSON) the throughput figures the README's performance table is built
from, all measured in the same process so ratios are fair, for the two DCGANs users run
(`CASES`: MNIST at 28 px, colour at 64 px):

- training images/second of tfgen's step as `tfgen.train` builds it by default (`auto`
  settings resolved), and with XLA off/on and float32 / half precision (float16 or bfloat16
  on a GPU, bfloat16 on a CPU);
- the reference users know: the Keras DCGAN example's loop (`KerasExampleGAN`) on the same
  networks, data and batch, and tfgen's default as a multiple of it (target: >= 1.3x);
- FLOPs per training image (from the step's graph) and the achieved fraction of the
  machine's peak: a datasheet figure for known GPUs, a measured matmul rate on a CPU
  (target: >= 50% for the 64 px DCGAN on a CPU);
- the folder pipeline's images/second on 64x64 JPEGs, cold (decoding) and warm (cached),
  against the 64 px DCGAN step it feeds (target: cold >= 3x the step);
- sampling images/second from the exported SavedModel.

Speed targets live here, never in timed tests.
"""

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from tfgen import autotune, cli, distribute, fastconv
from tfgen.config import load_config
from tfgen.data import build_dataset
from tfgen.experiment import build_model, speed_settings
from tfgen.export import export_saved_model

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


def interleaved_rates(runners, steps, rounds, min_seconds=2.0):
    """{label: best units/second} for `runners` ({label: (run_step, units per call)}).

    Every runner is warmed up (compiled) first, then all are timed in `rounds` interleaved
    rounds, keeping each one's best round: this machine's speed drifts by up to 2x within
    minutes, and timed one after another, a runner would be credited with the drift (one
    sequential run measured the same setting at 680 and 524 images/s). A round times at least
    `steps` calls and at least `min_seconds`, as a 28 px step is short enough for a scheduler
    hiccup to dominate 10 calls.
    """
    calls = {}
    for label, (run_step, _) in runners.items():
        _timed_steps(run_step, 0)
        calls[label] = max(steps, math.ceil(min_seconds / max(_timed_steps(run_step, 1, warmup=0), 1e-9)))
    best = dict.fromkeys(runners, 0.0)
    for _ in range(rounds):
        for label, (run_step, units) in runners.items():
            best[label] = max(best[label], calls[label] * units / _timed_steps(run_step, calls[label], warmup=0))
    return best


def pinned(jit, policy, grad):
    """The --set overrides that fix a run to one (XLA, precision, kernel gradient) setting."""
    return [
        f"train.jit_compile={str(jit).lower()}",
        f"train.mixed_precision={policy}",
        f"train.conv_kernel_grad={grad}",
    ]


def train_runner(cfg, data):
    """(run_step, images per call, model): tfgen's train step (Keras' compiled train function)
    for `cfg`, with `auto` settings resolved as `tfgen.train` resolves them."""
    strategy = distribute.make_strategy(cfg.train.distribute)
    jit, policy, grad = speed_settings(cfg, data, strategy)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, conv_kernel_grad=grad))
    keras.mixed_precision.set_global_policy(autotune.keras_policy(policy))
    try:  # layers keep the policy they were built under; the global one is only for building
        with strategy.scope():
            model = build_model(cfg, data.image_shape, len(data.class_names), jit, policy)
        iterator = iter(strategy.experimental_distribute_dataset(data.stream(0, model.real_batches_per_step)))
        model.make_train_function()
        train_function = model.train_function

        def run_step():
            logs = train_function(iterator)
            float(logs["d_loss"] if "d_loss" in logs else logs["loss"])  # wait for the step

        return run_step, cfg.data.batch_size * model.real_batches_per_step, model
    finally:
        keras.mixed_precision.set_global_policy("float32")


class KerasExampleGAN(keras.Model):
    """The reference loop users copy: keras-io's `dcgan_overriding_train_step` example.

    Its `train_step`, verbatim in substance: one D pass on fakes and reals concatenated (with
    the example's noisy labels), then a G update through D on a second batch of fakes;
    compiled with Keras' defaults. Given tfgen's own G and D, it is the baseline tfgen's
    step must beat on the same networks, data and batch.
    """

    def __init__(self, generator, discriminator, latent_dim):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.seed_generator = keras.random.SeedGenerator(1337)
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def compile(self, d_optimizer, g_optimizer):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer

    def train_step(self, data):
        real_images = data[0]
        batch_size = tf.shape(real_images)[0]
        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        generated = self.generator(z, training=True)
        combined = tf.concat([generated, real_images], axis=0)
        labels = tf.concat([tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))], axis=0)
        labels += 0.05 * keras.random.uniform(tf.shape(labels), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(combined, training=True))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            predictions = self.discriminator(self.generator(z, training=True), training=True)
            g_loss = self.loss_fn(tf.zeros((batch_size, 1)), predictions)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {"d_loss": self.d_loss_tracker.result(), "g_loss": self.g_loss_tracker.result()}


# tfgen's layers -> the stock Keras layers users' code has.
STOCK = {fastconv.Conv2D: keras.layers.Conv2D, fastconv.Conv2DTranspose: keras.layers.Conv2DTranspose}


def stock_layer(layer):
    """A fresh copy of `layer` as users' Keras code has it: tfgen's convolutions (`fastconv`)
    become Keras' own, so the example runs the gradients Keras ships."""
    cls = type(layer)
    return STOCK.get(cls, cls).from_config(layer.get_config())


def example_runner(model, data):
    """(run_step, images per call) of the Keras example's loop on copies of `model`'s G and D
    (same data) made of stock Keras layers (`stock_layer`); the copies keep the networks'
    dtype policies."""
    example = KerasExampleGAN(
        keras.models.clone_model(model.generator, clone_function=stock_layer),
        keras.models.clone_model(model.discriminator, clone_function=stock_layer),
        model.latent_dim,
    )
    example.compile(keras.optimizers.Adam(2e-4, 0.5), keras.optimizers.Adam(2e-4, 0.5))
    iterator = iter(data.stream(0))
    example.make_train_function()
    train_function = example.train_function
    return (lambda: float(train_function(iterator)["d_loss"])), data.batch_size


def flops_per_image(model, data):
    """Float operations of one train step divided by the batch size (from the step's graph).

    TensorFlow's profiler counts the ops, except the convolutions, which `conv_flops`
    recounts: its registry sizes their kernel gradients and transposed convolutions by the
    larger image, which overcounted the 28 px DCGAN step by 1.7x (a 7 -> 4 px layer's
    gradients 3x, a 4 -> 7 px transposed convolution's 3x).
    """
    # TF's private profiler: imported only when FLOPs are counted
    from tensorflow.python.profiler import model_analyzer, option_builder  # noqa: PLC0415
    from tensorflow.python.util import deprecation  # noqa: PLC0415

    spec = tf.TensorSpec([data.batch_size, *data.image_shape], tf.float32)
    labels = tf.TensorSpec([data.batch_size], tf.int64)
    graph = tf.function(model.train_step).get_concrete_function((spec, labels)).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    with deprecation.silence():  # its registry calls a TF1 helper that warns about itself
        profile = model_analyzer.profile(graph, options=options)
    total = profile.total_float_ops
    for node in profile.children:
        op = graph.get_operation_by_name(node.name)
        if op.type in CONV_OPS:
            total += conv_flops(op) - node.total_float_ops
    return total / data.batch_size


CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")


def conv_flops(op):
    """2 x multiply-adds of a convolution op (CONV_OPS): all three run the same products,
    one per position of the convolution's output y, kernel tap and input channel, for
    each output channel (y is the op's output for Conv2D, its out_backprop input for the
    gradients)."""
    kernel = op.outputs[0].shape if op.type == "Conv2DBackpropFilter" else op.inputs[1].shape
    y = op.outputs[0] if op.type == "Conv2D" else op.inputs[2]
    return 2 * y.shape.num_elements() * kernel[0] * kernel[1] * kernel[2]


def machine_peak(precision):
    """(peak FLOP/s or None, how it was obtained, run_step or None): a datasheet figure for
    this machine's first GPU; on a CPU, a 2048x2048 matmul at `precision`, whose run_step
    (2 * 2048**3 FLOPs per call) `bench_case` times beside the training steps."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "")
        for key, peaks in GPU_PEAKS.items():
            if key in name:
                return peaks[precision] * 1e12, f"{name} datasheet", None
        return None, f"{name} (no datasheet figure)", None
    dtype = tf.bfloat16 if precision == "mixed_bfloat16" else tf.float32
    a = tf.cast(tf.random.normal([2048, 2048]), dtype)
    matmul = tf.function(lambda: tf.linalg.matmul(a, a))
    run_step = lambda: matmul().numpy()  # noqa: E731
    seconds = _timed_steps(run_step, 10)
    return 10 * MATMUL_FLOPS / seconds, f"measured {dtype.name} 2048x2048 matmul", run_step


MATMUL_FLOPS = 2 * 2048**3


def write_jpeg_folder(folder, num_images):
    """`num_images` random 64x64 JPEGs in `folder` (the anime config's shape)."""
    rng = np.random.default_rng(0)
    for i in range(num_images):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(f"{folder}/{i:05d}.jpg")


def input_pipeline(folder, steps):
    """(cold, warm, cfg, data): images/second of the folder pipeline on `folder`, batch 128.

    Cold is the first pass (decoding, resizing, filling the cache); warm reads the cache.
    """
    cfg = load_config("anime_dcgan.yaml", ["data.source=folder", f"data.path={folder}"])
    start = time.perf_counter()
    data = build_dataset(cfg.data)
    per_epoch = data.steps_per_epoch
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
        z = tf.random.normal([batch, *model.noise_shape])
        seconds = _timed_steps(lambda: list(generate(z=z).values())[0].numpy(), steps)
        return steps * batch / seconds


# The two DCGANs the speed targets are set on: tfgen's DCGAN networks at the sizes users run.
CASES = {
    "mnist 28 px DCGAN": (
        "mnist5k_dcgan.yaml",
        ["model.latent_dim=100", "model.g_width=64", "model.d_width=64", "data.batch_size=64"],
    ),
    "colour 64 px DCGAN": ("pokemon_dcgan.yaml", ["model.d_dropout=0", "data.batch_size=64"]),
}


EXAMPLE, EXAMPLE_SAME, PEAK = "Keras example loop", "Keras example loop, default precision", "matmul peak"


def bench_case(name, args, folder):
    """One CASES entry: tfgen's step per option, the Keras example's loop, FLOPs and peak share."""
    config, overrides = CASES[name]
    overrides = [*overrides, *args.set, "train.distribute=none"]
    if "64 px" in name:  # any 64x64 colour folder will do for speed: the generated JPEGs
        overrides += ["data.source=folder", f"data.path={folder}"]
    # Half precision only where the device has it natively: emulated, it only costs bench time.
    precisions = ["none"] + [p for p in [autotune.half_precision_candidate()[0]] if p]
    case = {"config": config, "overrides": overrides, "train": []}
    default_cfg = load_config(config, overrides)
    data = build_dataset(default_cfg.data, seed=default_cfg.train.seed)
    default = speed_settings(default_cfg, data, distribute.make_strategy("none"))
    policy = default[1]
    # XLA off / on x float32 / half precision with TensorFlow's kernel gradients, and the
    # matmul ones (`tfgen.fastconv`) without XLA, where they can be used at all.
    candidates = [(x, p, "native") for x in (False, True) for p in precisions]
    candidates += [(False, p, "matmul") for p in precisions if fastconv.available()]
    # The default is pinned to what `auto` resolved above, so it is not resolved (and logged) twice.
    variants = [(f"default ({autotune.describe(*default)})", pinned(*default))] + [
        (autotune.describe(*candidate), pinned(*candidate)) for candidate in candidates
    ]
    runners, models = {}, {}
    for label, settings in variants:
        run_step, images, models[label] = train_runner(load_config(config, [*overrides, *settings]), data)
        runners[label] = (run_step, images)
    default_label = variants[0][0]
    default_model = models[default_label]
    plain_model = models[autotune.describe(False, "none")]  # XLA off, float32, TensorFlow's gradients
    # The example as users copy it runs float32 (Keras' default policy); clone_model keeps a
    # network's dtype policy, so the float32 networks are cloned for it. The same loop at the
    # default's precision separates the step's own gain from the precision's.
    runners[EXAMPLE] = example_runner(plain_model, data)
    if policy != "none":
        runners[EXAMPLE_SAME] = example_runner(default_model, data)
    peak, source, matmul = machine_peak(autotune.keras_policy(policy))
    if matmul:  # a measured peak drifts with the machine like the steps: time it among them
        runners[PEAK] = (matmul, MATMUL_FLOPS)
    log.info(
        "%s: timing %d settings in %d interleaved rounds of at least %d steps and 2 s",
        name,
        len(runners),
        args.rounds,
        args.steps,
    )
    rates = interleaved_rates(runners, args.steps, args.rounds)
    for label, _ in variants:
        case["train"].append({"setting": label, "images_per_s": rates[label]})
        log.info("%s, %s: %.0f images/s", name, label, rates[label])
    default_rate, example = rates[default_label], rates[EXAMPLE]
    same = rates.get(EXAMPLE_SAME, example)
    case.update(
        example_images_per_s=example,
        ratio_to_example=default_rate / example,
        example_same_precision_images_per_s=same,
        ratio_same_precision=default_rate / same,
    )
    log.info(
        "%s, Keras example loop: %.0f images/s (float32), %.0f (%s); tfgen default is %.2fx / %.2fx",
        name,
        example,
        same,
        policy,
        default_rate / example,
        default_rate / same,
    )
    # counted on TensorFlow's gradients: the matmul ones multiply some zero-padded rows too
    flops = flops_per_image(plain_model, data)
    peak = rates.get(PEAK, peak)
    case.update(flops_per_train_image=flops, peak_flops={"value": peak, "source": source})
    if peak:
        case["fraction_of_peak"] = flops * default_rate / peak
    return case, default_model


def bench(args):
    """All measurements as a dict (also printed as a table)."""
    gpus = tf.config.list_logical_devices("GPU")
    results = {
        "device": gpus[0].name if gpus else "cpu",
        "tensorflow": tf.__version__,
        "steps": args.steps,
        "rounds": args.rounds,
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as folder:
        write_jpeg_folder(folder, 1024)
        for name in CASES:
            results["cases"][name], model = bench_case(name, args, folder)
        results["sampling_images_per_s"] = sampling_throughput(model, args.steps)
        cold, warm, cfg, data = input_pipeline(folder, args.steps)
    step_rate = results["cases"]["colour 64 px DCGAN"]["train"][0]["images_per_s"]
    results["input_pipeline"] = {
        "shape": "64x64x3 JPEG, batch 128",
        "cold_images_per_s": cold,
        "warm_images_per_s": warm,
        "train_images_per_s": step_rate,
        "cold_ratio_to_train": cold / step_rate,
    }
    return results


def format_results(r):
    lines = [
        f"device: {r['device']}  (TensorFlow {r['tensorflow']}, best of {r['rounds']} interleaved rounds "
        f"of at least {r['steps']} steps and 2 s)"
    ]
    for name, case in r["cases"].items():
        lines += [
            "",
            f"{name} ({case['config']} {' '.join(case['overrides'])})",
            "  training                        images/s",
        ]
        for t in case["train"]:
            lines.append(f"  {t['setting']:<30}{t['images_per_s']:>10.0f}")
        lines.append(f"  {'Keras example loop, float32':<30}{case['example_images_per_s']:>10.0f}")
        lines.append(f"  {'tfgen default / example':<30}{case['ratio_to_example']:>9.2f}x  (target >= 1.3x)")
        if case["example_same_precision_images_per_s"] != case["example_images_per_s"]:
            lines.append(
                f"  {'example at the default precision':<30}{case['example_same_precision_images_per_s']:>10.0f}"
            )
            lines.append(f"  {'tfgen default / that':<30}{case['ratio_same_precision']:>9.2f}x")
        lines.append(f"  FLOPs per training image      {case['flops_per_train_image']:>10.3g}")
        if "fraction_of_peak" in case:
            peak = case["peak_flops"]
            lines.append(
                f"  achieved fraction of peak     {100 * case['fraction_of_peak']:>9.1f}%  "
                f"(peak {peak['value'] / 1e9:.0f} GFLOP/s, {peak['source']})"
            )
    p = r["input_pipeline"]
    lines += [
        "",
        f"sampling from the SavedModel (64 px)    {r['sampling_images_per_s']:>10.0f} images/s",
        f"input pipeline ({p['shape']}): cold {p['cold_images_per_s']:.0f}, "
        f"warm {p['warm_images_per_s']:.0f} images/s;",
        f"  cold pipeline / 64 px DCGAN step = {p['cold_ratio_to_train']:.1f}x (target >= 3x)",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tfgen bench", description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--steps",
        type=int,
        default=10,
        help="timed steps per setting and round, at least (a round also lasts at least 2 s)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (each setting keeps its best)")
    parser.add_argument("--out", default="bench.json")
    cli.add_verbose_argument(parser)
    return cli.run(_bench_command, parser.parse_args(argv))


def _bench_command(args):
    results = bench(args)
    print(format_results(results))
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
