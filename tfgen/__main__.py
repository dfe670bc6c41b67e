"""`tfgen <command> [options]`: every tfgen command behind one name, as `git` or `pip` do.

    tfgen train --config digits_dcgan.yaml        (= python -m tfgen.train --config ...)
    tfgen configs                                  the shipped configs, one line each
    tfgen models [NAME ...]                        the registered models, their options and defaults
    tfgen presets                                  the pretrained presets shipped inside tfgen
    tfgen --version

A command is one row of `COMMANDS`: its name, the module whose `main(argv)` runs it, and a
line of help; `python -m tfgen.<module>` keeps working. `configs`, `models` and `presets` only
read what tfgen ships, so they live here.
"""

import argparse
import importlib
import os
import sys
import typing

import yaml

from tfgen import __version__, cli, presets
from tfgen.config import CONFIG_DIR, config_description, first_sentence, shipped_configs

COMMANDS = {
    "train": ("tfgen.train", "train a model from a YAML config"),
    "evaluate": ("tfgen.evaluate", "score a run: FID, KID, IS, precision/recall"),
    "generate": ("tfgen.generate", "images from a run or an exported model"),
    "export": ("tfgen.export", "re-export a run as a SavedModel or .keras file"),
    "translate": ("tfgen.translate", "a user's images through a trained CycleGAN"),
    "serve": ("tfgen.serve", "the avatar studio: a web page and JSON API over trained models"),
    "sweep": ("tfgen.sweep", "train, score and compare a grid of configs"),
    "bench": ("tfgen.bench", "training and sampling throughput"),
}


def configs_command(argv):
    """`tfgen configs`: each shipped config's bare name and one-line description."""
    argparse.ArgumentParser(prog="tfgen configs", description=LISTINGS["configs"][1]).parse_args(argv)
    shipped = shipped_configs()
    width = max(map(len, shipped))
    print(f"shipped configs (in {CONFIG_DIR}; a ./configs folder in the working directory comes first):")
    for name, path in shipped.items():
        print(f"  {name:<{width}}  {config_description(path)}")
    return 0


def models_command(argv):
    """`tfgen models [NAME ...]`: each registered model and its `model:` keys, typed, with defaults.

    Read from the constructor signatures that are the config schema (`registry.model_params`).
    """
    from tfgen.models import registry  # noqa: PLC0415  (imports TensorFlow, which the other listings skip)

    parser = argparse.ArgumentParser(prog="tfgen models", description=LISTINGS["models"][1])
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these models")
    names = parser.parse_args(argv).names
    for name in names:
        if name not in registry.MODELS:
            parser.error(f"unknown model {name!r}; registered: {', '.join(sorted(registry.MODELS))}")
    for name in names or sorted(registry.MODELS):
        cls = registry.get_model_class(name)
        print(f"{name}: {first_sentence((cls.__doc__ or '').strip().splitlines()[0])}")
        for key, (annotation, default) in registry.model_params(cls).items():
            print(f"    {key}: {type_name(annotation)} = {yaml_text(default)}")
    return 0


def presets_command(argv):
    """`tfgen presets`: each shipped preset, what it is, its scores and how to use it."""
    argparse.ArgumentParser(prog="tfgen presets", description=LISTINGS["presets"][1]).parse_args(argv)
    shipped = presets.shipped()
    if not shipped:
        print(f"no presets in this install ({presets.PRESET_DIR} is missing)")
        return 0
    print(f"presets shipped with tfgen {__version__} (in {presets.PRESET_DIR}):")
    for name, preset in shipped.items():
        meta, trained = preset.meta, preset.meta.get("trained", {})
        shape = "x".join(map(str, meta.get("image_shape", ())))
        print(f"  {name}: {meta.get('description', '')}")
        print(f"      {meta['config']['model']['name']}, {shape} px; {preset.scores() or 'not scored'}")
        if trained:
            print(f"      trained {trained['seconds'] / 60:.0f} min on {trained['machine']}: {meta.get('rebuild', '')}")
    print(
        "use: tfgen generate --preset NAME | tfgen serve --theme T=preset:NAME | "
        "tfgen.load('preset:NAME').sample(16, seed=1)"
    )
    return 0


def type_name(annotation):
    """An annotation as a config user reads it: `int`, `hinge | least_squares`, `float | null`."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(yaml_text(a) for a in args)
    if typing.get_origin(annotation) is tuple:  # per-layer options, tuple[int, ...]: a YAML list
        return f"list of {type_name(args[0])}"
    if args:  # Optional[X]
        return " | ".join("null" if a is type(None) else type_name(a) for a in args)
    return annotation.__name__


def yaml_text(value):
    """`value` as it is written in a YAML config (`0.0002`, `true`, `null`, `''`)."""
    value = list(value) if isinstance(value, tuple) else value
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n").removesuffix("\n...")


# Commands that only read what tfgen ships: {name: (function of argv, help)}.
LISTINGS = {
    "configs": (configs_command, "list the shipped configs, one line each"),
    "models": (models_command, "list the registered models with their options and defaults"),
    "presets": (presets_command, "list the pretrained presets shipped with tfgen, with their scores"),
}


def main(argv=None):
    """The `tfgen` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="tfgen",
        description="Train, evaluate, export and reuse image generative models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in [*COMMANDS.items(), *LISTINGS.items()])
        + "\n\n'tfgen <command> --help' describes a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"tfgen {__version__}")
    cli.add_verbose_argument(parser)
    parser.add_argument("command", choices=[*COMMANDS, *LISTINGS], metavar="command")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rest = [*args.args, "--verbose"] if args.verbose else args.args
    if args.command in LISTINGS:
        try:
            return LISTINGS[args.command][0](args.args)
        except BrokenPipeError:  # `tfgen models | head`: the reader has all it wants
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    return importlib.import_module(COMMANDS[args.command][0]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
