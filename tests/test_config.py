import dataclasses

import pytest
import yaml

from tfgen.config import config_description, load_config, shipped_configs
from tfgen.errors import ConfigError


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_shipped_config_loads_and_says_what_it_is_in_one_line():
    shipped = shipped_configs()
    assert "digits_dcgan.yaml" in shipped and "mnist5k_dcgan.yaml" in shipped
    for name, path in shipped.items():
        try:
            cfg = load_config(name)
        except ConfigError as exc:  # a config whose images tfgen does not ship: valid once given them
            assert "path is not set" in str(exc), name
            two = "domain_a.path" in str(exc)
            cfg = load_config(name, ["data.domain_a.path=a", "data.domain_b.path=b"] if two else ["data.path=images"])
        assert cfg.name == name[: -len(".yaml")]
        # `tfgen configs` shows the first line's first sentence: a whole one, short enough for a terminal
        first_line = path.read_text().partition("\n")[0]
        assert first_line.startswith("# ") and 20 < len(config_description(path)) <= 100, name
        assert first_line.rstrip().endswith(".") or ". " in first_line, name


def test_a_configs_folder_in_the_working_directory_takes_precedence(tmp_path, monkeypatch):
    local = tmp_path / "configs"
    local.mkdir()
    (local / "digits_dcgan.yaml").write_text("# Mine.\nmodel: {name: vae}\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("digits_dcgan").model.name == "vae"
    assert load_config("digits_vae_gan.yaml").model.name == "vae_gan"  # the rest still come from the package
    with pytest.raises(ConfigError, match=r"did you mean digits_dcgan\.yaml\?"):
        load_config("digits_dcgn")


def test_bare_name_finds_configs_dir_and_defaults_are_filled():
    cfg = load_config("digits_dcgan.yaml")
    assert cfg.data.source == "digits"
    assert cfg.model.name == "dcgan"
    # keys the file leaves out come from the model's constructor defaults
    assert cfg.model.params["d_steps"] == 1
    assert cfg.train.distribute == "auto"


def test_overrides_convert_types(tmp_path):
    path = write(tmp_path, "model: {name: dcgan}\n")
    cfg = load_config(
        str(path),
        [
            "train.epochs=3",
            "model.latent_dim=64",
            "train.learning_rate=1e-4",
            "data.random_flip=true",
            "train.d_learning_rate=null",
            "model.loss=hinge",
        ],
    )
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.model.params["latent_dim"] == 64
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.data.random_flip is True
    assert cfg.train.d_learning_rate is None
    assert cfg.model.params["loss"] == "hinge"


def test_empty_override_is_the_empty_string(tmp_path):
    """`--set model.diffaugment=` turns a shipped policy off; YAML alone would read null."""
    path = write(tmp_path, "model: {name: dcgan, diffaugment: color}\n")
    assert load_config(str(path), ["model.diffaugment="]).model.params["diffaugment"] == ""
    with pytest.raises(ConfigError, match="train.epochs: invalid value ''"):
        load_config(str(path), ["train.epochs="])


def test_text_keys_keep_overrides_that_look_like_numbers(tmp_path):
    path = write(tmp_path, "model: {name: dcgan}\n")
    cfg = load_config(str(path), ["name=2024", "data.path=1.0", "data.name=true"])
    assert (cfg.name, cfg.data.path, cfg.data.name) == ("2024", "1.0", "true")
    assert load_config(str(path), ["name=2024-01-01"]).name == "2024-01-01"  # YAML reads a date
    with pytest.raises(ConfigError, match="name: invalid value 2024; expected a string"):
        load_config(str(write(tmp_path, "name: 2024\n", "in_yaml.yaml")))  # in a file, quote it


def test_override_fills_a_section_whose_keys_are_all_commented_out(tmp_path):
    path = write(tmp_path, "model: {name: dcgan}\ntrain:\n#  epochs: 5\n")
    assert load_config(str(path), ["train.epochs=1"]).train.epochs == 1


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    # YAML 1.1 reads 2e-4 as the string "2e-4"
    cfg = load_config(str(write(tmp_path, "train: {learning_rate: 2e-4}\n")))
    assert cfg.train.learning_rate == pytest.approx(2e-4)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("digits_dcgan.yaml", ["train.epochs=7"])
    dumped = write(tmp_path, yaml.safe_dump(cfg.to_dict()), "resolved.yaml")
    again = load_config(str(dumped))
    assert again.to_dict() == cfg.to_dict()
    assert dataclasses.asdict(again.train)["epochs"] == 7


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        ("train: {epochs: 3, epohcs: 4}\n", [], ["unknown key train.epohcs", "did you mean train.epochs"]),
        ("model: {name: dcgan, latent: 4}\n", [], ["unknown key model.latent", "model.latent_dim"]),
        ("model: {name: dgan}\n", [], ["model.name", "'dgan'", "dcgan"]),
        ("", ["model.name=[1]"], ["--set model.name=[1]", "[1]", "dcgan"]),
        ("data: {source: imagenet}\n", [], ["data.source", "'imagenet'", "'digits'", "'folder'"]),
        ("train: {epochs: three}\n", [], ["train.epochs", "'three'", "an integer"]),
        ("train: {epochs: 2.5}\n", [], ["train.epochs", "an integer"]),
        ("data: {random_flip: 1}\n", [], ["data.random_flip", "true or false"]),
        ("model: {loss: wasserstein}\n", [], ["model.loss", "'non_saturating'", "'hinge'"]),
        ("data: {channels: 2}\n", [], ["data.channels", "one of 1, 3"]),
        ("train: {learning_rate: -0.1}\n", [], ["train.learning_rate", "-0.1", "> 0"]),
        ("data: {image_size: 0}\n", [], ["data.image_size", ">= 8"]),
        ("data: {source: folder}\n", [], ["data.path is not set", "pass --set data.path=/path/to/images"]),
        ("name: ../escape\n", [], ["name", "no path separators"]),
        ("train: [1, 2]\n", [], ["train", "expected a mapping"]),
        ("", ["train.epochs=abc"], ["--set train.epochs=abc", "an integer"]),
        ("", ["trainepochs"], ["--set", "section.key=value"]),
        ("", ["train.nope=1"], ["--set train.nope=1", "unknown key train.nope"]),
    ],
)
def test_bad_values_name_file_key_value_and_what_is_valid(tmp_path, text, overrides, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), overrides)
    message = str(info.value)
    if not overrides:
        assert str(path) in message
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train:\n\tepochs: 3\n", "not valid YAML"),
        ("train: {epochs: 1}\ntrain: {epochs: 2}\n", "duplicate key 'train'"),
        ("train: !!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_unsafe_or_malformed_yaml_is_refused(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(path) in str(info.value) and expected in str(info.value)


def test_missing_config_lists_available():
    with pytest.raises(ConfigError) as info:
        load_config("no_such_config.yaml")
    assert "no_such_config.yaml" in str(info.value)
    assert "digits_dcgan.yaml" in str(info.value)


def test_no_shipped_config_points_beside_the_checkout():
    """A wheel carries no ../shared: a config whose images are not shipped leaves the path unset."""
    for name, path in shipped_configs().items():
        assert "../shared" not in path.read_text(), name


@pytest.mark.parametrize(
    "name, key", [("pokemon_vae_gan.yaml", "data.path"), ("pokemon_art2sprite_cyclegan.yaml", "data.domain_a.path")]
)
def test_a_config_without_its_images_says_in_one_line_what_to_pass(name, key):
    with pytest.raises(ConfigError) as info:
        load_config(name)
    message = str(info.value)
    assert "\n" not in message and message.partition(": ")[0].endswith(name)  # the file first
    assert f"{key} is not set" in message and f"pass --set {key}=/path/to/images" in message
    assert "where such data comes from" in message and "Kaggle" in message
    # the comment the message points at names the data and the command
    text = shipped_configs()[name].read_text()
    assert "kvpratama/pokemon-images-dataset" in text and f"--set {key}=" in text
