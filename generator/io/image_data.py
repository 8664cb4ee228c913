"""Pixel data that keeps what a user's image file holds: alpha, greyscale and 16-bit depth.

Pillow reads 8-bit images and 16-bit greyscale, but turns 16-bit colour PNGs into 8-bit; those
go through pypng instead, so a 16-bit photo stays 16-bit through the upscaler.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import png
from PIL import Image

from generator.errors import InputError
from generator.io.images import open_image, png_bytes

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageData:
    """An image as float32 pixels in [0, 1], shape (H, W, C) with C = 1 (grey), 2 (grey +
    alpha), 3 (RGB) or 4 (RGBA), and the bit depth (8 or 16) it came with."""

    pixels: np.ndarray
    bits: int = 8

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.pixels.shape[1], self.pixels.shape[0]

    @classmethod
    def from_pil(cls, image: Image.Image) -> ImageData:
        """Any Pillow image; 16-bit greyscale keeps its depth, palettes become RGB(A)."""
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            values = np.asarray(image, dtype=np.float32)
            peak = 65535.0 if image.mode != "I" or values.max() > 255 else 255.0
            return cls(np.clip(values / peak, 0, 1)[..., None], 16 if peak > 255 else 8)
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif image.mode not in ("L", "LA", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        return cls(pixels[..., None] if pixels.ndim == 2 else pixels, 8)

    def to_pil(self) -> Image.Image:
        """An 8-bit Pillow image (16-bit greyscale stays 16-bit)."""
        if self.bits == 16 and self.channels == 1:
            return Image.fromarray((self.pixels[..., 0] * 65535 + 0.5).astype(np.uint16))
        array = (np.clip(self.pixels, 0, 1) * 255 + 0.5).astype(np.uint8)
        return Image.fromarray(array[..., 0] if self.channels == 1 else array, mode=_MODES[self.channels])

    def png_bytes(self, text: Mapping[str, str] | None = None) -> bytes:
        """A PNG of the right depth, with ``text`` as tEXt/iTXt chunks."""
        if self.bits == 16 and self.channels != 1:
            array = (np.clip(self.pixels, 0, 1) * 65535 + 0.5).astype(np.uint16)
            height, width, channels = array.shape
            buffer = io.BytesIO()
            png.Writer(width, height, greyscale=channels < 3, alpha=channels in (2, 4), bitdepth=16,
                       compression=6).write(buffer, array.reshape(height, width * channels))
            return _with_text(buffer.getvalue(), text or {})
        return png_bytes(self.to_pil(), text)


_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def read_image_data(path: str | Path) -> ImageData:
    """Decode an image file, keeping alpha, greyscale and 16-bit depth.

    Raises:
        InputError: missing, unreadable, not an image, or corrupt.
    """
    path = Path(path)
    image = open_image(path)  # existence, decoding and size checks with clear messages
    if _png_bit_depth(path) == 16 and image.mode not in ("I;16", "I;16B", "I"):
        try:
            width, height, rows, info = png.Reader(filename=str(path)).asDirect()
            planes = info["planes"]
            array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
        except (png.Error, ValueError, OSError) as error:
            raise InputError(f"image {path} could not be read as a 16-bit PNG ({error}); it may be corrupt.") from None
        return ImageData(array.astype(np.float32) / 65535.0, 16)
    return ImageData.from_pil(image)


def _png_bit_depth(path: Path) -> int:
    with path.open("rb") as handle:
        head = handle.read(33)
    if not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return 8
    return head[24]


def _with_text(data: bytes, text: Mapping[str, str]) -> bytes:
    """Insert iTXt chunks before IEND of a PNG byte string."""
    if not text:
        return data
    chunks = b""
    for key, value in text.items():
        body = key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")
        chunks += struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunks + data[end:]
