"""The image-folder source: layouts, labels, skip reports, and the awkward files real folders hold."""

import io
import logging

import numpy as np
import pytest
from PIL import Image

from tfgen.config import DataConfig
from tfgen.data import build_dataset
from tfgen.data.folder import find_images, list_images, load_image
from tfgen.errors import DataError

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)
ORIENTATION = 0x0112  # the EXIF tag phones write instead of rotating the pixels


def signed(rgb):
    """uint8 colour -> the [-1, 1] value the pipeline should produce for it."""
    return np.asarray(rgb, np.float32) / 127.5 - 1.0


def collect(dataset):
    """(images, labels) of a batched dataset, each concatenated along the batch axis."""
    batches = list(dataset.as_numpy_iterator())
    return tuple(np.concatenate(part) for part in zip(*batches))


def folder_cfg(path, **kw):
    kw = {"image_size": 8, "channels": 3, "batch_size": 2, "cache": False, "shuffle_buffer": 1, **kw}
    return DataConfig(source="folder", path=str(path), **kw)


def skip_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "tfgen" and r.levelno == logging.WARNING]


# --------------------------------------------------------------------------- layouts and reports


@pytest.fixture
def mixed_folder(tmp_path):
    """Six decodable images in assorted formats and modes, two broken files and a text file.

    Sorted names fix the order in which the pipeline (shuffle_buffer=1) yields them.
    """
    root = tmp_path / "mixed"
    root.mkdir()
    Image.new("RGB", (12, 12), RED).save(root / "a_rgb.png")
    Image.new("RGB", (12, 12), BLUE).save(root / "b_rgb.jpg", quality=95)
    Image.new("L", (12, 12), 64).save(root / "c_gray.png")
    Image.new("RGBA", (12, 12), (255, 0, 0, 0)).save(root / "d_clear.png")  # transparent red
    Image.new("RGB", (12, 12), GREEN).convert("P").save(root / "e_palette.png")
    wide = np.zeros((10, 30, 3), np.uint8)  # 30 wide, 10 high: red | green | blue bands
    wide[:, :10] = RED
    wide[:, 10:20] = GREEN
    wide[:, 20:] = BLUE
    Image.fromarray(wide).save(root / "f_wide.png")
    (root / "bad.png").write_bytes(bytes(range(256)) * 4)
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_decodes_formats_and_skips_broken_files(mixed_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="tfgen"):
        data = build_dataset(folder_cfg(mixed_folder, batch_size=3))
    assert sorted(data.skipped) == [str(mixed_folder / "bad.png"), str(mixed_folder / "empty.jpg")]
    assert data.num_examples == 6
    assert data.class_names == []
    assert data.image_shape == (8, 8, 3)
    [message] = skip_warnings(caplog)
    assert "3 of 9 files" in message
    assert "2 could not be decoded" in message and "bad.png" in message and "empty.jpg" in message
    assert "1 not in a supported image format" in message and "notes.txt" in message

    images, _ = collect(data.dataset)
    assert images.dtype == np.float32 and images.shape == (6, 8, 8, 3)
    # the folder's order is mixed once on purpose: find each expected image among them
    expected = [
        (np.broadcast_to(signed(RED), (8, 8, 3)), (slice(None), slice(None)), 1e-6),
        (np.broadcast_to(signed(BLUE), (8, 8, 3)), (slice(None), slice(None)), 0.05),
        (np.full((8, 8, 3), 64 / 127.5 - 1), (slice(None), slice(None)), 1e-6),
        (np.ones((8, 8, 3)), (slice(None), slice(None)), 1e-6),  # transparent: composited on white
        (np.broadcast_to(signed(GREEN), (8, 8, 3)), (slice(None), slice(None)), 1e-6),  # palette
        # 30x10 -> resized to 24x8 and centre-cropped to 8x8: the green middle band, not a squash
        (np.broadcast_to(signed(GREEN), (8, 6, 3)), (slice(None), slice(1, 7)), 0.02),
    ]
    unmatched = list(range(len(images)))
    for want, region, tolerance in expected:
        match = next((i for i in unmatched if np.allclose(images[i][region], want, atol=tolerance)), None)
        assert match is not None, f"no image matches {want[0, 0]}"
        unmatched.remove(match)


def test_folder_gray_channel_and_alpha(mixed_folder):
    images, _ = collect(build_dataset(folder_cfg(mixed_folder, channels=1, batch_size=6)).dataset)
    assert images.shape == (6, 8, 8, 1)
    red_luma = round(0.2989 * 255) / 127.5 - 1  # tf.image.rgb_to_grayscale weights
    for value, tolerance in ((1.0, 1e-6), (64 / 127.5 - 1, 1e-6), (red_luma, 1 / 127.5)):  # white: transparent
        assert any(np.allclose(image, value, atol=tolerance) for image in images), value


def test_folder_class_subfolders(tmp_path):
    colours = {"cats": RED, "dogs": BLUE}
    counts = {"cats": 2, "dogs": 4}
    for name, colour in colours.items():
        (tmp_path / name).mkdir()
        for i in range(counts[name]):
            Image.new("RGB", (10, 10), colour).save(tmp_path / name / f"{i}.png")
    (tmp_path / "cats" / "broken.png").write_bytes(b"garbage")
    cfg = DataConfig(source="folder", path=str(tmp_path), image_size=8, channels=3, batch_size=3)
    data = build_dataset(cfg, seed=3)
    assert data.class_names == ["cats", "dogs"]
    assert data.num_examples == 6
    assert data.skipped == [str(tmp_path / "cats" / "broken.png")]
    images, labels = collect(data.dataset)
    assert labels.dtype == np.int64
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 1, 1]
    for image, label in zip(images, labels):
        expected = signed(colours[data.class_names[label]])
        np.testing.assert_allclose(image, np.broadcast_to(expected, image.shape), atol=1e-6)


def test_undecodable_subfolder_is_not_a_class(tmp_path):
    """A folder whose files all fail to decode must not shift the other labels."""
    for name, colour in (("cats", RED), ("dogs", BLUE)):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8), colour).save(tmp_path / name / "a.png")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    data = build_dataset(folder_cfg(tmp_path))
    assert data.class_names == ["cats", "dogs"]
    images, labels = collect(data.dataset)
    for image, label in zip(images, labels):
        assert image[0, 0, 0] > 0.9 if label == 0 else image[0, 0, 2] > 0.9


def test_list_images_layouts(tmp_path):
    def touch(*names):
        for name in names:
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")

    touch(
        "b/x.PNG",
        "a/deep/y.jpeg",
        "a/z.gif",
        "b/w.webp",
        "b/readme.md",
        ".hidden/h.png",
        "__MACOSX/b/._x.png",
        "a/.DS_Store.png",
    )
    files, others = find_images(tmp_path)
    labels, names = list_images(tmp_path, files)
    assert names == ["a", "b"]
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a/deep/y.jpeg", "a/z.gif", "b/w.webp", "b/x.PNG"]
    assert [f.relative_to(tmp_path).as_posix() for f in others] == ["b/readme.md"]  # hidden ones: not even that
    assert labels == [0, 0, 1, 1]

    touch("top.bmp")  # an image at the top level: unlabelled
    files, _ = find_images(tmp_path)
    labels, names = list_images(tmp_path, files)
    assert names == [] and labels == [0] * 5 and len(files) == 5


def test_list_images_single_subfolder_is_unlabelled(tmp_path):
    (tmp_path / "data").mkdir()
    Image.new("RGB", (8, 8), RED).save(tmp_path / "data" / "a.png")
    files, _ = find_images(tmp_path)
    labels, names = list_images(tmp_path, files)
    assert names == [] and labels == [0] and len(files) == 1


def test_folder_unlabelled_cannot_give_labels(mixed_folder):
    with pytest.raises(DataError, match="class labels"):
        build_dataset(folder_cfg(mixed_folder), require_labels=True)


def test_folder_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_dataset(folder_cfg(tmp_path / "nope"))


def test_folder_is_a_file(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8), RED).save(path)
    with pytest.raises(DataError, match="is not a folder"):
        build_dataset(folder_cfg(path))


def test_folder_empty_names_what_it_holds(tmp_path):
    (tmp_path / "photo.heic").write_text("a format we do not read")
    with pytest.raises(DataError, match="no images .* it holds 1 other files, such as 'photo.heic'"):
        build_dataset(folder_cfg(tmp_path))


def test_folder_only_corrupt(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(DataError, match="none of the 1 image files .* could be decoded"):
        build_dataset(folder_cfg(tmp_path))


def test_folder_batch_larger_than_images(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8), RED).save(tmp_path / f"{i}.png")
    with pytest.raises(DataError, match="batch_size: 4 is larger than the 3 images"):
        build_dataset(folder_cfg(tmp_path, batch_size=4))


# --------------------------------------------------------------------------- awkward but valid files
# Each writer saves one 8 px (or 16 x 8) image; each check gets the pipeline's 8x8 RGB output
# in [0, 255] and asserts where its colours ended up.


def halves(left, right, size=(8, 8)):
    """RGB(A) image whose left half is `left` and right half `right`."""
    width, height = size
    pixels = np.zeros((height, width, len(left)), np.uint8)
    pixels[:, : width // 2], pixels[:, width // 2 :] = left, right
    return Image.fromarray(pixels)


def transparent_palette(left_colour=BLACK, right_colour=BLUE):
    """Palette image: left half palette entry 0 (to be saved as the transparent one), right entry 1."""
    image = Image.new("P", (8, 8), 1)
    image.putpalette([*left_colour, *right_colour] + [0] * 762)
    image.paste(0, (0, 0, 4, 8))
    return image


def write_transparent_gif(path):
    transparent_palette().save(path, transparency=0)


def write_animated_gif(path):
    frames = [Image.new("RGB", (8, 8), colour).convert("P") for colour in (GREEN, RED)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def write_rotated_jpeg(orientation):
    def write(path):
        # Stored 16 wide x 8 high, red | blue; the tag says how to turn it upright.
        image = halves(RED, BLUE, size=(16, 8))
        exif = image.getexif()
        exif[ORIENTATION] = orientation
        image.save(path, exif=exif, quality=95, subsampling=0)

    return write


def write_cmyk_jpeg(path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path, quality=95)  # red in ink


def write_progressive_jpeg(path):
    halves(RED, BLUE).save(path, progressive=True, quality=95, subsampling=0)


def write_16_bit_png(path):
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(path)  # 40000 >> 8 = 156


def write_transparent_palette_png(path):
    transparent_palette(right_colour=GREEN).save(path, transparency=0)


def write_webp_with_alpha(path):
    halves((255, 0, 0, 0), (*BLUE, 255)).save(path, lossless=True)


def write_bmp(path):
    halves(GREEN, RED).save(path)


def write_tiff(path):
    halves(BLUE, GREEN).save(path)


def write_upper_png(path):
    Image.new("RGB", (8, 8), RED).save(path, format="PNG")


def write_upper_jpeg(path):
    Image.new("RGB", (8, 8), BLUE).save(path, format="JPEG", quality=95)


def left_right(left, right, tolerance=1):
    """Check: columns 0-2 are `left`, columns 5-7 `right` (the blurred middle is not checked)."""

    def check(image):
        np.testing.assert_allclose(image[:, :3], np.broadcast_to(left, (8, 3, 3)), atol=tolerance)
        np.testing.assert_allclose(image[:, 5:], np.broadcast_to(right, (8, 3, 3)), atol=tolerance)

    return check


def top_bottom(top, bottom, tolerance):
    """Check: rows 0-1 are `top`, rows 6-7 `bottom`."""

    def check(image):
        np.testing.assert_allclose(image[:2], np.broadcast_to(top, (2, 8, 3)), atol=tolerance)
        np.testing.assert_allclose(image[6:], np.broadcast_to(bottom, (2, 8, 3)), atol=tolerance)

    return check


def uniform(colour, tolerance=1):
    return left_right(colour, colour, tolerance)


AWKWARD = {
    "transparent.gif": (write_transparent_gif, left_right(WHITE, BLUE)),  # black if alpha were lost
    "animated.gif": (write_animated_gif, uniform(GREEN)),  # the first frame
    # Orientation 6: turn 90 degrees clockwise, so the stored left (red) becomes the top.
    "rotated_6.jpg": (write_rotated_jpeg(6), top_bottom(RED, BLUE, tolerance=12)),
    # Orientation 8: turn 90 degrees anticlockwise, so the stored left becomes the bottom.
    "rotated_8.jpg": (write_rotated_jpeg(8), top_bottom(BLUE, RED, tolerance=12)),
    "cmyk.jpg": (write_cmyk_jpeg, uniform(RED, tolerance=12)),
    "progressive.jpg": (write_progressive_jpeg, left_right(RED, BLUE, tolerance=12)),
    "deep.png": (write_16_bit_png, uniform((156, 156, 156))),  # not clipped to 255
    "transparent_palette.png": (write_transparent_palette_png, left_right(WHITE, GREEN)),
    "alpha.webp": (write_webp_with_alpha, left_right(WHITE, BLUE)),
    "plain.bmp": (write_bmp, left_right(GREEN, RED)),
    "scan.tif": (write_tiff, left_right(BLUE, GREEN)),
    "UPPER.PNG": (write_upper_png, uniform(RED)),
    "UPPER.JPG": (write_upper_jpeg, uniform(BLUE, tolerance=12)),
}


def pipeline_image(folder):
    """The one image in `folder` as the pipeline hands it to a model, back in [0, 255]."""
    images, _ = collect(build_dataset(folder_cfg(folder, batch_size=1)).dataset)
    assert images.shape == (1, 8, 8, 3)
    return (images[0] + 1.0) * 127.5


@pytest.mark.parametrize("name", AWKWARD)
def test_awkward_file_comes_out_right(tmp_path, name):
    write, check = AWKWARD[name]
    write(tmp_path / name)
    check(pipeline_image(tmp_path))


def test_awkward_folder_loads_every_valid_file_and_names_the_rest(tmp_path, caplog):
    for name, (write, _) in AWKWARD.items():
        write(tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 junk, not a JPEG" * 4)
    (tmp_path / "notes.txt").write_text("shot list")
    with caplog.at_level(logging.WARNING, logger="tfgen"):
        data = build_dataset(folder_cfg(tmp_path))
    assert data.num_examples == len(AWKWARD)
    assert data.skipped == [str(tmp_path / "broken.jpg")]
    [message] = skip_warnings(caplog)
    assert f"2 of {len(AWKWARD) + 2} files" in message
    assert "1 could not be decoded" in message and "broken.jpg" in message
    assert "1 not in a supported image format" in message and "notes.txt" in message
    images, _ = collect(data.dataset)
    assert images.shape == (2 * (len(AWKWARD) // 2), 8, 8, 3)


def test_truncated_jpeg_is_skipped_without_decoder_chatter(tmp_path, capfd):
    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG")
    (tmp_path / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    for i in range(2):
        Image.fromarray(noise).save(tmp_path / f"{i}.jpg")
    data = build_dataset(folder_cfg(tmp_path))
    collect(data.dataset)
    assert data.skipped == [str(tmp_path / "truncated.jpg")]
    stderr = capfd.readouterr().err
    assert "JPEG" not in stderr and "libpng" not in stderr, stderr  # TF printed "Improper call to JPEG library"


def test_jpeg_decodes_at_reduced_scale_but_never_below_image_size(tmp_path):
    Image.new("RGB", (64, 48), RED).save(tmp_path / "big.jpg")
    assert load_image(tmp_path / "big.jpg", 8).shape == (12, 16, 3)  # 1/4: the next halving would be 6 high
    assert load_image(tmp_path / "big.jpg", 48).shape == (48, 64, 3)


def test_a_missing_folder_names_the_key_and_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        DataError, match=rf"^data\.path: 'nope' does not exist \(read from the working directory {tmp_path}\)$"
    ):
        build_dataset(folder_cfg("nope"))
    # a two-domain config names the domain's own key
    pair = DataConfig(image_size=8, domain_a=folder_cfg(tmp_path / "art"), domain_b=folder_cfg(tmp_path / "sprites"))
    with pytest.raises(DataError, match=rf"^data\.domain_a\.path: '{tmp_path / 'art'}' does not exist$"):
        build_dataset(pair, domains=2)
