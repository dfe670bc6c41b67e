"""`train.jit_compile: auto` and `train.mixed_precision: auto`: the fastest setting, measured.

Neither XLA nor half precision is a rule-of-thumb win. On a 2-core CPU, XLA makes the 28 px
and 64 px DCGAN steps about half as fast while it speeds up a 16 px VAE-GAN a little; bfloat16
was 1.35x faster on one CPU here and 0.8x on another. So for whatever is `auto`, the first run
of a model, shape and batch on a device times a few training steps of every candidate setting
and caches the images/s in `~/.cache/tfgen/autotune.json`, keyed by everything the speed
depends on; later runs read the verdict for free. A setting other than the plain one (XLA
off, float32) must be at least MIN_SPEEDUP faster to be chosen, so timing noise never flips it.

Half precision is only a candidate where the device computes it natively: bfloat16 on a CPU
with AVX512_BF16 or AMX, bfloat16 on GPUs from compute capability 8.0, float16 on 7.x. Other
CPUs stay at float32 without measuring.
"""

import json
import logging
import os
import platform
import time
from pathlib import Path

import keras
import tensorflow as tf

from tfgen.files import write_text

log = logging.getLogger("tfgen")

MIN_SPEEDUP = 1.05


def cpu_name_and_flags():
    """(model name, set of feature flags) of this machine's CPU, from /proc/cpuinfo (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor(), set()
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}
    return fields.get("model name", platform.processor()), set(fields.get("flags", "").split())


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
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "tfgen" / "autotune.json"


def read_cache(path):
    """The cached measurements {entry: {setting name: images/s}}; empty if absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def steps_per_second(train_function, iterator, steps=8, warmup=3, rounds=2, give_up_below=0.0):
    """Best of `rounds` timings of `steps` calls of a Keras train function (after warm-up).

    The first call compiles. A candidate whose warm steps run below `give_up_below` steps/s
    (a fraction of the best candidate so far) cannot win: its rate is returned at once
    instead of after a full timing (XLA on a CPU can be 25x slower, minutes per timing).
    """
    train_function(iterator)
    for _ in range(warmup - 1):
        start = time.perf_counter()
        float(next(iter(train_function(iterator).values())))
        rate = 1.0 / (time.perf_counter() - start)
        if rate < give_up_below:
            return rate
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            logs = train_function(iterator)
        float(next(iter(logs.values())))  # wait for the last step
        best = max(best, steps / (time.perf_counter() - start))
    return best


def keras_policy(setting):
    """A resolved `train.mixed_precision` ("none", "mixed_bfloat16", ...) -> Keras' policy name."""
    return "float32" if setting == "none" else setting


def describe(jit, policy):
    return f"XLA {'on' if jit else 'off'}, {keras_policy(policy)}"


def resolve(jit_options, precision_setting, key, build, stream):
    """(jit_compile, policy): the fastest candidate, measured once per `key` and device.

    `jit_options` are the XLA settings allowed ([False, True] for auto, else the one set);
    `precision_setting` is train.mixed_precision. `key` (a dict) names the model, shape and
    batch; `build(jit, policy)` returns a compiled model under that global policy; `stream(model)`
    a fresh iterator of that model's training batches.
    """
    half, device = half_precision_candidate()
    if precision_setting != "auto":
        policies = [precision_setting]
    elif half is None:
        log.info("mixed precision auto: float32 (%s has no native half-precision arithmetic)", device)
        policies = ["none"]
    else:
        policies = ["none", half]
    candidates = [(jit, policy) for policy in policies for jit in jit_options]
    if len(candidates) == 1:
        return candidates[0]
    entry = json.dumps({**key, "candidates": [describe(*c) for c in candidates], "device": device,
                        "tensorflow": tf.__version__}, sort_keys=True)
    path = cache_path()
    rates = read_cache(path).get(entry)
    if rates is None:
        log.info("auto settings: timing %s on %s (once; cached in %s)",
                 " / ".join(describe(*c) for c in candidates), device, path)
        rates = {}
        try:
            for jit, policy in candidates:
                keras.mixed_precision.set_global_policy(keras_policy(policy))
                try:
                    model = build(jit, policy)
                    model.make_train_function()
                    fastest = max(rates.values(), default=0.0)
                    rates[describe(jit, policy)] = steps_per_second(
                        model.train_function, stream(model), give_up_below=fastest / 2)
                    log.info("auto settings: %s: %.3g steps/s", describe(jit, policy), rates[describe(jit, policy)])
                except (tf.errors.OpError, ValueError, TypeError) as exc:
                    if (jit, policy) == candidates[0]:
                        raise  # the plain setting itself fails: that is the run's error to report
                    # an op XLA or half precision cannot handle: that candidate is out
                    log.warning("auto settings: %s fails for this model (%s)", describe(jit, policy),
                                str(exc).splitlines()[0][:200])
                    rates[describe(jit, policy)] = 0.0
        finally:
            keras.mixed_precision.set_global_policy("float32")
        try:  # re-read first: another run may have added its measurements meanwhile
            write_text(path, json.dumps({**read_cache(path), entry: rates}, indent=1))
        except OSError as exc:  # a read-only home only costs the measurement next time
            log.warning("could not cache the auto-setting measurements in %s: %s", path, exc.strerror)
    plain = candidates[0]
    best = max(candidates, key=lambda c: rates[describe(*c)])
    chosen = best if rates[describe(*best)] >= MIN_SPEEDUP * rates[describe(*plain)] else plain
    log.info("auto settings: %s (steps/s measured on %s: %s)", describe(*chosen), device,
             ", ".join(f"{name} {rate:.3g}" for name, rate in rates.items()))
    return chosen
