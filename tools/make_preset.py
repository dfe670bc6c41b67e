"""Train a shipped config with a fixed seed and package it as a preset in tfgen/presets/NAME/.

    python tools/make_preset.py --config mnist5k_dcgan.yaml                 # train, score, package
    python tools/make_preset.py --config mnist5k_cond_ddpm.yaml --set model.width=16
    python tools/make_preset.py --config mnist5k_dcgan.yaml --from-run runs/mnist5k_dcgan --train-seconds 352

What a preset holds (`tfgen.presets`): `saved_model/` (the run's generator exported with uint8
signatures, its tfgen.json beside), `samples.png` (a fixed-seed grid, to look at), and
`preset.json`: the resolved config, the tfgen and TensorFlow versions, the training time and
machine, the `tfgen evaluate` scores (FID and precision/recall on the classifier features,
`--num` samples) and the command that rebuilds it. Rebuilding on another machine gives a
model trained the same way, not the same bits: float rounding differs between CPUs.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfgen  # noqa: E402
from tfgen import autotune, cli, images, presets, scoring  # noqa: E402
from tfgen.config import load_config  # noqa: E402
from tfgen.errors import ConfigError  # noqa: E402
from tfgen.export import export_saved_model, run_class_names  # noqa: E402
from tfgen.runs import load_run  # noqa: E402
from tfgen.sampling import grid_columns, grid_labels  # noqa: E402
from tfgen.training import train_from_config  # noqa: E402


def write_samples(folder):
    """samples.png: a fixed-seed grid of the preset as `tfgen generate --seed 0` draws it: 8 x 8,
    or for a conditional model 8 per class, a row each."""
    sampler = presets.read(folder).sampler()
    count = 8 * len(sampler.class_names) if sampler.conditional else 64
    z = sampler.noise(np.random.default_rng(0), count)
    pictures = sampler.images(z, grid_labels(sampler, count, None))
    grid = images.make_grid(images.to_uint8(pictures), columns=grid_columns(sampler, count, None) or 8)
    images.save_png(folder / "samples.png", grid)


def machine():
    """This machine in words: CPU name and cores (and the GPU, if TensorFlow sees one)."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return f"GPU {tf.config.experimental.get_device_details(gpus[0]).get('device_name', 'GPU')}"
    name, _ = autotune.cpu_name_and_flags()
    return f"{name or platform.processor()}, {os.cpu_count()} cores"


def package(run, name, description, seconds, num, rebuild, out_dir):
    """Score `run`, export it and write the preset folder `out_dir/name`; returns its path."""
    cfg, model = load_run(run)
    result = scoring.evaluate_run(run, ["fid", "pr"], num, "classifier", seed=0)
    scores = {k: round(float(result[k]), 4) for k in ("fid", "precision", "recall") if k in result}
    scores["fid_floor"] = round(float(result["real_vs_real"]["fid"]), 4)  # real vs real at this sample size
    scores["num_samples"] = result.get("num_samples", num)
    class_names = run_class_names(run, cfg, model)
    target = Path(out_dir) / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_dir))
    staging.chmod(0o755)  # mkdtemp makes it private; a preset is read by everyone who installs it
    try:
        export_saved_model(model, staging / "saved_model", class_names, uint8=True)
        meta = {
            "name": name,
            "description": description,
            "image_shape": list(model.image_shape),
            "class_names": list(class_names),
            "config": {**cfg.to_dict(), "run_dir": "runs"},
            "tfgen_version": tfgen.__version__,
            "tensorflow_version": tf.__version__,
            "trained": {
                "seconds": round(seconds),
                "epochs": cfg.train.epochs,
                "machine": machine(),
                "date": datetime.date.today().isoformat(),
            },
            "scores": scores,
            "scored_with": "tfgen evaluate --metric fid,pr --extractor classifier --seed 0 "
            f"--num {num} (classifier features of the training data)",
            "rebuild": rebuild,
        }
        (staging / presets.METADATA).write_text(json.dumps(meta, indent=1) + "\n")
        write_samples(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a shipped config's name or a YAML file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--seed", type=int, default=0, help="train.seed (default 0)")
    parser.add_argument("--name", help="the preset's name (default: the config's name)")
    parser.add_argument("--description", default="", help="one line for tfgen presets")
    parser.add_argument(
        "--from-run", type=Path, help="package this finished run of the same config and --set instead of training"
    )
    parser.add_argument("--train-seconds", type=float, help="with --from-run: how long it trained (from its log)")
    parser.add_argument("--num", type=int, default=10000, help="samples to score (default 10000)")
    parser.add_argument("--out", type=Path, default=presets.PRESET_DIR, help="where preset folders go")
    args = parser.parse_args(argv)
    if args.from_run and args.train_seconds is None:
        parser.error("--from-run needs --train-seconds (the run's training time, from its log)")
    return cli.run(make, args)


def make(args):
    """Train (or take --from-run), score, export and write the preset; the exit status."""
    name = args.name or Path(args.config).stem
    overrides = [*args.set, f"train.seed={args.seed}", f"name={name}"]
    cfg = load_config(args.config, overrides)
    rebuild = " ".join(["python tools/make_preset.py --config", args.config, *(f"--set {s}" for s in args.set)])
    rebuild += f" --seed {args.seed}"
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_run:
        recorded = load_config(str(args.from_run / "config.yaml"))
        for section in ("model", "data", "train"):
            want, got = cfg.to_dict()[section], recorded.to_dict()[section]
            # auto speed settings are recorded resolved; the rest must be what --config and --set say
            differ = [k for k in want if want[k] != got.get(k) and want[k] != "auto"]
            if differ:
                raise ConfigError(
                    f"--from-run {args.from_run}: {section}.{differ[0]} is {got.get(differ[0])!r}, "
                    f"not {want[differ[0]]!r} as --config and --set say"
                )
        run, seconds = args.from_run, args.train_seconds
    else:
        start = time.monotonic()
        stop = train_from_config(args.config, overrides, overwrite=True)
        seconds = time.monotonic() - start
        if stop is not None:
            raise SystemExit(f"make_preset: training stopped ({stop.reason}); nothing packaged")
        run = Path(cfg.run_dir) / cfg.name
    target = package(run, name, args.description, seconds, args.num, rebuild, args.out)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    print(f"written: {target} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
