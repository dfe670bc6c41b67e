"""`train.mixed_precision: auto`: half precision only where this model measures faster on this device.

Whether bfloat16 pays on a CPU depends on the CPU: it was 1.35x faster on one machine here
and 0.8x on another. Without native bf16 arithmetic (AVX512_BF16 or AMX) every product is
converted back and forth and it can only lose, so those CPUs stay at float32 without
measuring. Elsewhere (a bf16-capable CPU, or a GPU with float16 / bfloat16 tensor cores)
`resolve_mixed_precision` times a few training steps of the actual model, shape and batch
each way, once, and caches the verdict in `~/.cache/tfgen/mixed_precision.json`, keyed by
everything the speed depends on; later runs read it for free.
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

# Half precision must beat float32 by this factor to be chosen: timing noise never flips it.
MIN_SPEEDUP = 1.05


def cpu_name_and_flags():
    """(model name, set of feature flags) of this machine's CPU, from /proc/cpuinfo (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor(), set()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
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
            return "mixed_bfloat16", name  # no loss scaling needed, float32's range
        return ("mixed_float16" if capability >= (7, 0) else None), name
    name, flags = cpu_name_and_flags()
    native = flags & {"avx512_bf16", "amx_bf16"}
    return ("mixed_bfloat16" if native else None), f"CPU {name}"


def cache_path():
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "tfgen" / "mixed_precision.json"


def read_cache(path):
    """The cached verdicts {entry: {"speedup", "policy"}}; empty if absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def steps_per_second(train_function, iterator, steps=8, warmup=3, rounds=2):
    """Best of `rounds` timings of `steps` calls of a Keras train function (after warm-up)."""
    for _ in range(warmup):
        train_function(iterator)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            logs = train_function(iterator)
        float(next(iter(logs.values())))  # wait for the last step
        best = max(best, steps / (time.perf_counter() - start))
    return best


def resolve_mixed_precision(setting, key, build, stream):
    """`train.mixed_precision` -> the policy to train with ("none", "mixed_float16", ...).

    For "auto": the half-precision policy if `half_precision_candidate` offers one and it
    measures at least MIN_SPEEDUP faster, else "none". `key` (a dict) identifies the
    model, shape and batch in the cache; `build(policy)` returns a compiled model under that
    global policy; `stream()` a fresh iterator of training batches.
    """
    if setting != "auto":
        return setting
    half, device = half_precision_candidate()
    if half is None:
        log.info("mixed precision auto: float32 (%s has no native half-precision arithmetic)", device)
        return "none"
    entry = json.dumps({**key, "device": device, "tensorflow": tf.__version__}, sort_keys=True)
    path = cache_path()
    cache = read_cache(path)
    if entry not in cache:
        log.info("mixed precision auto: timing float32 against %s on %s (once; cached in %s)", half, device, path)
        rates = {}
        try:
            for policy in ("none", half):
                keras.mixed_precision.set_global_policy("float32" if policy == "none" else policy)
                model = build(policy)
                model.make_train_function()
                rates[policy] = steps_per_second(model.train_function, stream())
        finally:
            keras.mixed_precision.set_global_policy("float32")
        cache[entry] = {"speedup": rates[half] / rates["none"], "policy": half}
        try:  # re-read first: another run may have added its verdict meanwhile
            write_text(path, json.dumps({**read_cache(path), entry: cache[entry]}, indent=1))
        except OSError as exc:  # a read-only home only costs the measurement next time
            log.warning("could not cache the mixed-precision verdict in %s: %s", path, exc.strerror)
    speedup = cache[entry]["speedup"]
    chosen = half if speedup >= MIN_SPEEDUP else "none"
    log.info("mixed precision auto: %s (%s measured %.2fx float32's speed on %s)",
             "float32" if chosen == "none" else half, half, speedup, device)
    return chosen
