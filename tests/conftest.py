"""Test set-up: two logical CPU devices, so MirroredStrategy can be tested on one CPU.

This must run before TensorFlow initialises its devices (before any test module is imported),
which is why it lives here, in pytest_configure.
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
# Under `make test` each core already runs a worker: TensorFlow's own pool of one thread per core
# in every worker (and in the trainings and servers the tests start, which inherit this) would
# put two threads on each core, which costs more than it gives at toy sizes.
if "PYTEST_XDIST_WORKER" in os.environ and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) >= (
    os.cpu_count() or 1
):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import pytest  # noqa: E402

# The modules that take longest (subprocesses, several trainings), started first: `make test`'s
# workers take a module at a time in this order, so they finish at about the same time. (Only
# with --no-loadscope-reorder: by default pytest-xdist hands out the modules with the most tests
# first, which put the two slowest, with one and two tests, last.)
SLOWEST_FIRST = (
    "test_multi_worker.py",
    "test_reliability.py",
    "test_install.py",
    "test_train.py",
    "test_sweep.py",
    "test_cyclegan.py",
    "test_serve.py",
    "test_contract.py",
)


class SlowestFirst:
    """Sorts the collected tests so that SLOWEST_FIRST's modules come first, the rest as collected."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # a stable sort


def pytest_configure(config):
    if getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ:
        return  # the pytest-xdist controller (make test) runs no test: it needs no TensorFlow
    config.pluginmanager.register(SlowestFirst(), "slowest-first")
    # TensorFlow's C++ start-up lines (no CUDA driver, ...) go to file descriptor 2, outside
    # pytest's capture at this point; a Python error still surfaces, after the restore.
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )
    finally:
        os.dup2(saved, 2)
        os.close(saved)


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


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory):
    """The toy config trained once, by `tfgen train`, for the tests that only read a finished
    run (its config file is `toy_run.parent.parent / "toy.yaml"`); `toy_run_copy` gives a
    test its own copy to resume or overwrite."""
    from tfgen import train

    tmp = tmp_path_factory.mktemp("toy_run")
    config = tmp / "toy.yaml"
    config.write_text(TOY_CONFIG + f"run_dir: {tmp / 'runs'}\n")
    assert train.main(["--config", str(config), "--set", "train.jit_compile=false"]) == 0
    return tmp / "runs" / "toy"


@pytest.fixture(scope="session")
def cond_toy_run(tmp_path_factory):
    """The toy config as a cond_gan (digits labels 0-9), trained once for the tests that sample
    it, serve it or keep avatars from it (without --db, the store avatars.db is written there)."""
    from tfgen import train

    tmp = tmp_path_factory.mktemp("cond_toy_run")
    config = tmp / "cond_toy.yaml"
    config.write_text(TOY_CONFIG.replace("name: dcgan", "name: cond_gan") + f"run_dir: {tmp / 'runs'}\n")
    assert train.main(["--config", str(config), "--set", "train.jit_compile=false"]) == 0
    return tmp / "runs" / "cond_toy"


@pytest.fixture
def toy_run_copy(toy_run, toy_config):
    """A copy of `toy_run` in tmp_path/runs/toy: the run `toy_config` would have trained there
    (the one path a run records, config.yaml's run_dir, names the new folder)."""
    run = toy_config.parent / "runs" / "toy"
    shutil.copytree(toy_run, run)
    config = run / "config.yaml"
    text = config.read_text()
    assert f"run_dir: {toy_run.parent}\n" in text
    config.write_text(text.replace(f"run_dir: {toy_run.parent}\n", f"run_dir: {run.parent}\n"))
    return run


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
        items.append(
            pytest.Function.from_parent(
                module,
                name=f"test_model_contract[{name}]",
                originalname="test_model_contract",
                callobj=functools.partial(module.obj.check_model_contract, name),
            )
        )


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a PostgreSQL server for the store's tests: $TFGEN_TEST_POSTGRES (.ci/run starts
    one), else a throw-away one (tests/postgres.py); skipped where PostgreSQL or psycopg is missing."""
    pytest.importorskip("psycopg", reason='PostgreSQL tests need psycopg: pip install "psycopg[binary]"')
    if os.environ.get("TFGEN_TEST_POSTGRES"):
        yield os.environ["TFGEN_TEST_POSTGRES"]
        return
    import tempfile

    import postgres

    if postgres.binaries() is None:
        pytest.skip("PostgreSQL is not installed (no initdb): apt-get install postgresql")
    folder = tempfile.mkdtemp(prefix="tfgen-pg-")
    try:
        yield postgres.start_server(folder)
    finally:
        postgres.stop_server(folder)


@pytest.fixture
def postgres_db(postgres_server):
    """A URL of a fresh, empty database on the test PostgreSQL server."""
    import secrets

    import psycopg

    name = f"tfgen_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"
