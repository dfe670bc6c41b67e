"""tfgen: a Keras 3 model zoo for image generative models.

Importing the package registers every model class with Keras, so
``keras.saving.load_model("model.keras")`` rebuilds tfgen models after ``import tfgen``
(except in a ``tfgen configs``, ``presets``, ``--version`` or ``--help`` process, which reads
only shipped files and skips TensorFlow: `cli.needs_tensorflow`).
From other Python code: ``tfgen.load(path).sample(n, seed=...)`` for a trained model and
``tfgen.build(config, **overrides)`` for a compiled model and its data (see `tfgen.api`).
"""

import os

from tfgen import cli

# TensorFlow's C++ INFO/WARNING lines (CUDA probing, CPU features) drown the training log.
# TensorFlow reads TF_CPP_MIN_LOG_LEVEL when it is imported, so this must come first.
_NEEDS_TENSORFLOW = cli.needs_tensorflow()  # read once: it parses the command line
if not _NEEDS_TENSORFLOW:
    pass  # `tfgen configs`, `presets`, `--version`, `--help`: only shipped files are read
elif cli.hides_tensorflow_logs():
    # A tfgen command without --verbose: also hide C++ ERROR lines (a failed cuInit on a CPU
    # machine) and the start-up notices no log level reaches. Python exceptions still surface.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with cli.tensorflow_startup_lines_hidden():
        import tensorflow  # noqa: F401
elif not cli.started_as_command():
    # Imported as a library; set TF_CPP_MIN_LOG_LEVEL=0 to see them again.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

if _NEEDS_TENSORFLOW:
    from tfgen import models  # noqa: F401  (registers the model classes)
    from tfgen.api import build, load  # noqa: F401
