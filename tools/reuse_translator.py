"""Reusing a trained tfgen translator (CycleGAN) from plain Keras, with no tfgen import.

    python tools/reuse_translator.py --run runs/pokemon_art2sprite_cyclegan --input art.png --out pair.png

The exported SavedModel (`runs/X/saved_model`) has two signatures, `a_to_b` and `b_to_a`
(images in [-1, 1], [B, H, W, C]). Each becomes a frozen `keras.layers.TFSMLayer`, and the
two compose like any Keras layers: here into one model that returns the translation and the
round trip back (what CycleGAN's cycle loss keeps close to the input), written side by side
as input | A -> B | A -> B -> A. `tfgen.json` beside the SavedModel gives the image size,
the run's `config.yaml` whether the input domain was centre-cropped or padded to square.
"""

import argparse
import json
import sys
from pathlib import Path

import keras
import numpy as np
import yaml
from PIL import Image, ImageOps


def cycle_model(saved_model, direction="a2b"):
    """A Keras model: images -> (translated, translated back), from the SavedModel alone."""
    meta = json.loads((Path(saved_model) / "tfgen.json").read_text())
    there, back = ("a_to_b", "b_to_a") if direction == "a2b" else ("b_to_a", "a_to_b")
    images = keras.Input(tuple(meta["image_shape"]), name="images")
    translated = keras.layers.TFSMLayer(str(saved_model), call_endpoint=there, name=there)(images)
    returned = keras.layers.TFSMLayer(str(saved_model), call_endpoint=back, name=back)(translated)
    return keras.Model(images, [translated, returned]), meta


def input_fit(run, direction):
    """How training made the input domain's images square: "crop" or "pad" (its config.yaml)."""
    data = yaml.safe_load((Path(run) / "config.yaml").read_text())["data"]
    domain = data.get("domain_a" if direction == "a2b" else "domain_b") or {}
    return domain.get("fit", data.get("fit", "crop"))


def load_square(path, size, channels, fit="crop"):
    """An image file -> float32 [size, size, channels] in [-1, 1]: upright, on white, and
    centre-cropped or (fit "pad") padded with white to a square."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, image).convert("L" if channels == 1 else "RGB")
    if fit == "pad":
        image = ImageOps.pad(image, (size, size), Image.LANCZOS, color="white")
    else:
        image = ImageOps.fit(image, (size, size), Image.LANCZOS)
    array = np.asarray(image, np.float32).reshape(size, size, channels)
    return array / 127.5 - 1.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished CycleGAN run directory")
    parser.add_argument("--input", required=True, help="an image of domain A (B with --direction b2a)")
    parser.add_argument("--out", required=True, help="PNG to write: input | translated | translated back")
    parser.add_argument("--direction", default="a2b", choices=("a2b", "b2a"))
    args = parser.parse_args(argv)
    model, meta = cycle_model(Path(args.run) / "saved_model", args.direction)
    size, _, channels = meta["image_shape"]
    image = load_square(args.input, size, channels, input_fit(args.run, args.direction))
    translated, returned = model.predict(image[None], verbose=0)
    row = np.concatenate([image, translated[0], returned[0]], axis=1)
    pixels = np.round((np.clip(row, -1, 1) + 1) * 127.5).astype(np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(args.out)
    print(
        f"wrote {args.out}: input | {args.direction} | and back "
        f"(round-trip L1 {np.mean(np.abs(returned[0] - image)):.3f} in [-1, 1] units)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
