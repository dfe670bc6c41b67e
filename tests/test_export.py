import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfgen import train


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    config = tmp / "toy.yaml"
    from conftest import TOY_CONFIG

    config.write_text(TOY_CONFIG + f"run_dir: {tmp / 'runs'}\n")
    assert train.main(["--config", str(config), "--set", "train.jit_compile=false"]) == 0
    return tmp / "runs" / "toy"


def test_saved_model_generates_in_a_fresh_process_without_tfgen(trained_run, tmp_path):
    import keras

    model = keras.saving.load_model(trained_run / "model.keras")
    z = np.random.default_rng(0).standard_normal((5, model.latent_dim)).astype(np.float32)
    expected = model(z).numpy()
    np.save(tmp_path / "z.npy", z)
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(trained_run / "saved_model")!r})
        z = np.load({str(tmp_path / "z.npy")!r})
        images = loaded.signatures["generate"](z=tf.constant(z))
        (out,) = images.values()
        default = loaded.signatures["serving_default"](z=tf.constant(z))
        np.testing.assert_array_equal(list(default.values())[0].numpy(), out.numpy())
        np.save({str(tmp_path / "out.npy")!r}, out.numpy())
        assert not any(m.startswith("tfgen") for m in sys.modules), "tfgen was imported"
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (5, 8, 8, 1)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_saved_model_works_as_a_keras_layer(trained_run):
    import keras

    layer = keras.layers.TFSMLayer(str(trained_run / "saved_model"), call_endpoint="generate")
    out = layer(tf.zeros((2, 4)))
    images = out if isinstance(out, tf.Tensor) else list(out.values())[0]
    assert images.shape == (2, 8, 8, 1)
