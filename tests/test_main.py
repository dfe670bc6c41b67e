"""The `tfgen` command: subcommands dispatch to the modules; `configs` and `models` list what ships."""

import pytest

import tfgen
from tfgen import __main__ as command
from tfgen.config import config_description, shipped_configs
from tfgen.models import registry


def test_configs_lists_every_shipped_config_with_its_description(capsys):
    assert command.main(["configs"]) == 0
    out = capsys.readouterr().out
    for name, path in shipped_configs().items():
        assert f"  {name}" in out and config_description(path) in out
    assert "Class-conditional GAN (projection D, hinge loss) on real MNIST (offline), 28 px" in out


def test_models_lists_options_and_defaults_from_the_constructors(capsys):
    assert command.main(["models"]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if not line.startswith(" ")] == sorted(registry.MODELS)
    assert command.main(["models", "dcgan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("dcgan: ")
    assert "    loss: non_saturating | hinge | least_squares = non_saturating" in lines
    assert "    top_k: bool = false" in lines and "    diffaugment: str = ''" in lines
    assert len(lines) == 1 + len(registry.model_params(registry.get_model_class("dcgan")))
    # an optional value reads as YAML writes it, and so does a per-layer list
    assert command.type_name(float | None) == "float | null"
    assert command.main(["models", "sdpc"]) == 0
    assert "    lambdas: list of float = [0.3, 0.3]" in capsys.readouterr().out.splitlines()


def test_unknown_model_or_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        command.main(["models", "dcgna"])
    assert exit_.value.code == 2 and "unknown model 'dcgna'; registered: aae, biggan" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        command.main(["trian"])
    assert exit_.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err


def test_version_and_help_name_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        command.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"tfgen {tfgen.__version__}"
    with pytest.raises(SystemExit):
        command.main(["--help"])
    out = capsys.readouterr().out
    for name in (*command.COMMANDS, "configs", "models"):
        assert f"\n  {name} " in out


def test_subcommands_call_their_modules_main_with_the_rest_of_the_line(monkeypatch):
    calls = []
    for name, (module, _) in command.COMMANDS.items():
        monkeypatch.setattr(f"{module}.main", lambda argv, name=name: calls.append((name, argv)) or 0)
    assert command.main(["train", "--config", "x.yaml", "--set", "train.epochs=1"]) == 0
    assert command.main(["--verbose", "generate", "--run", "r"]) == 0  # --verbose before the command too
    assert calls == [
        ("train", ["--config", "x.yaml", "--set", "train.epochs=1"]),
        ("generate", ["--run", "r", "--verbose"]),
    ]
