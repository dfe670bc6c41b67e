"""Top-k training (Sinha et al. 2020) and the seed project's threshold rule, at toy size."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_model

from tfgen.config import load_config
from tfgen.models import get_model_class, model_params

SIZE = dict(latent_dim=4, g_width=4, d_width=4)


def per_fake_gradient(model, n=8):
    """|d G-loss / d fake_i| for each fake of a batch, and D's score of each."""
    fake = tf.random.stateless_uniform((n, *model.image_shape), seed=(4, 0), minval=-1, maxval=1)
    with tf.GradientTape() as tape:
        tape.watch(fake)
        loss = model.generator_loss(fake)
    grad = tape.gradient(loss, fake)
    scores = tf.reshape(model.discriminate(fake, None, training=True), [n])
    return np.abs(grad.numpy()).reshape(n, -1).sum(axis=1), scores.numpy(), float(loss)


def test_top_k_gradient_comes_only_from_the_fakes_d_rates_most_real():
    model = toy_model("dcgan", d_norm="none", top_k=True, top_k_decay=0.5, top_k_min=0.25, **SIZE)
    model.begin_epoch(1)  # 0.5 of the batch: 4 of 8
    grads, scores, _ = per_fake_gradient(model)
    chosen = set(np.argsort(-scores)[:4])
    assert {i for i, g in enumerate(grads) if g > 0} == chosen
    model.begin_epoch(5)  # 0.5 ** 5 < the floor 0.25: 2 of 8
    grads, scores, _ = per_fake_gradient(model)
    assert {i for i, g in enumerate(grads) if g > 0} == set(np.argsort(-scores)[:2])


def test_top_k_starts_with_the_whole_batch():
    plain = toy_model("dcgan", d_norm="none", **SIZE)
    top = toy_model("dcgan", d_norm="none", top_k=True, **SIZE)
    top.generator.set_weights(plain.generator.get_weights())
    top.discriminator.set_weights(plain.discriminator.get_weights())
    top.begin_epoch(0)
    grads, _, loss = per_fake_gradient(top)
    assert (grads > 0).all()
    assert loss == pytest.approx(per_fake_gradient(plain)[2], rel=1e-6)


@pytest.mark.parametrize("rule, best, middle, worst", [("reward_punish", 1.0, 0.5, 0.0), ("soft", 0.95, 0.95, 0.5)])
def test_threshold_rule_targets_follow_ds_ranking(rule, best, middle, worst):
    model = toy_model("dcgan", d_norm="none", g_threshold=0.25, g_threshold_rule=rule, **SIZE)
    logits = tf.constant([[0.3], [2.0], [-1.0], [0.1], [-3.0], [1.0], [0.0], [0.5]])
    loss = model.threshold_loss(logits).numpy()
    targets = {1: best, 5: best, 4: worst, 2: worst}  # T = 2 of 8: the two highest, the two lowest
    for i, logit in enumerate(logits.numpy()[:, 0]):
        target = targets.get(i, middle)
        want = max(logit, 0) - logit * target + np.log1p(np.exp(-abs(logit)))
        assert loss[i] == pytest.approx(want, rel=1e-5), (i, target)


def test_options_are_checked_and_every_gan_accepts_them():
    with pytest.raises(ValueError, match="choose one"):
        toy_model("dcgan", top_k=True, g_threshold=0.1, **SIZE)
    with pytest.raises(ValueError, match="needs loss non_saturating"):
        toy_model("dcgan", loss="hinge", g_threshold=0.1, **SIZE)
    with pytest.raises(ValueError, match=r"\[0, 0.5\]"):
        toy_model("dcgan", g_threshold=0.6, **SIZE)
    for name in ("sngan", "wgan_gp", "cond_gan"):
        assert {"top_k", "top_k_decay", "top_k_min", "g_threshold"} <= set(model_params(get_model_class(name)))
    cfg = load_config("digits_cond_gan.yaml", ["model.top_k=true"])
    assert cfg.model.params["top_k"] is True
    model = toy_model("sngan", top_k=True, **SIZE)
    assert model.top_k and model.get_config()["top_k"] is True
