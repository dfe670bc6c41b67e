"""Keras callbacks that fill the run directory while `fit` runs.

Two kinds: the pictures a model asks for (`tfgen.callbacks.pictures`, by name in `PICTURES`)
and run control (`tfgen.callbacks.control`: the step guard, checkpoints, resumed metrics,
learning rates, scoring). Both follow one schedule (`tfgen.callbacks.schedule`). All of them
read what they need from the run directory or the model, never from the config, so a resumed
run continues the same files: sample grids from the same fixed latent batch, curves re-drawn
from the whole metrics.csv, checkpoints numbered by global step.
"""

from tfgen.callbacks.control import (  # noqa: F401
    Checkpointer,
    EpochStart,
    Evaluation,
    Guard,
    Interrupted,
    LearningRates,
    NonFiniteLoss,
    ResumeMetrics,
    read_best,
    truncate_metrics,
)
from tfgen.callbacks.pictures import (  # noqa: F401
    EVAL_METRICS,
    PICTURES,
    AtomPictures,
    CorruptedReconstructions,
    Curves,
    SampleGrid,
    TranslationGrid,
    VAEPictures,
    fixed_latent,
    fixed_real_batch,
    plot_curves,
    sample_diversity,
    save_epoch_grid,
    take_examples,
)
from tfgen.callbacks.schedule import is_due, picture_due  # noqa: F401
