"""`train.jit_compile`, `train.mixed_precision` and `train.conv_kernel_grad` `auto`: the
fastest setting, measured.

Neither XLA, nor half precision, nor `tfgen.fastconv`'s matmul kernel gradients are a
rule-of-thumb win. On a 2-core CPU, XLA makes the 28 px
and 64 px DCGAN steps about half as fast while it speeds up a 16 px VAE-GAN a little; bfloat16
was 1.35x faster on one CPU here and 0.8x on another; the matmul kernel gradients made
the 64 px step 1.27x faster on a Xeon with AMX in bfloat16 and lost on an AVX2-only EPYC in
float32. So for whatever is `auto`, the first run
of a model, shape and batch on a device times a few training steps of every candidate setting
and caches the images/s in `~/.cache/tfgen/autotune.json`, keyed by everything the speed
depends on; later runs read the verdict for free. A setting other than the plain one (XLA
off, float32) must be at least MIN_SPEEDUP faster to be chosen, so timing noise never flips it.
The candidates are timed in interleaved rounds (best of each), not one after the other: a
shared 2-core machine drifts by 15% within a minute, which sequential timings would credit to
whichever candidate ran in the fast minute. A verdict timed while other processes kept more
than BUSY_SHARE of the CPUs busy is used for that run but not cached: with three trainings on
the 2-core EPYC, "XLA on, matmul conv grads" measured 1.56x plain XLA, and alone it loses, yet
the cache kept that choice for every later run of the model.

Half precision is only a candidate where the device computes it natively: bfloat16 on a CPU
with AVX512_BF16 or AMX, bfloat16 on GPUs from compute capability 8.0, float16 on 7.x. Other
CPUs stay at float32 without measuring.
"""

import json
import logging
import platform
import time
from pathlib import Path

import keras
import tensorflow as tf

from tfgen.files import user_cache_dir, write_text

log = logging.getLogger("tfgen")

MIN_SPEEDUP = 1.05
BUSY_SHARE = 0.25
ROUND_SECONDS = 2.0  # at most about this long per candidate and round (a step at least)


def cpu_name_and_flags():
    """(model name, set of feature flags) of this machine's CPU, from /proc/cpuinfo (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor(), set()
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}
    return fields.get("model name", platform.processor()), set(fields.get("flags", "").split())


def cpu_times():
    """(busy, total) clock ticks of all CPUs since boot and this process's own CPU ticks
    (every thread), from /proc; None where /proc has no such files (not Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is in user)
    return busy, busy + idle, int(own[11]) + int(own[12])  # utime, stime: fields 14, 15 of stat


def others_share(before, after):
    """The share of all CPUs (0-1) that other processes used between two `cpu_times()`
    readings; None if either is unknown."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    busy, total, own = (a - b for a, b in zip(after, before))
    return max(0.0, busy - own) / total


def half_precision_candidate():
    """(policy or None, device description): the half-precision policy worth timing here.

    None where the device has no native half-precision arithmetic.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = details.get("compute_capability", (0, 0))
        name = details.get("device_name", "GPU")
        if capability >= (8, 0):
            return "mixed_bfloat16", name  # no loss scaling needed: float32's range
        return ("mixed_float16" if capability >= (7, 0) else None), name
    name, flags = cpu_name_and_flags()
    return ("mixed_bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else None), f"CPU {name}"


def cache_path():
    return user_cache_dir() / "autotune.json"


def read_cache(path):
    """The cached measurements {entry: {setting name: images/s}}; empty if absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def warm_up(train_function, iterator, warmup=3):
    """Steps/second of the last of `warmup` calls of a Keras train function (the first compiles)."""
    train_function(iterator)
    rate = 0.0
    for _ in range(warmup - 1):
        start = time.perf_counter()
        float(next(iter(train_function(iterator).values())))
        rate = 1.0 / (time.perf_counter() - start)
    return rate


def steps_per_second(train_function, iterator, steps=8, seconds=ROUND_SECONDS):
    """Steps/second over `steps` warm calls of a Keras train function, or fewer where those
    would take longer than `seconds`: the first call, waited for, says how many fit (at
    least one). A 64 px U-Net on 2 CPU cores takes 4 s a step: 8 a round made its first
    run's timing 14 minutes, where one a round says as much (steps that long vary little)."""
    start = time.perf_counter()
    float(next(iter(train_function(iterator).values())))
    count = max(1, min(steps, int(seconds / max(time.perf_counter() - start, 1e-9))))
    for _ in range(count - 1):
        logs = train_function(iterator)
    if count > 1:
        float(next(iter(logs.values())))  # wait for the last step
    return count / (time.perf_counter() - start)


def keras_policy(setting):
    """A resolved `train.mixed_precision` ("none", "mixed_bfloat16", ...) -> Keras' policy name."""
    return "float32" if setting == "none" else setting


def describe(jit, policy, grad="native"):
    """A candidate's name, as logged and cached ("XLA off, float32", ...)."""
    return f"XLA {'on' if jit else 'off'}, {keras_policy(policy)}" + (", matmul conv grads" if grad == "matmul" else "")


def resolve(jit_options, precision_setting, key, build, stream, grad_options=("native",)):
    """(jit_compile, policy, conv_kernel_grad): the fastest candidate, measured once per
    `key` and device.

    `jit_options` are the XLA settings allowed ([False, True] for auto, else the one set);
    `precision_setting` is train.mixed_precision; `grad_options` the kernel gradients allowed
    (["native", "matmul"] for auto where the model has layers that can take the products).
    `key` (a dict) names the model, shape and batch; `build(jit, policy, grad)` returns a
    compiled model under that global policy; `stream(model)` a fresh iterator of that
    model's training batches.
    """
    half, device = half_precision_candidate()
    if precision_setting != "auto":
        policies = [precision_setting]
    elif half is None:
        log.info("mixed precision auto: float32 (%s has no native half-precision arithmetic)", device)
        policies = ["none"]
    else:
        policies = ["none", half]
    candidates = [(jit, policy, grad) for grad in grad_options for policy in policies for jit in jit_options]
    if len(candidates) == 1:
        return candidates[0]
    # "version" 2: before it, "XLA off, float32" meant matmul kernel gradients on every CPU
    entry = json.dumps(
        {
            **key,
            "candidates": [describe(*c) for c in candidates],
            "device": device,
            "tensorflow": tf.__version__,
            "version": 2,
        },
        sort_keys=True,
    )
    path = cache_path()
    rates = read_cache(path).get(entry)
    if rates is None:
        log.info(
            "auto settings: timing %s on %s (once per model, image shape and batch size)",
            " / ".join(describe(*c) for c in candidates),
            device,
        )
        before = cpu_times()
        rates = _measure(candidates, build, stream)
        busy = others_share(before, cpu_times())
        if busy is not None and busy > BUSY_SHARE:
            log.warning(
                "auto settings: other processes kept %.0f%% of the CPUs busy while timing, so this "
                "verdict is used for this run only, not cached (the next run times again)",
                100 * busy,
            )
        else:
            try:  # re-read first: another run may have added its measurements meanwhile
                write_text(path, json.dumps({**read_cache(path), entry: rates}, indent=1))
                log.info("auto settings: measurements cached in %s", path)
            except OSError as exc:  # a read-only home only costs the measurement next time
                log.warning("could not cache the auto-setting measurements in %s: %s", path, exc.strerror)
    plain = candidates[0]
    best = max(candidates, key=lambda c: rates[describe(*c)])
    chosen = best if rates[describe(*best)] >= MIN_SPEEDUP * rates[describe(*plain)] else plain
    log.info(
        "auto settings: %s (steps/s measured on %s: %s)",
        describe(*chosen),
        device,
        ", ".join(f"{name} {rate:.3g}" for name, rate in rates.items()),
    )
    return chosen


class _ExpectedRetracing(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls ... triggered tf.function retracing"
    warning. Timing builds one model, hence one train function, per candidate, all from the
    same Keras code, which TensorFlow counts as one function retraced over and over; the
    paragraph of advice it prints then reads to a user as a bug in their run."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def _measure(candidates, build, stream, rounds=3):
    """{setting name: steps/s} for `candidates`: each built and warmed up under its own
    policy, then timed in `rounds` interleaved rounds, keeping each one's best.

    A candidate whose warm step runs below half the best warm rate cannot win and is not
    timed further (XLA on a CPU can be 25x slower, minutes per timing). One that fails to
    build or compile is out (0 steps/s), unless it is the plain setting: then the model
    itself is broken and that error is the run's to report.
    """
    runners, warm, rates = {}, {}, {}
    expected = _ExpectedRetracing()
    tf.get_logger().addFilter(expected)
    try:
        for candidate in candidates:
            jit, policy, _ = candidate
            name = describe(*candidate)
            keras.mixed_precision.set_global_policy(keras_policy(policy))
            try:
                model = build(*candidate)
                model.make_train_function()
                runners[name] = (policy, model.train_function, stream(model))
                warm[name] = warm_up(*runners[name][1:])
            except (tf.errors.OpError, ValueError, TypeError) as exc:
                if candidate == candidates[0]:
                    raise
                log.warning("auto settings: %s fails for this model (%s)", name, str(exc).splitlines()[0][:200])
                warm[name] = 0.0
                runners.pop(name, None)
        fastest = max(warm.values())
        rates = {name: rate for name, rate in warm.items() if rate < fastest / 2}  # no chance: left out
        runners = {name: runner for name, runner in runners.items() if name not in rates}
        for _ in range(rounds):
            for name, (policy, train_function, iterator) in runners.items():
                keras.mixed_precision.set_global_policy(keras_policy(policy))
                rates[name] = max(rates.get(name, 0.0), steps_per_second(train_function, iterator))
    finally:
        keras.mixed_precision.set_global_policy("float32")
        tf.get_logger().removeFilter(expected)
    return {name: rates[name] for name in warm}  # in the candidates' order
