"""Test set-up: two logical CPU devices, so MirroredStrategy can be tested on one CPU.

This must run before TensorFlow initialises its devices, which is why it lives here.
"""

import atexit
import functools
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Caches tfgen writes for the user (the auto-setting measurements) go to a throw-away folder.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="tfgen-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

TOY_CONFIG = """\
model:
  name: dcgan
  latent_dim: 4
  g_width: 4
  d_width: 4
data:
  source: digits
  image_size: 8
  batch_size: 8
  limit: 64
train:
  epochs: 2
  steps_per_epoch: 2
  sample_every: 1
  num_samples: 4
  distribute: none
  jit_compile: false
"""


@pytest.fixture
def toy_config(tmp_path):
    """A tiny digits DCGAN config file whose runs land in tmp_path/runs."""
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_CONFIG + f"run_dir: {tmp_path / 'runs'}\n")
    return path


def pytest_collection_modifyitems(session, config, items):
    """Run the model contract (tests/test_contract.py) on models registered after that file
    was collected too, e.g. by a later test module: a registered model needs no test code."""
    contract = [item for item in items if item.originalname == "test_model_contract"]
    if not contract:
        return
    from tfgen.models.registry import MODELS

    covered = {item.callspec.params["name"] for item in contract}
    module = contract[0].parent
    for name in sorted(set(MODELS) - covered):
        items.append(pytest.Function.from_parent(
            module, name=f"test_model_contract[{name}]", originalname="test_model_contract",
            callobj=functools.partial(module.obj.check_model_contract, name)))
