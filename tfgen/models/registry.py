"""Model registry: config name -> `keras.Model` subclass.

A model is added by decorating its class with `@register("name")`. The constructor's
keyword arguments (with type annotations and defaults) *are* the config schema of the
`model:` section, so a new model needs no config code of its own. Arguments the training
script supplies itself (`INJECTED_ARGS`) are not user-settable.
"""

import inspect
import typing

import keras

MODELS: dict = {}

# Filled in by tfgen.experiment.build_model from the data and train sections, never from `model:`.
INJECTED_ARGS = ("image_shape", "num_classes", "seed")


def register(name):
    """Register a model class under `name` and as Keras-serializable (package "tfgen")."""

    def decorator(cls):
        if name in MODELS:
            raise ValueError(f"model name {name!r} is registered twice")
        MODELS[name] = keras.saving.register_keras_serializable(package="tfgen")(cls)
        cls.registry_name = name
        return cls

    return decorator


def get_model_class(name):
    """The class registered as `name`; KeyError if there is none."""
    return MODELS[name]


def model_params(cls):
    """User-settable constructor arguments of `cls`: {name: (annotation, default)}.

    Besides its own, the options a base class lists in `shared_options` (e.g. DCGAN's top-k
    for every GAN built on it), which subclasses pass through **kwargs.
    """
    params = _own_params(cls)
    for name in getattr(cls, "shared_options", ()):
        if name not in params:
            owner = next(base for base in cls.__mro__ if name in _own_params(base))
            params[name] = _own_params(owner)[name]
    return params


def _own_params(cls):
    hints = typing.get_type_hints(cls.__init__)
    params = {}
    for pname, p in inspect.signature(cls.__init__).parameters.items():
        if pname == "self" or pname in INJECTED_ARGS:
            continue
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        params[pname] = (hints.get(pname, type(p.default)), p.default)
    return params
