"""Turn user images (photos, screenshots, PNG/JPEG of any size) into Fashion-MNIST-like inputs.

A model trained on Fashion-MNIST only understands images made the way Fashion-MNIST was made
(Xiao et al. 2017): product photo -> trim the background -> longest edge to 28 px -> centre on a
square canvas -> 8-bit grayscale -> negate, so garments are light on a black background.
`load_images` repeats those steps; `save_png` writes dataset images so they load back unchanged.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from fmnist_tl import atomic, tfenv
from fmnist_tl.errors import MissingFileError, NotRegularFile, first_line, os_failure, short_path
from fmnist_tl.paths import open_regular

SIZE = 28
# Border pixels within this many grey levels of the background count as background when
# trimming; a little above Fashion-MNIST's 5 % so JPEG noise does not stop the trim.
TRIM_TOLERANCE = 24
# Mean border brightness above which the background is light and the image gets negated.
LIGHT_BACKGROUND = 127


def load_images(paths: Sequence[str | os.PathLike[str]]) -> np.ndarray:
    """Load images as float32 (N, 28, 28, 1) in 0..255, converted like Fashion-MNIST.

    An image that is already 28x28 is taken as Fashion-MNIST-shaped and only gets the grayscale
    and negation steps: trimming and resizing it again would shift or blur its pixels.
    """
    out = np.zeros((len(paths), SIZE, SIZE, 1), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i, :, :, 0] = to_fashion_mnist(_open_gray(Path(path)))
    return out


def to_fashion_mnist(gray: Image.Image) -> np.ndarray:
    """28x28 uint8 array, light garment on a dark background, from a grayscale ("L") image."""
    pixels = np.asarray(gray, dtype=np.uint8)
    border = _border(pixels)
    if pixels.shape != (SIZE, SIZE):
        background = int(np.median(border))
        gray = _trim(gray, background)
        gray = _pad_square(gray, background)
        gray = gray.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
        pixels = np.asarray(gray, dtype=np.uint8)
    # Decide from the original border: after trimming, the garment touches the canvas edges.
    if border.mean() > LIGHT_BACKGROUND:
        pixels = 255 - pixels
    return pixels


def save_png(image_28x28: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a (28, 28) or (28, 28, 1) image as a lossless 8-bit gray PNG, atomically.

    Values are rounded and clipped to 0..255, so float Fashion-MNIST arrays round-trip exactly.
    """
    arr = np.asarray(image_28x28)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"save_png expects a 2-D gray image. Received: shape={arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float64)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    atomic.write_with(path, lambda tmp: img.save(tmp, format="PNG"))


def _open_gray(path: Path) -> Image.Image:
    """Open any Pillow-readable image as "L"; failures become one-line MissingFileErrors.

    Only a regular file is opened (paths.open_regular: a FIFO would block). Pillow's
    decompression-bomb limit (Image.MAX_IMAGE_PIXELS, 89 megapixels) is an error at its
    warning, not only at twice it; its other warnings (a corrupt EXIF block, which only costs
    the rotation) are kept from the caller's stderr unless verbose.
    """
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_regular(path, "rb") as f, Image.open(f) as img:
                if img.format == "JPEG" and min(img.size) > 4 * 256:
                    img.draft("RGB", (256, 256))  # decode big photos at a reduced scale: faster
                img.load()
                img = ImageOps.exif_transpose(img)  # phone photos: honour the camera's rotation
                gray = _flatten(path, img).convert("L")
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        size = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(size[1]):,} pixels" if size else "more pixels"
        raise MissingFileError(
            f"{short_path(path)}: {pixels}, above Pillow's decompression-bomb limit of "
            f"{Image.MAX_IMAGE_PIXELS:,}; shrink the image (28x28 is what the model sees)"
        ) from None
    except (OSError, ValueError) as exc:
        if _os_level(exc):  # a name too long, a file where a folder should be: the OS's words
            raise os_failure(exc, path) from None
        raise MissingFileError(
            f"{short_path(path)}: not a readable image (PNG or JPEG expected): {_reason(exc)}"
        ) from exc
    if tfenv.verbose():
        for warning in said:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return gray


def _os_level(exc: Exception) -> bool:
    plain = (FileNotFoundError, IsADirectoryError, PermissionError)
    return isinstance(exc, OSError) and exc.errno is not None and not isinstance(exc, plain)


def _reason(exc: Exception) -> str:
    """A short reason without repeating the path (Pillow and OSError messages include it)."""
    if isinstance(exc, NotRegularFile):  # swapped in after the check
        return exc.strerror
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "it is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, UnidentifiedImageError):
        return "unknown or corrupt image format"
    return first_line(exc)


def _flatten(path: Path, img: Image.Image) -> Image.Image:
    """Composite transparency onto white, the backdrop of the product photos FMNIST came from.

    A float image with NaN or infinite pixels is refused: scaled to 8 bits, they would become
    arbitrary grays that the model then classifies with confidence."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float grays: scale to 8 bits instead of letting convert("L") clip.
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise MissingFileError(
                f"{short_path(path)}: {bad} of {arr.size} pixels are NaN or infinite; "
                "give an image whose pixels are all numbers"
            )
        span = float(arr.max() - arr.min()) or 1.0
        return Image.fromarray(np.uint8(np.rint(255 * (arr - arr.min()) / span)))
    return img


def _border(pixels: np.ndarray) -> np.ndarray:
    """The one-pixel frame of an image: where the background shows in product photos."""
    if min(pixels.shape) < 3:
        return pixels.ravel()
    return np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])


def _trim(gray: Image.Image, background: int) -> Image.Image:
    """Crop to the object: everything differing from the background by more than the tolerance.

    A 3x3 median filter on the mask first, so isolated noise pixels do not widen the box.
    """
    diff = np.abs(np.asarray(gray, dtype=np.int16) - background) > TRIM_TOLERANCE
    mask = Image.fromarray(np.uint8(diff) * 255).filter(ImageFilter.MedianFilter(3))
    box = mask.getbbox()
    return gray.crop(box) if box else gray


def _pad_square(gray: Image.Image, background: int) -> Image.Image:
    """Centre the image on a square canvas of the background colour (keeps the aspect ratio)."""
    w, h = gray.size
    side = max(w, h)
    canvas = Image.new("L", (side, side), background)
    canvas.paste(gray, ((side - w) // 2, (side - h) // 2))
    return canvas
