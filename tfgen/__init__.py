"""tfgen: a Keras 3 model zoo for image generative models.

Importing the package registers every model class with Keras, so
``keras.saving.load_model("model.keras")`` rebuilds tfgen models after ``import tfgen``.
"""

import os

# TensorFlow's C++ INFO/WARNING lines (CUDA probing, CPU features) drown the training log;
# set TF_CPP_MIN_LOG_LEVEL=0 to see them again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from tfgen import models  # noqa: E402,F401  (registers the model classes)
