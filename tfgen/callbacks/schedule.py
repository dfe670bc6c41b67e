"""When epoch-end work is due: the one schedule every picture, checkpoint and score follows."""


def is_due(epoch, every, last_epoch, model=None):
    """Whether work done every `every` epochs is due after the 1-based `epoch`: a multiple of
    `every`, or the last epoch (also when the time budget ends training with it: the Guard,
    first in the callback list, has then set the model's stop_training)."""
    return epoch % every == 0 or epoch == last_epoch or bool(getattr(model, "stop_training", False))


def picture_due(epoch, every, last_epoch, model=None):
    """Whether a picture is drawn after the 1-based `epoch`: as `is_due`, and also after the
    first epoch, so a run shows what it learns from the start."""
    return epoch == 1 or is_due(epoch, every, last_epoch, model)
