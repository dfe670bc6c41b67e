"""The model contract (`tfgen.models.base`), checked on every registered model.

One parametrized test runs `check_model_contract` over the registry, so a model added with
`@register` is covered with no test code of its own, including one registered in a test
module (conftest.py adds the models registered after this file was collected). A model is
built at toy size from its own defaults: every `*width` argument shrinks to 8 and
`latent_dim` to 8 where the model has them; `TOY_OPTIONS` holds the few values a model
needs beyond that.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfgen  # noqa: F401  (registers the models)
from tfgen import callbacks, optimizers
from tfgen.errors import ConfigError
from tfgen.export import export_saved_model
from tfgen.models import base
from tfgen.models.registry import MODELS, model_params
from tfgen.sampling import Sampler

TOY_SHAPE = (16, 16, 3)
BATCH = 4
NUM_CLASSES = 3
# Options a model needs at toy size beyond the generic shrinking (keep this short).
TOY_OPTIONS = {
    "sdpc": {"channels": [4, 4], "iterations": 5},
    "sdpc_gan": {"channels": [4, 4], "iterations": 5},
    # the U-Net denoisers: a sampling loop of 25 U-Net calls is traced for every signature
    **{
        name: {"levels": 2, "block_depth": 1, "sampling_steps": 2}
        for name in ("ddpm", "cond_ddpm", "flow_matching", "cond_flow_matching")
    },
}


def toy_model(name):
    """The registered model `name` at toy size, compiled with one Adam (tfgen's, as training) per optimizer."""
    cls = MODELS[name]
    params = model_params(cls)
    kwargs = {
        key: 8
        for key, (hint, default) in params.items()
        if (key == "latent_dim" or key.endswith("width")) and isinstance(default, int)
    }
    kwargs.update(TOY_OPTIONS.get(name, {}))
    kwargs = {"image_shape": TOY_SHAPE, "seed": 3, **kwargs}
    if cls.needs_labels:
        kwargs["num_classes"] = NUM_CLASSES
    model = cls(**kwargs)
    model.compile(jit_compile=False, **{n: optimizers.Adam(1e-2) for n in cls.optimizer_names})
    # Eager steps: tracing a GAN's step costs 10-20 s on 2 cores (CycleGAN 23 s traced, 3 s
    # eager); each model's own test file trains it under tf.function.
    model.run_eagerly = True
    return model


def toy_batches(model, steps=1):
    """A dataset of `steps` training steps shaped as the training script feeds `model`."""
    count = BATCH * model.real_batches_per_step * steps
    rng = np.random.default_rng(0)

    def domain():
        images = rng.uniform(-1, 1, (count, *model.image_shape)).astype(np.float32)
        labels = (np.arange(count) % NUM_CLASSES).astype(np.int32)
        return images, labels

    data = (domain(), domain()) if model.domains == 2 else domain()
    return tf.data.Dataset.from_tensor_slices(data).batch(BATCH * model.real_batches_per_step)


def toy_inputs(model, n=BATCH):
    """(method name, positional inputs) of the model's main output for comparisons."""
    rng = np.random.default_rng(1)
    if model.samples_from_noise:
        noise = model.sample_noise(n, rng)
        labels = (np.arange(n) % NUM_CLASSES).astype(np.int32) if model.needs_labels else None
        return "generate", (noise, labels)
    images = rng.uniform(-1, 1, (n, *model.image_shape)).astype(np.float32)
    if model.translates:
        return "translate", (images, "a2b")
    return "reconstruct", (images,)


def outputs(model, method, inputs):
    return np.asarray(getattr(model, method)(*inputs))


def optimizer_variables(model):
    """{optimizer name: its trainable variables}, as `compile` built them."""
    return {name: model.trainable_variables_of(nets) for name, nets in model.optimizer_names.items()}


def check_declarations(model):
    cls = type(model)
    for flag, method in base.CAPABILITY_METHODS.items():
        overridden = getattr(cls, method) is not getattr(base.GenerativeModel, method)
        assert not getattr(cls, flag) or overridden, f"{flag} declared without {method}()"
    assert set(model.pictures) <= set(callbacks.PICTURES), model.pictures
    if "samples" in model.pictures:
        assert model.samples_from_noise
    if "translations" in model.pictures:
        assert model.translates
    if "reconstructions" in model.pictures:
        assert model.reconstructs and model.encodes
    for network in model.export_networks:
        assert isinstance(getattr(model, network), keras.layers.Layer), network
    assert model.optimizer_names and all(
        isinstance(getattr(model, net), keras.layers.Layer) for nets in model.optimizer_names.values() for net in nets
    )
    assert tuple(model.noise_shape) and model.noise_size == int(np.prod(model.noise_shape))
    assert isinstance(model.sampling_options, dict)
    assert isinstance(model.sampling_calls, int) and model.sampling_calls >= 1
    generate_params = inspect.signature(model.generate).parameters
    for option in model.sampling_options:
        assert option in generate_params or any(p.kind == p.VAR_KEYWORD for p in generate_params.values())


def check_fit_step(model):
    """`fit` moves the variables each optimizer owns, and no trainable variable outside
    them but an EMA copy (`ema_<network>`) of a trained network.

    Two steps, not one: a zero-initialised gate (BigGAN's attention gain, its conditional
    norms' projections) passes no gradient to the layers before it until it has moved once.
    Biases may stay: a critic's output bias has zero gradient under the hinge and
    Wasserstein losses (shifting every score changes neither).
    """
    owned = optimizer_variables(model)
    owned_ids = {id(v) for variables in owned.values() for v in variables}
    trained = {net for nets in model.optimizer_names.values() for net in nets}
    averaged = {
        id(v)
        for net in trained
        if hasattr(model, f"ema_{net}")
        for v in getattr(model, f"ema_{net}").trainable_variables
    }
    others = [v for v in model.trainable_variables if id(v) not in owned_ids | averaged]
    before = {id(v): np.array(v) for v in model.trainable_variables}
    history = model.fit(toy_batches(model, steps=2), epochs=1, verbose=0).history
    assert history and all(np.isfinite(values[-1]) for values in history.values()), history

    def unmoved(variables):
        return [v.path for v in variables if np.array_equal(before[id(v)], np.array(v))]

    for name, variables in owned.items():
        kernels = [v for v in variables if not v.path.endswith("bias")]
        assert not unmoved(kernels), f"{name} did not move {unmoved(kernels)}"
    moved = [v.path for v in others if not unmoved([v])]
    assert not moved, f"trainable variables outside every optimizer moved: {moved}"


def check_outputs(model, method, inputs):
    out = outputs(model, method, inputs)
    assert out.shape == (BATCH, *model.image_shape)
    assert np.isfinite(out).all() and out.min() >= -1.0 and out.max() <= 1.0


def check_config_round_trip(model):
    config = model.get_config()
    assert type(model).from_config(config).get_config() == config


def check_keras_round_trip(model, method, inputs, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(outputs(loaded, method, inputs), outputs(model, method, inputs))


def check_saved_model(model, method, inputs, tmp_path):
    """The SavedModel's first signature (`serving_default`) reproduces the model's main output
    from plain TensorFlow: generate(z[, label]) for a sampling model."""
    path = export_saved_model(model, tmp_path / "saved_model")
    signatures = tf.saved_model.load(str(path)).signatures
    assert set(model.export_endpoints()) <= set(signatures)
    if model.samples_from_noise:
        noise, labels = inputs
        feed = {"z": noise, "label": labels} if model.needs_labels else {"z": noise}
        got = signatures["serving_default"](**{k: tf.constant(v) for k, v in feed.items()})
    elif model.translates:
        got = signatures["a_to_b"](images=tf.constant(inputs[0]))
    else:
        got = signatures["reconstruct"](images=tf.constant(inputs[0]))
    got = next(iter(got.values()))
    np.testing.assert_allclose(np.asarray(got), outputs(model, method, inputs), atol=1e-5)


def check_model_contract(name, tmp_path):
    """Everything the rest of tfgen relies on, for the registered model `name`."""
    model = toy_model(name)
    method, inputs = toy_inputs(model)
    check_declarations(model)
    check_outputs(model, method, inputs)
    check_fit_step(model)
    check_outputs(model, method, inputs)
    check_config_round_trip(model)
    check_keras_round_trip(model, method, inputs, tmp_path)
    check_saved_model(model, method, inputs, tmp_path)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_contract(name, tmp_path):
    check_model_contract(name, tmp_path)


def test_a_declared_capability_needs_its_method():
    with pytest.raises(TypeError, match="declares reconstructs = True but does not define reconstruct"):
        type("Broken", (base.GenerativeModel,), {"reconstructs": True, "samples_from_noise": False})


def test_a_translator_trains_on_two_domains():
    with pytest.raises(TypeError, match="translator trains on two domains"):
        type(
            "Broken",
            (base.GenerativeModel,),
            {
                "translates": True,
                "samples_from_noise": False,
                "translate": lambda self, images, direction="a2b": images,
            },
        )


def test_unknown_sampling_options_are_named():
    sampler = Sampler.from_model(toy_model("dcgan"), description="toy dcgan")
    with pytest.raises(ConfigError, match="toy dcgan: no sampling option steps; its options: none"):
        sampler.sample(2, seed=0, steps=10)
    assert sampler.sample(2, seed=0).shape == (2, *TOY_SHAPE)


def test_sample_noise_has_the_declared_shape_and_truncation():
    model = toy_model("dcgan")
    noise = model.sample_noise(64, np.random.default_rng(0), truncation=0.5)
    assert noise.shape == (64, *model.noise_shape) and noise.dtype == np.float32
    assert np.abs(noise).max() <= 0.5
    again = model.sample_noise(64, np.random.default_rng(0), truncation=0.5)
    np.testing.assert_array_equal(noise, again)
