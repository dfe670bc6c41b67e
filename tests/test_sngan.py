import keras
import numpy as np
import tensorflow as tf
from helpers import assert_keras_round_trip, real_images, toy_model


def largest_singular_values(model):
    """sigma_max of each spectrally normalised layer's effective (normalised) kernel."""
    values = []
    for layer in model.discriminator.layers:
        if isinstance(layer, keras.layers.SpectralNormalization):
            kernel = layer.layer.kernel.numpy()
            values.append(np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0])
    return values


def test_every_weight_layer_is_spectrally_normalised_and_stays_near_one():
    model = toy_model("sngan", latent_dim=4, g_width=4, d_width=4, lr=1e-2)
    wrapped = [l for l in model.discriminator.layers if isinstance(l, keras.layers.SpectralNormalization)]
    weight_layers = [l for l in model.discriminator.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(wrapped) == 2 and not weight_layers  # the conv (one at 8 px) and the logit
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in model.discriminator.layers)
    for _ in range(20):  # power iteration converges over steps while large updates push sigma up
        model.train_step(real_images(model, 8))
    for sigma in largest_singular_values(model):
        assert 0.8 < sigma < 1.2


def test_defaults_are_hinge_and_spectral_and_round_trip(tmp_path):
    model = toy_model("sngan", latent_dim=4, g_width=4, d_width=4)
    assert model.loss == "hinge" and model.d_norm == "spectral"
    model.train_step(real_images(model, 8))
    assert_keras_round_trip(model, tmp_path, tf.random.normal((2, 4)))


def test_mixed_precision_keeps_spectrally_normalised_kernels_in_float32():
    # Keras writes W / sigma back into the kernel each training call; in bfloat16 that rounded
    # every kernel to bfloat16 and erased the optimizer's updates.
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = toy_model("sngan", latent_dim=4, g_width=4, d_width=4)
        model.train_step(real_images(model, n=8))
        for layer in model.discriminator.layers:
            if isinstance(layer, keras.layers.SpectralNormalization):
                kernel = layer.layer.kernel.value.numpy()
                rounded = tf.cast(tf.cast(kernel, tf.bfloat16), tf.float32).numpy()
                assert not np.array_equal(kernel, rounded)
                if isinstance(layer.layer, keras.layers.Conv2D):  # (the logit layer is float32)
                    assert layer.layer.compute_dtype == "bfloat16"  # the convolution stays fast
    finally:
        keras.mixed_precision.set_global_policy("float32")
