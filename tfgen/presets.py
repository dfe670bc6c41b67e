"""Presets: small pretrained models inside the package, used by name without training.

    tfgen presets                                        the list, with their scores
    tfgen generate --preset mnist5k_dcgan --num 64       (or --preset /path/to/a/preset/folder)
    tfgen serve --theme digits=preset:mnist5k_cond_gan
    sampler = tfgen.load("preset:mnist5k_dcgan")          # Python
    keras.layers.TFSMLayer(tfgen.presets.resolve("mnist5k_dcgan").saved_model, "generate_uint8")

A preset is a folder: `preset.json` (what it is, the resolved config it was trained from, the
tfgen version, training time and machine, its `tfgen evaluate` scores, and the command that
rebuilds it: `tools/make_preset.py`) and `saved_model/` (the run's SavedModel export, uint8
signatures included, with its tfgen.json). Nothing in it needs tfgen's model code, so plain
TensorFlow and Keras load it too.

Handles follow keras-hub's `from_preset`: a shipped preset's name (with or without the
`preset:` prefix) or a local preset folder. `kaggle://` and `hf://` handles name a download,
which tfgen does not make; they are refused in one line saying what to do instead.
"""

import dataclasses
import json
from pathlib import Path

from tfgen.errors import ConfigError, RunError

PRESET_DIR = Path(__file__).parent / "presets"
METADATA = "preset.json"
PREFIX = "preset:"
REMOTE_SCHEMES = ("kaggle://", "hf://")


@dataclasses.dataclass(frozen=True)
class Preset:
    """One preset folder: `name`, `path`, `meta` (its preset.json as a dict)."""

    name: str
    path: Path
    meta: dict

    @property
    def saved_model(self):
        """The SavedModel folder inside the preset (for `tf.saved_model.load` / `TFSMLayer`)."""
        return self.path / "saved_model"

    @property
    def handle(self):
        return f"{PREFIX}{self.name}" if self.path.parent == PRESET_DIR else str(self.path)

    def config(self):
        """The resolved config the preset was trained from (a `tfgen.config.Config`)."""
        from tfgen.config import config_from_dict  # noqa: PLC0415  (keeps `tfgen presets` light)

        return config_from_dict(self.meta["config"], f"{self.path / METADATA}: config")

    def sampler(self):
        """A `tfgen.sampling.Sampler` over the preset's SavedModel. Its `cfg` is the training
        config, so the training images can be opened where they are at hand (the studio screens
        avatars against them)."""
        from tfgen.sampling import Sampler  # noqa: PLC0415

        sampler = Sampler.from_export(self.saved_model)
        sampler.description = self.handle
        sampler.cfg = self.config()
        return sampler

    def scores(self):
        """The preset's recorded `tfgen evaluate` scores in one line:
        "FID 1.18 (floor 1.47), precision 0.75, recall 0.87 (10000 samples)"."""
        scores = self.meta.get("scores") or {}
        if "fid" not in scores:
            return ""
        floor = f" (floor {scores['fid_floor']:.2f})" if "fid_floor" in scores else ""
        line = f"FID {scores['fid']:.2f}{floor}"
        line += "".join(f", {k} {scores[k]:.2f}" for k in ("precision", "recall") if k in scores)
        return line + (f" ({scores['num_samples']} samples)" if "num_samples" in scores else "")


def shipped():
    """The presets inside the package: {name: Preset}, sorted by name."""
    if not PRESET_DIR.is_dir():
        return {}
    found = {}
    for folder in sorted(PRESET_DIR.iterdir()):
        if (folder / METADATA).is_file():
            found[folder.name] = read(folder)
    return found


def is_handle(text):
    """Whether `text` names a preset rather than a path: `preset:NAME`, `kaggle://...`, `hf://...`."""
    return str(text).startswith((PREFIX, *REMOTE_SCHEMES))


def read(folder):
    """The Preset in `folder`; RunError naming the file when its preset.json is missing or broken."""
    folder = Path(folder)
    meta_path = folder / METADATA
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise RunError(f"{folder} is not a preset folder: it has no {METADATA}") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{meta_path}: cannot read it ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise RunError(f"{meta_path}: expected a JSON object with a 'config' object (written by tools/make_preset.py)")
    if not (folder / "saved_model" / "saved_model.pb").is_file():
        raise RunError(f"{folder}: the preset has no saved_model/saved_model.pb")
    return Preset(folder.name, folder, meta)


def resolve(handle):
    """The Preset a handle names: `NAME` or `preset:NAME` (shipped), or a local preset folder.

    ConfigError, in one line, for an unknown name and for `kaggle://` / `hf://` handles.
    """
    text = str(handle)
    if text.startswith(REMOTE_SCHEMES):
        raise ConfigError(
            f"{text}: tfgen does not download presets (a kaggle:// or hf:// handle needs the internet and "
            "that hub's client); download the preset folder (preset.json and saved_model/) yourself and pass "
            "its local path, or use a shipped preset (tfgen presets)"
        )
    name = text.removeprefix(PREFIX)
    folder = Path(name).expanduser()
    if not text.startswith(PREFIX) and (folder / METADATA).is_file():
        return read(folder)
    presets = shipped()
    if name in presets:
        return presets[name]
    listed = ", ".join(presets) or "none (this install has no presets/ folder)"
    hint = f"; {folder} is not a preset folder (no {METADATA})" if folder.is_dir() else ""
    raise ConfigError(f"unknown preset {name!r}{hint}; shipped presets: {listed}")
