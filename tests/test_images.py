"""Loading user images the way Fashion-MNIST was made, and the save/load round trip."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist_tl.data.images import load_images, save_png
from fmnist_tl.errors import MissingFileError

FMNIST_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def garment_photo(
    size: tuple[int, int] = (120, 100), box: tuple[int, int, int, int] = (40, 15, 70, 85)
) -> Image.Image:
    """A white-background product photo: a dark textured garment (box = x0, y0, x1, y1)."""
    w, h = size
    rng = np.random.default_rng(0)
    arr = np.full((h, w, 3), 250, dtype=np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = (rng.integers(20, 60, (y1 - y0, x1 - x0, 1)) + [0, 15, 40]).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def fmnist_like(seed: int = 0) -> np.ndarray:
    """A 28x28 uint8 image with a black border and a bright, textured garment in the middle."""
    rng = np.random.default_rng(seed)
    img = np.zeros((28, 28), dtype=np.uint8)
    img[2:27, 6:22] = rng.integers(0, 256, (25, 16))
    return img


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_light_background_photo_is_inverted(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"photo.{fmt.lower()}"
    garment_photo().save(path, format=fmt)
    x = load_images([path])
    assert x.shape == (1, 28, 28, 1) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 255.0
    img = x[0, :, :, 0]
    assert img[:, :3].mean() < 20 and img[:, -3:].mean() < 20  # background became dark
    assert img[5:23, 12:16].mean() > 180  # dark garment became bright


def test_non_square_keeps_aspect_ratio_and_centres(tmp_path: Path) -> None:
    # A 20x60 garment (1:3) trims to its box, pads to a square and fills the full height.
    path = tmp_path / "tall.png"
    garment_photo(size=(200, 90), box=(20, 15, 40, 75)).save(path)
    img = load_images([path])[0, :, :, 0]
    bright_cols = np.flatnonzero(img.mean(axis=0) > 100)
    bright_rows = np.flatnonzero(img.mean(axis=1) > 50)
    assert 8 <= bright_cols.size <= 11  # 28 / 3 wide
    assert abs((bright_cols[0] + bright_cols[-1]) / 2 - 13.5) <= 1  # centred
    assert bright_rows.size >= 26  # longest edge fills the canvas


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA"])
def test_other_modes(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"img-{mode}.png"
    photo = garment_photo(size=(64, 100), box=(20, 20, 44, 80))
    if mode == "RGBA":
        rgba = photo.convert("RGBA")
        alpha = np.where(np.asarray(photo.convert("L")) > 200, 0, 255).astype(np.uint8)
        rgba.putalpha(Image.fromarray(alpha))  # transparent background composites to white
        photo = rgba
    else:
        photo = photo.convert(mode)
    photo.save(path)
    img = load_images([path])[0, :, :, 0]
    assert img[:, :3].mean() < 20 and img[10:18, 10:18].mean() > 150


def test_batch_of_several(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        save_png(fmnist_like(i), paths[-1])
    x = load_images(paths)
    assert x.shape == (3, 28, 28, 1)
    assert load_images([]).shape == (0, 28, 28, 1)


def test_not_an_image(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a picture\n")
    for bad in (text, tmp_path / "missing.png", tmp_path):
        with pytest.raises(MissingFileError) as info:
            load_images([bad])
        message = str(info.value)
        assert message.startswith(f"{bad}: not a readable image (PNG or JPEG expected): ")
        assert "\n" not in message


def test_truncated_png(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    garment_photo().save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(MissingFileError, match="bad.png: not a readable image"):
        load_images([bad])


def test_round_trip_is_exact(tmp_path: Path) -> None:
    img = fmnist_like(3)
    save_png(img, tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as png:
        assert png.format == "PNG" and png.mode == "L" and png.size == (28, 28)
    np.testing.assert_array_equal(load_images([tmp_path / "x.png"])[0, :, :, 0], img)
    # float (N, 28, 28, 1) arrays, as the data pipeline holds them, round-trip too
    save_png(img[:, :, None].astype(np.float32), tmp_path / "y.png")
    np.testing.assert_array_equal(load_images([tmp_path / "y.png"])[0, :, :, 0], img)
    assert not list(tmp_path.glob(".*"))  # atomic write left no temp file


@pytest.mark.skipif(not FMNIST_TEST.exists(), reason="Fashion-MNIST test set not installed")
def test_round_trip_on_real_test_images(tmp_path: Path) -> None:
    with gzip.open(FMNIST_TEST) as f:
        f.read(16)
        images = np.frombuffer(f.read(28 * 28 * 100), dtype=np.uint8).reshape(100, 28, 28)
    paths = [tmp_path / f"{i}.png" for i in range(len(images))]
    for img, path in zip(images, paths, strict=True):
        save_png(img, path)
    np.testing.assert_array_equal(load_images(paths)[..., 0], images)
