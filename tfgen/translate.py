"""`tfgen translate --run runs/X --direction a2b --input photo.jpg|folder --out DIR`

Translates a user's own images with a trained two-domain model (CycleGAN). Every input goes
through the training preprocessing of its domain: decoded with Pillow, EXIF orientation
applied, transparency on white, then centre-cropped (or padded, if that domain was trained
with `fit: pad`) to the model's size. Each output is a PNG at the model's size named after
its input (`photo.jpg` -> `DIR/photo.png`, sub-folders kept, never over an input);
`--side-by-side` writes
input | output pairs instead. Files that do not decode are named in one line and skipped.
"""

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from tfgen import cli, images
from tfgen.data import folder, pipeline
from tfgen.errors import ConfigError, DataError, RunError
from tfgen.runs import command_for, load_run

log = logging.getLogger("tfgen")

DIRECTIONS = ("a2b", "b2a")
BATCH = 16


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="tfgen translate", description="Translate your images with a trained two-domain model (CycleGAN)."
    )
    parser.add_argument("--run", required=True, help="a finished run directory, e.g. runs/pokemon_art2sprite_cyclegan")
    parser.add_argument("--direction", default="a2b", help="a2b (domain A to B, the default) or b2a")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--out", required=True, help="folder for the translated PNGs")
    parser.add_argument("--side-by-side", action="store_true", help="write input | output pairs")
    cli.add_verbose_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """CLI entry point; returns the exit status (2 for errors the user can fix)."""
    return cli.run(_translate_command, parse_args(argv))


def input_files(path, out):
    """[(file, output name relative to `out`)] for a file or a folder (recursively).

    `photo.jpg` -> `photo.png`; inputs that would share a name (`a.jpg`, `a.png`) keep their
    extension in it (`a.jpg.png`, `a.png.png`). Refuses to write over any input.
    """
    path = Path(path)
    if path.is_file():
        files, root = [path], path.parent
    elif path.is_dir():
        files, root = folder.find_images(path)[0], path
    else:
        raise DataError(f"--input: {path} does not exist")
    names = [f.relative_to(root).with_suffix(".png") for f in files]
    clashes = {n for n in names if names.count(n) > 1}
    names = [f.relative_to(root).with_name(f.name + ".png") if n in clashes else n for f, n in zip(files, names)]
    inputs = {f.resolve() for f in files}
    for name in names:
        if (Path(out) / name).resolve() in inputs:
            raise ConfigError(f"--out: {out} would overwrite the input {Path(out) / name}; choose another folder")
    return list(zip(files, names))


def prepare(path, image_size, channels, fit):
    """An image file -> float32 [size, size, channels] in [-1, 1], as training saw its domain."""
    array = folder.load_image(path, image_size)
    return pipeline.to_signed_unit(pipeline.standardize(array, image_size, channels, fit)).numpy()


def translate_files(model, direction, files, out, fit, side_by_side=False):
    """Translate `files` ([(file, output name)]) into `out`: (written paths, skipped files)."""
    size, _, channels = model.image_shape
    written, skipped = [], []
    for start in range(0, len(files), BATCH):
        batch, names = [], []
        for path, name in files[start : start + BATCH]:
            try:
                batch.append(prepare(path, size, channels, fit))
                names.append(name)
            except Exception as exc:  # noqa: BLE001  (Pillow raises many kinds for a broken file)
                skipped.append(f"{path} ({str(exc).splitlines()[0][:120] or type(exc).__name__})")
        if not batch:
            continue
        inputs = np.stack(batch)
        outputs = images.to_uint8(np.asarray(model.translate(inputs, direction)))
        for image, output, name in zip(images.to_uint8(inputs), outputs, names):
            picture = np.concatenate([image, output], axis=1) if side_by_side else output
            target = Path(out) / name
            images.save_png(target, picture)
            written.append(target)
    return written, skipped


def _translate_command(args):
    if args.direction not in DIRECTIONS:
        raise ConfigError(f"--direction: unknown direction {args.direction!r}; valid: {', '.join(DIRECTIONS)}")
    files = input_files(args.input, args.out)
    cfg, model = load_run(args.run)
    if not model.translates:
        raise ConfigError(
            f"--run: {args.run} holds a {cfg.model.name} model, which does not translate images; "
            f"{command_for(model)[1]}"
        )
    domain = cfg.data.domain_a if args.direction == "a2b" else cfg.data.domain_b
    try:
        written, skipped = translate_files(model, args.direction, files, args.out, domain.fit, args.side_by_side)
    except OSError as exc:
        raise RunError(f"--out: cannot write {exc.filename or args.out}: {exc.strerror or exc}") from None
    if skipped:
        log.warning(
            "skipped %d of %d files that could not be decoded: %s",
            len(skipped),
            len(files),
            "; ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""),
        )
    if not written:
        raise DataError(f"--input: nothing to translate: {'; '.join(skipped[:5])}")
    print(f"translated {len(written)} image(s) {args.direction} into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
