import numpy as np
import pytest
import tensorflow as tf

from tfgen import distribute, training
from tfgen.config import load_config
from tfgen.errors import ConfigError
from tfgen.runs import prepare_run_dir


def test_mirrored_uses_both_logical_cpus_and_xla_auto_turns_off():
    strategy = distribute.make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    assert distribute.jit_compile_options("auto", strategy) == [False]
    with pytest.raises(ConfigError, match="jit_compile"):
        distribute.jit_compile_options(True, strategy)
    single = distribute.make_strategy("none")
    assert single.num_replicas_in_sync == 1
    assert distribute.jit_compile_options("auto", single) == [False, True]  # measured by tfgen.autotune
    assert distribute.jit_compile_options(False, single) == [False]


def test_training_under_mirrored_strategy_on_two_cpus_with_an_ema_generator(toy_config, tmp_path):
    cfg = load_config(str(toy_config), ["train.distribute=mirrored", "train.epochs=1", "model.ema_decay=0.5"])
    run_dir = prepare_run_dir(cfg, resume=False, overwrite=False)
    model, _, _ = training.train(cfg, run_dir)
    assert int(model.d_optimizer.iterations.numpy()) == 2 == int(model.g_optimizer.iterations.numpy())
    # mirrored variables stay identical on both replicas after the updates
    for variable in model.generator.trainable_variables + model.discriminator.trainable_variables:
        replicas = [v.numpy() for v in variable.value.values]
        assert len(replicas) == 2
        np.testing.assert_array_equal(replicas[0], replicas[1])
    logs = model.get_metrics_result()
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert 0 < float(logs["real_score"]) < 1
    # the EMA generator's variables too
    for ema in model.ema_generator.weights:
        replicas = [v.numpy() for v in ema.value.values]
        np.testing.assert_array_equal(replicas[0], replicas[1])
    # after two G steps with decay 0.5 the average lies strictly between init and now
    assert not np.allclose(model.ema_generator.weights[0].numpy(), model.generator.weights[0].numpy())


def test_each_replica_draws_its_own_latents():
    strategy = distribute.make_strategy("mirrored")
    from tfgen.models import get_model_class

    with strategy.scope():
        model = get_model_class("dcgan")(image_shape=(8, 8, 1), latent_dim=4, g_width=4, d_width=4, seed=3)
    per_replica = strategy.run(tf.function(lambda: model.sample_latent(2)))
    first, second = (t.numpy() for t in strategy.experimental_local_results(per_replica))
    assert not np.allclose(first, second)


def test_metrics_are_averaged_over_replicas():
    """The reported loss is the global-batch mean, not the first replica's share."""
    strategy = distribute.make_strategy("mirrored")
    from tfgen.models import get_model_class

    with strategy.scope():
        model = get_model_class("dcgan")(image_shape=(8, 8, 1), latent_dim=4, g_width=4, d_width=4, seed=3)

    def shares():
        value = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.float32)
        logs = {"d_loss": value + 1.0}  # replica 0 contributes 1, replica 1 contributes 2
        return model.update_trackers(logs)["d_loss"]

    result = strategy.run(tf.function(shares))
    assert [float(r) for r in strategy.experimental_local_results(result)] == [3.0, 3.0]


def test_multi_worker_without_tf_config_and_tpu_without_a_tpu_are_clear_errors(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        distribute.make_strategy.__wrapped__("multi_worker")
    with pytest.raises(ConfigError, match="no TPU was found"):
        distribute.make_strategy.__wrapped__("tpu")


def test_biggan_under_mirrored_strategy_keeps_replicas_identical(tmp_path):
    """Conditional BatchNorm, self-attention and the spectral embedding's power iteration all
    update mirrored variables: both replicas must hold the same values after the steps."""
    # 8 px: one G block, at the attention's resolution; one D step per G step (tracing each
    # D step under the strategy is most of the time)
    cfg = load_config(
        "mnist5k_biggan.yaml",
        [
            f"run_dir={tmp_path}",
            "data.image_size=8",
            "data.limit=64",
            "data.batch_size=8",
            "train.epochs=1",
            "train.steps_per_epoch=2",
            "train.jit_compile=false",
            "train.mixed_precision=none",
            "train.conv_kernel_grad=native",
            "train.distribute=mirrored",
            "model.attention_resolution=8",
            "model.g_width=4",
            "model.d_width=4",
            "model.d_steps=1",
        ],
    )
    model, _, stop = training.train(cfg, prepare_run_dir(cfg, resume=False, overwrite=False))
    assert stop is None and int(model.g_optimizer.iterations.numpy()) == 2
    assert any("attention" in layer.name for layer in model.generator.layers), "no self-attention at 8 px"
    checked = 0
    for variable in model.generator.variables + model.discriminator.variables:
        values = getattr(variable.value, "values", None)
        if values is not None and len(values) == 2:
            np.testing.assert_allclose(values[0].numpy(), values[1].numpy(), rtol=1e-6, err_msg=variable.path)
            checked += 1
    assert checked > 20
