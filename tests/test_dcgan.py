import typing

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_model

import tfgen  # noqa: F401  (registers the models for load_model)
from tfgen import layers
from tfgen.models import get_model_class
from tfgen.models.registry import MODELS, model_params

DCGAN = get_model_class("dcgan")


def toy(image_shape=(8, 8, 1), **kwargs):
    params = dict(image_shape=image_shape, latent_dim=4, g_width=4, d_width=4, seed=1)
    params.update(kwargs)
    model = DCGAN(**params)
    model.compile(
        d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
        g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
        jit_compile=False,
    )
    return model


def real_batch(model, n=8, seed=0):
    return tf.random.stateless_uniform((n, *model.image_shape), seed=(seed, 0), minval=-1, maxval=1)


@pytest.mark.parametrize("shape", [(8, 8, 1), (14, 14, 1), (28, 28, 1), (32, 32, 3), (64, 64, 3)])
def test_shapes_and_range(shape):
    model = toy(shape)
    images = model(tf.random.normal((2, 4)))
    assert images.shape == (2, *shape)
    assert float(tf.reduce_min(images)) >= -1 and float(tf.reduce_max(images)) <= 1
    assert model.discriminator(images).shape == (2, 1)


def test_generator_follows_dcgan_rules():
    model = toy((32, 32, 3))
    g_layers = model.generator.layers
    assert isinstance(g_layers[-1], keras.layers.Activation) and g_layers[-1].activation.__name__ == "tanh"
    # BatchNorm in G everywhere but the output; none on D's input layer
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in g_layers) == 3
    d_layers = model.discriminator.layers
    assert isinstance(d_layers[0], keras.layers.Conv2D) and isinstance(d_layers[1], keras.layers.LeakyReLU)
    strides = [l.strides for l in d_layers if isinstance(l, keras.layers.Conv2D)]
    assert strides == [(2, 2)] * 3


def test_28_px_has_as_many_stages_as_32_px():
    """Sizes 7 * 2**n start at 4 px like the rest: G goes 4 -> 7 -> 14 -> 28, D mirrors it."""

    def sizes(network, kind):
        return [layer.output.shape[1] for layer in network.layers if isinstance(layer, kind)]

    m28, m32 = toy((28, 28, 1)), toy((32, 32, 1))
    assert sizes(m28.generator, keras.layers.Conv2DTranspose) == [7, 14, 28]
    assert sizes(m32.generator, keras.layers.Conv2DTranspose) == [8, 16, 32]
    assert sizes(m28.discriminator, keras.layers.Conv2D) == [14, 7, 4]
    assert m28.generator.layers[0].output.shape[1:] == m32.generator.layers[0].output.shape[1:]


def test_resize_upsampling_doubles_by_nearest_resize_and_3x3_convolution():
    """g_upsample resize: no stride-2 transposed convolution left; 28 px keeps its 4 -> 7 stage."""
    m28 = toy((28, 28, 1), g_upsample="resize")
    transposed = [l for l in m28.generator.layers if isinstance(l, keras.layers.Conv2DTranspose)]
    assert [(l.strides, l.output.shape[1]) for l in transposed] == [((1, 1), 7)]
    convs = [l for l in m28.generator.layers if type(l).__name__ == "Conv2D"]
    assert [(l.kernel_size, l.output.shape[1]) for l in convs] == [((3, 3), 14), ((3, 3), 28)]
    m64 = toy((64, 64, 3), g_upsample="resize")
    assert sum(isinstance(l, keras.layers.UpSampling2D) for l in m64.generator.layers) == 4
    assert m64(tf.random.normal((2, 4))).shape == (2, 64, 64, 3)


def test_resize_generator_trains_and_round_trips(tmp_path):
    model = toy((16, 16, 3), g_upsample="resize")
    before = [w.numpy().copy() for w in model.generator.trainable_weights]
    model.train_step(real_batch(model))
    assert all(not np.allclose(b, w) for b, w in zip(before, model.generator.trainable_weights))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.get_config()["g_upsample"] == "resize"
    z = tf.random.normal((4, 4))
    np.testing.assert_allclose(loaded(z), model(z), atol=1e-6)


@pytest.mark.parametrize("name", sorted(n for n, cls in MODELS.items() if "g_upsample" in model_params(cls)))
def test_every_gan_offering_g_upsample_resizes_in_both_generators(name):
    model = toy_model(name, (16, 16, 3), latent_dim=4, g_width=4, d_width=4, ema_decay=0.9, g_upsample="resize")

    def strided_transposed(network):
        found = []
        for layer in network.layers:
            if isinstance(layer, keras.Model):  # cond_gan wraps its stack in a functional model
                found += strided_transposed(layer)
            elif isinstance(layer, keras.layers.Conv2DTranspose) and layer.strides != (1, 1):
                found.append(layer.name)
        return found

    assert strided_transposed(model.generator) == strided_transposed(model.ema_generator) == []
    assert model.get_config()["g_upsample"] == "resize"


def test_biggan_refuses_g_upsample_its_generator_resizes_already():
    assert "g_upsample" not in model_params(MODELS["biggan"])
    with pytest.raises(ValueError, match="BigGAN's residual G resizes already"):
        toy_model("biggan_uncond", (32, 32, 3), g_upsample="resize")
    assert (
        "g_upsample"
        not in toy_model("biggan_uncond", (32, 32, 3), latent_dim=8, g_width=4, d_width=4, embed_dim=4).get_config()
    )


def test_unknown_upsampling_is_refused():
    with pytest.raises(ValueError, match="g_upsample must be 'transposed' or 'resize', got 'bilinear'"):
        toy(g_upsample="bilinear")


def test_minibatch_std_appends_each_batch_parts_own_spread():
    x = np.random.default_rng(0).normal(size=(6, 2, 2, 3)).astype("float32")
    x[:3] = x[0]  # the first half: one image three times
    out = layers.MinibatchStdDev()(x).numpy()
    assert out.shape == (6, 2, 2, 4)
    np.testing.assert_allclose(out[..., :3], x)
    np.testing.assert_allclose(out[..., 3], np.sqrt(x.var(axis=0) + 1e-8).mean(), rtol=1e-5)
    with layers.batch_parts(2):
        parts = layers.MinibatchStdDev()(x).numpy()[..., 3]
    np.testing.assert_allclose(parts[:3], 1e-4, rtol=1e-3)  # sqrt(eps): no spread at all
    np.testing.assert_allclose(parts[3:], np.sqrt(x[3:].var(axis=0) + 1e-8).mean(), rtol=1e-5)


@pytest.mark.parametrize("minibatch_std", [False, True])
def test_minibatch_std_makes_an_images_logit_depend_on_its_batch(minibatch_std):
    """With the feature D sees a repeated batch as such; without it, each image alone."""
    model = toy((16, 16, 3), d_minibatch_std=minibatch_std)
    batch = real_batch(model)
    varied = model.discriminator(batch, training=False)[0]
    repeated = model.discriminator(tf.repeat(batch[:1], 8, axis=0), training=False)[0]
    assert np.allclose(varied, repeated, atol=1e-6) != minibatch_std
    found = [type(l).__name__ for l in model.discriminator.layers].count("MinibatchStdDev")
    assert found == int(minibatch_std)


@pytest.mark.parametrize("name", sorted(n for n, cls in MODELS.items() if "d_minibatch_std" in model_params(cls)))
def test_every_gan_offering_d_minibatch_std_trains_and_round_trips_with_it(name, tmp_path):
    model = toy_model(name, (16, 16, 3), latent_dim=4, g_width=4, d_width=4, d_steps=1, d_minibatch_std=True)
    assert "MinibatchStdDev" in [type(l).__name__ for l in model.discriminator.layers]
    labels = tf.range(8) % 10 if model.needs_labels else None
    kernels = [w for w in model.discriminator.trainable_weights if "kernel" in w.path]  # (a hinge D's logit
    before = [w.numpy().copy() for w in kernels]  # bias has no gradient while every logit is inside the margin)
    model.train_step((real_batch(model), labels) if labels is not None else real_batch(model))
    assert len(kernels) == 3 and all(not np.allclose(b, w) for b, w in zip(before, kernels))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.get_config()["d_minibatch_std"] is True
    images = real_batch(model)
    args = (images, labels) if labels is not None else (images,)
    np.testing.assert_allclose(
        loaded.discriminate(*args, training=False)
        if labels is not None
        else loaded.discriminator(images, training=False),
        model.discriminate(*args, training=False)
        if labels is not None
        else model.discriminator(images, training=False),
        atol=1e-5,
    )


def test_biggan_refuses_d_minibatch_std():
    assert "d_minibatch_std" not in model_params(MODELS["biggan"])
    with pytest.raises(ValueError, match="d_minibatch_std adds a feature to a DCGAN discriminator"):
        toy_model("biggan_uncond", (32, 32, 3), d_minibatch_std=True)


@pytest.mark.parametrize("size", [0, 12, 50, 96 * 3])
def test_sizes_without_a_plan_are_refused(size):
    with pytest.raises(ValueError, match=f"image_size {size}"):
        layers.resolution_plan(size)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"d_dropout": 1.0}, "d_dropout"),
        ({"label_smoothing": 0.6}, "label_smoothing"),
        ({"d_steps": 0}, "d_steps"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        toy(**kwargs)


# A value for every option of the GANs built on DCGAN, none equal to another or to its
# default, so an option handed on to DCGAN in the wrong place shows under the wrong name.
DISTINCT = {
    "latent_dim": 5,
    "g_width": 3,
    "d_width": 6,
    "embed_dim": 7,
    "attention_resolution": 0,
    "ortho_reg": 0.002,
    "d_dropout": 0.1,
    "label_smoothing": 0.2,
    "d_steps": 3,
    "gp_weight": 4.0,
    "ema_decay": 0.9,
    "diffaugment": "color",
    "top_k": True,
    "top_k_decay": 0.7,
    "top_k_min": 0.3,
    "g_threshold_rule": "soft",
    "g_upsample": "resize",
    "d_minibatch_std": True,
    "d_depth": 2,
    "instance_noise": 0.05,
    "instance_noise_steps": 123,
    "reset_d_every": 4,
}
REFUSED = {"wgan_gp": ("label_smoothing",)}  # a Wasserstein critic takes no label smoothing
GANS = sorted(name for name, cls in MODELS.items() if issubclass(cls, DCGAN) and cls.__module__.startswith("tfgen."))


@pytest.mark.parametrize("variant", ["top_k", "g_threshold"])
@pytest.mark.parametrize("name", GANS)
def test_every_option_reaches_dcgan_under_its_own_name(name, variant):
    """Each subclass hands DCGAN its options by keyword: set every one to a distinct value,
    and get_config reports each under its own name (top_k and g_threshold exclude each other)."""
    cls = MODELS[name]
    kwargs = {"image_shape": (8, 8, 1), "seed": 11, "num_classes": 4}
    for option, (annotation, default) in model_params(cls).items():
        choices = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()
        if choices:
            kwargs[option] = next((c for c in choices if c != default), default)
        elif option in REFUSED.get(name, ()) or option == "g_threshold":
            continue
        else:
            assert option in DISTINCT, f"give {name}'s option {option} a distinct value in DISTINCT"
            kwargs[option] = DISTINCT[option]
    if variant == "g_threshold":
        if "non_saturating" not in typing.get_args(model_params(cls)["loss"][0]):
            pytest.skip(f"{name} has no non_saturating loss, which g_threshold needs")
        kwargs.update(top_k=False, g_threshold=0.25, loss="non_saturating")
    config = cls(**kwargs).get_config()
    if not cls.needs_labels:
        kwargs.pop("num_classes")
    assert {option: config[option] for option in kwargs} == {**kwargs, "image_shape": [8, 8, 1]}


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def changed(before, variables):
    return [not np.allclose(b, v.numpy()) for b, v in zip(before, variables)]


@pytest.mark.parametrize("frozen", ["d_optimizer", "g_optimizer"])
def test_each_optimizer_moves_only_its_own_network(frozen):
    """One train_step with one optimizer's learning rate at 0: every trainable weight of the
    other optimizer's network moves, and none of the frozen one's."""
    model = toy()
    getattr(model, frozen).learning_rate = 0.0
    d_before = snapshot(model.discriminator.trainable_variables)
    g_before = snapshot(model.generator.trainable_variables)
    logs = model.train_step(real_batch(model))
    d_moved = changed(d_before, model.discriminator.trainable_variables)
    g_moved = changed(g_before, model.generator.trainable_variables)
    if frozen == "g_optimizer":
        assert all(d_moved) and not any(g_moved)
    else:
        assert all(g_moved) and not any(d_moved)
    assert 0 < float(logs["real_score"]) < 1 and 0 < float(logs["fake_score"]) < 1


def test_d_learns_from_the_old_g_and_g_through_the_updated_d(monkeypatch):
    """The alternating algorithm: each of the d_steps D updates is on fakes from G as it was
    before this step, and G's loss is taken through D after all of them, on the fakes of
    the last D update."""
    model = toy(d_steps=2)
    events, fakes = [], []
    run_generator, discriminate = model.run_generator, model.discriminate

    def iterations():
        return int(model.d_optimizer.iterations), int(model.g_optimizer.iterations)

    def spy_generator(*args, **kwargs):
        events.append(("G forward", *iterations()))
        return run_generator(*args, **kwargs)

    def spy_discriminator(images, labels, training=True):
        events.append(("D on real + fake" if images.shape[0] == 16 else "D on fake", *iterations()))
        fakes.append(np.asarray(images)[-8:])
        return discriminate(images, labels, training)

    monkeypatch.setattr(model, "run_generator", spy_generator)
    monkeypatch.setattr(model, "discriminate", spy_discriminator)
    model.train_step(real_batch(model, 2 * 8))
    assert events == [
        ("G forward", 0, 0),
        ("D on real + fake", 0, 0),  # D update 1
        ("G forward", 1, 0),
        ("D on real + fake", 1, 0),  # D update 2, on fresh fakes
        ("D on fake", 2, 0),  # G's loss, through the twice-updated D
    ]
    assert iterations() == (2, 1)
    assert not np.array_equal(fakes[0], fakes[1])
    np.testing.assert_array_equal(fakes[2], fakes[1])  # G learns from the last D update's fakes


def test_d_steps_updates_d_that_many_times_per_g_update():
    model = toy(d_steps=3)
    assert model.real_batches_per_step == 3
    model.train_step(real_batch(model, 3 * 4))
    assert int(model.d_optimizer.iterations) == 3
    assert int(model.g_optimizer.iterations) == 1


def test_every_critic_step_sees_its_own_real_batch(monkeypatch):
    """d_steps batches arrive concatenated; D update i is given batch i (Gulrajani et al.)."""
    model = toy(d_steps=3)
    seen = []
    discriminate_pair = model.discriminate_pair

    def recording_pair(real, fake, labels):
        seen.append(np.asarray(real))
        return discriminate_pair(real, fake, labels)

    monkeypatch.setattr(model, "discriminate_pair", recording_pair)
    batch = real_batch(model, 3 * 4)
    model.train_step(batch)
    assert len(seen) == 3
    for i, real in enumerate(seen):
        np.testing.assert_array_equal(real, np.asarray(batch)[4 * i : 4 * (i + 1)])
    assert all(not np.array_equal(seen[i], seen[j]) for i in range(3) for j in range(i))


def test_fit_reports_losses_and_scores_as_probabilities():
    model = toy()
    data = tf.data.Dataset.from_tensor_slices(real_batch(model, 32)).batch(8)
    history = model.fit(data, epochs=2, verbose=0, shuffle=False)
    assert set(history.history) == {"d_loss", "g_loss", "real_score", "fake_score"}
    for name in ("real_score", "fake_score"):
        assert all(0 < v < 1 for v in history.history[name])


def test_discriminator_learns_to_separate_real_from_fake():
    """Only D trains (G's learning rate is 0): on bright 'real' images it must come to score
    reals above fakes."""
    model = toy()
    model.g_optimizer.learning_rate = 0.0
    real = tf.random.stateless_uniform((8, 8, 8, 1), seed=(3, 0), minval=0.5, maxval=1.0)
    step = tf.function(model.train_step)
    first = {name: float(value) for name, value in step(real).items()}
    for _ in range(150):
        step(real)
    model.reset_metrics()  # the logs are running means: read the last step's alone
    logs = step(real)
    assert float(logs["d_loss"]) < first["d_loss"]
    assert float(logs["real_score"]) > 0.6 > 0.4 > float(logs["fake_score"])


def test_latent_draws_are_seeded_and_advance():
    a, b = toy(seed=7), toy(seed=7)
    first = a.sample_latent(3)
    np.testing.assert_array_equal(first, b.sample_latent(3))
    assert not np.allclose(first, a.sample_latent(3))  # the state advanced
    assert not np.allclose(first, toy(seed=8).sample_latent(3))


def test_keras_archive_round_trip_with_safe_mode(tmp_path):
    model = toy((16, 16, 3), loss="hinge", d_dropout=0.2)
    model.train_step(real_batch(model))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, DCGAN)
    assert loaded.get_config() == model.get_config()
    z = tf.random.normal((4, 4))
    np.testing.assert_allclose(loaded(z), model(z), atol=1e-6)
    images = tf.zeros((2, 16, 16, 3))
    np.testing.assert_allclose(loaded.discriminator(images), model.discriminator(images), atol=1e-6)


def test_ema_weights_follow_the_formula_and_drive_samples():
    model = toy(ema_decay=0.9)
    np.testing.assert_array_equal(model.ema_generator.get_weights()[0], model.generator.get_weights()[0])
    ema_before = [w.copy() for w in model.ema_generator.get_weights()]
    model.train_step(real_batch(model))
    decay = 2 / 11  # the warm-up's (1 + n) / (10 + n) after n = 1 update, below ema_decay
    for ema_old, ema_new, weight in zip(ema_before, model.ema_generator.get_weights(), model.generator.get_weights()):
        np.testing.assert_allclose(ema_new, decay * ema_old + (1 - decay) * weight, rtol=1e-5, atol=1e-7)
    z = tf.random.normal((2, 4))
    np.testing.assert_allclose(model.generate(z), model.ema_generator(z), atol=1e-6)
    assert not np.allclose(model.generate(z), model.generator(z))
    assert model.export_networks == ("ema_generator",)


def test_ema_decay_warms_up_to_the_configured_value():
    model = toy(ema_decay=0.999)
    decays = [float(model.ema_decay_at(n)) for n in (0, 1, 230, 10_000)]
    np.testing.assert_allclose(decays, [0.1, 2 / 11, 231 / 240, 0.999], rtol=1e-6)
    # 230 steps in (epoch 10 of the Pokemon config), the initial weights' share is small.
    share = np.prod([float(model.ema_decay_at(n)) for n in range(1, 231)])
    assert share < 0.01 < 0.999**230


def test_least_squares_loss_trains():
    model = toy(loss="least_squares")
    logs = model.train_step(real_batch(model))
    assert np.isfinite(float(logs["d_loss"])) and np.isfinite(float(logs["g_loss"]))


@pytest.mark.parametrize("d_norm", ["none", "layer", "spectral", "batch"])
def test_one_d_pass_on_real_and_fake_equals_two(d_norm):
    # D on concat(real, fake) is exact, BatchNorm included: each half keeps its own statistics.
    model = toy((16, 16, 1), d_norm=d_norm)
    real, fake = real_batch(model, seed=0), real_batch(model, seed=1) * 0.1
    state = model.discriminator.get_weights()  # spectral norm's u, BatchNorm's moving statistics
    real_logits, fake_logits = model.discriminate_pair(real, fake, None)
    after_pair = model.discriminator.get_weights()
    for images, logits in ((real, real_logits), (fake, fake_logits)):
        model.discriminator.set_weights(state)
        np.testing.assert_allclose(logits, model.discriminator(images, training=True), atol=1e-5)
    if d_norm == "batch":  # moving statistics as after two calls, and the halves kept apart
        model.discriminator.set_weights(state)
        model.discriminator(real, training=True), model.discriminator(fake, training=True)
        for a, b in zip(after_pair, model.discriminator.get_weights()):
            np.testing.assert_allclose(a, b, atol=1e-6)
        mixed = model.discriminator(tf.concat([real, fake], 0), training=True)[8:]
        assert not np.allclose(fake_logits, mixed, atol=1e-4)


def test_d_runs_once_per_update_on_real_and_fake_together():
    model = toy((16, 16, 1), d_norm="batch")
    seen = []
    first_conv = model.discriminator.layers[0]
    original = first_conv.call
    first_conv.call = lambda x, *a, **k: seen.append(x.shape[0]) or original(x, *a, **k)
    model.train_step(real_batch(model))
    assert seen == [16, 8]  # D's update: 8 real + 8 fake in one pass; then G's loss on the 8 fakes


def test_train_step_moves_both_networks_and_the_ema():
    model = toy(ema_decay=0.99)
    before = {
        name: [w.copy() for w in getattr(model, name).get_weights()]
        for name in ("generator", "discriminator", "ema_generator")
    }
    model.train_step(real_batch(model))
    for name, weights in before.items():
        after = getattr(model, name).get_weights()
        assert any(not np.allclose(a, b) for a, b in zip(after, weights)), name
    assert int(model.g_optimizer.iterations) == 1 and int(model.d_optimizer.iterations) == 1


def test_train_step_runs_the_generator_forward_once():
    model = toy()
    calls = []
    run_generator = model.run_generator
    model.run_generator = lambda *args, **kwargs: calls.append(1) or run_generator(*args, **kwargs)
    model.train_step(real_batch(model))
    assert len(calls) == 1


@pytest.mark.parametrize("name", sorted(n for n, cls in MODELS.items() if "d_depth" in model_params(cls)))
def test_every_gan_offering_d_depth_trains_its_extra_convolutions_and_round_trips(name, tmp_path):
    """d_depth 2: each of the two 16 px stages gets a stride-1 3x3 convolution of its width,
    normalised like the rest of D, and every D kernel learns."""
    model = toy_model(name, (16, 16, 3), latent_dim=4, g_width=4, d_width=4, d_steps=1, d_depth=2)
    kernels = [w for w in model.discriminator.trainable_weights if "kernel" in w.path]
    shapes = [tuple(w.shape) for w in kernels]
    assert shapes[:4] == [(4, 4, 3, 4), (3, 3, 4, 4), (4, 4, 4, 8), (3, 3, 8, 8)]
    kinds = [type(l).__name__ for l in model.discriminator.layers]
    if model.d_norm == "spectral":
        assert kinds.count("SpectralNormalization") == 5  # the four convolutions and the logit
    elif model.d_norm == "batch":
        assert kinds.count("BatchNormalization") == 3  # all but the first convolution, as in DCGAN
    labels = tf.range(8) % 10 if model.needs_labels else None
    before = [w.numpy().copy() for w in kernels]
    model.train_step((real_batch(model), labels) if labels is not None else real_batch(model))
    assert all(not np.allclose(b, w) for b, w in zip(before, kernels))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.get_config()["d_depth"] == 2
    images = real_batch(model)
    if labels is not None:
        np.testing.assert_allclose(
            loaded.discriminate(images, labels, training=False),
            model.discriminate(images, labels, training=False),
            atol=1e-5,
        )
    else:
        np.testing.assert_allclose(
            loaded.discriminator(images, training=False), model.discriminator(images, training=False), atol=1e-5
        )


def test_d_depth_below_one_is_refused_and_biggan_does_not_take_it():
    with pytest.raises(ValueError, match="d_depth must be an integer >= 1, got 0"):
        toy(d_depth=0)
    with pytest.raises(ValueError, match="d_depth deepens a DCGAN discriminator"):
        toy_model("biggan", (16, 16, 3), latent_dim=4, g_width=4, d_width=4, d_depth=2)
