"""Model zoo. Each module defines one registered `keras.Model` subclass."""

from tfgen.models import (  # noqa: F401,E402
    aae,
    biggan,
    cond_gan,
    cond_vae,
    conv_vae,
    cyclegan,
    dcgan,
    ddpm,
    flow_matching,
    sdpc,
    sdpc_gan,
    sngan,
    vae,
    vae_gan,
    wgan_gp,
)
from tfgen.models.registry import MODELS, get_model_class, model_params, register  # noqa: F401
