"""Images in and out: decoding user files safely, and tensor <-> PIL conversion."""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from generator.errors import InputError
from generator.io.fetch import fetch_bytes
from generator.io.input_limits import LIMITS, pixel_limit_text, too_many_pixels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
"""The file suffixes taken as images in a folder (frames, images to upscale)."""
_URL = re.compile(r"https?://", re.IGNORECASE)
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "P", "RGB", "RGBA"})
_ZIP_TEXT_OVER = 2048  # longer text chunks are stored compressed (zTXt / compressed iTXt)


def is_url(text: str | Path) -> bool:
    """Whether an image source is an http(s) address rather than a file path."""
    return isinstance(text, str) and bool(_URL.match(text.strip()))


def open_image(source: str | Path, *, what: str = "image") -> Image.Image:
    """Decode an image file (or an http(s) address, fetched with a size limit and timeout)
    fully, honouring EXIF orientation.

    Raises:
        InputError: missing, unreachable, unreadable, not an image, truncated, or absurdly large.
    """
    if is_url(source):
        url = str(source).strip()
        return _decode(io.BytesIO(fetch_bytes(url, what)), url, what)
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist; check the path.")
    return _decode(path, str(path), what)


def image_size(source: str | Path, *, what: str = "image") -> tuple[int, int]:
    """(width, height) of an image file, read from its header alone (no pixel is decoded), and
    within the pixel limit (:mod:`generator.io.input_limits`).

    Raises:
        InputError: missing, not an image, or larger than the limit.
    """
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist; check the path.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            with Image.open(path) as image:
                _check_size(image, str(path), what)
                return image.size
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise _too_large(str(path), what) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise _unreadable(error, str(path), what) from None


def _too_large(name: str, what: str, size: tuple[int, int] | None = None) -> InputError:
    shape = f" is {size[0]}x{size[1]}," if size else " is"
    return InputError(f"{what} {name}{shape} larger than {LIMITS.scope} accepts ({pixel_limit_text()}); "
                      "resize it first.")


def _check_size(image: Image.Image, name: str, what: str) -> None:
    if too_many_pixels(image.width, image.height):
        raise _too_large(name, what, image.size)


def _decode(source: Path | io.BytesIO, name: str, what: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            with Image.open(source) as image:
                _check_size(image, name, what)  # from the header, before any pixel is decoded
                image.load()
                return ImageOps.exif_transpose(image)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise _too_large(name, what) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise _unreadable(error, name, what) from None


def _unreadable(error: Exception, name: str, what: str) -> InputError:
    """The sentence for an image that Pillow could not open or decode (the same whether only
    its header or all of it was read)."""
    if isinstance(error, UnidentifiedImageError):
        return InputError(f"{what} {name} is not an image this tool can read ({error}); use a PNG, JPEG or WebP file.")
    return InputError(f"{what} {name} could not be read ({error}); it may be truncated or corrupt.")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy; transparent areas become white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to fill ``size`` (width, height) and centre-crop the overflow (LANCZOS)."""
    return ImageOps.fit(to_rgb(image), size, method=Image.Resampling.LANCZOS)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (1, 3, H, W) float32 in [0, 1]."""
    array = np.asarray(to_rgb(image), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) tensor in [0, 1] -> RGB PIL image (rounded, clamped)."""
    if image.dim() == 4:
        image = image[0]
    array = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy(), mode="RGB")


def contact_sheet(images: list[Image.Image], columns: int | None = None, gap: int = 2) -> Image.Image:
    """Images (same size) in a grid, row-major; one image is returned as is."""
    if len(images) == 1:
        return images[0]
    columns = columns or min(len(images), 4)
    rows = -(-len(images) // columns)
    width, height = images[0].size
    sheet = Image.new("RGB", (columns * width + (columns - 1) * gap, rows * height + (rows - 1) * gap), (255, 255, 255))
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        sheet.paste(image, (column * (width + gap), row * (height + gap)))
    return sheet


def png_bytes(image: Image.Image, text: Mapping[str, str] | None) -> bytes:
    """A PIL image as PNG bytes with ``text`` chunks (tEXt, or iTXt beyond Latin-1; long ones compressed)."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    if image.mode not in _PNG_MODES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    info = PngInfo()
    for key, value in (text or {}).items():
        key, value = str(key), str(value)
        if not 1 <= len(key) <= 79 or not _is_latin1(key):
            raise ValueError(f"PNG text key {key!r} must be 1-79 Latin-1 characters")
        add = info.add_text if _is_latin1(value) else info.add_itxt
        add(key, value, zip=len(value) > _ZIP_TEXT_OVER)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _is_latin1(text: str) -> bool:
    return all(ord(char) < 256 for char in text)
