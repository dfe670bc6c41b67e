"""Choosing the `tf.distribute` strategy and whether the step is compiled with XLA."""

import functools
import os

import tensorflow as tf

from tfgen.errors import ConfigError


@functools.lru_cache(maxsize=None)
def make_strategy(name):
    """`train.distribute` -> a strategy (one per process: several MirroredStrategy objects
    in one process can collide in their collective-op keys).

    none: the default (one device). mirrored: MirroredStrategy over every local GPU, or over
    every logical CPU device when there is no GPU (how the tests run it on one machine).
    auto: mirrored when more than one GPU is visible, else none. multi_worker:
    MultiWorkerMirroredStrategy over the cluster in the standard TF_CONFIG variable.
    tpu: TPUStrategy on the TPU a resolver finds.
    """
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError(
                "train.distribute: multi_worker needs the TF_CONFIG environment variable "
                '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}})'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError, RuntimeError) as exc:
            raise ConfigError(f"train.distribute: tpu, but no TPU was found ({str(exc).splitlines()[0]})") from None
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "none" or (name == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def is_multi_worker(strategy):
    """Whether `strategy` spans several processes (MultiWorkerMirroredStrategy from TF_CONFIG)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def is_chief(strategy):
    """Whether this process writes the run directory: always, except on the non-chief
    workers of a multi-worker run (the chief is TF_CONFIG's "chief" task, else worker 0)."""
    return strategy.extended.should_checkpoint


def jit_compile_options(setting, strategy):
    """`train.jit_compile` -> the XLA settings to choose from: [False, True] for auto, which
    `tfgen.autotune` then measures, else the one set.

    TPUs always compile; across several CPU replicas TensorFlow cannot compile the
    replicated step at all, so auto means off there and true is an error.
    """
    multi_cpu = strategy.num_replicas_in_sync > 1 and not tf.config.list_logical_devices("GPU")
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return [True]
    if setting == "auto":
        return [False] if multi_cpu else [False, True]
    if setting and multi_cpu:
        raise ConfigError(
            "train.jit_compile: true is not supported across several CPU replicas; "
            "use jit_compile: auto or false, or distribute: none"
        )
    return [bool(setting)]


def make_agreement(strategy):
    """For a multi-worker `strategy`, a function flags -> flags: each flag true if it is true
    on any worker, by one small all-reduce that every worker must call at the same step
    (tfgen.callbacks.Guard does, after every step). None for a single-process strategy.
    """
    if not is_multi_worker(strategy):
        return None

    @tf.function
    def any_worker(flags):
        counts = strategy.run(lambda: tf.identity(flags))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, counts, axis=None)

    def agree(flags):
        return [bool(count > 0) for count in any_worker(tf.constant(flags, tf.int32)).numpy()]

    return agree
