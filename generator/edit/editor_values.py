"""The Edit tab's image editor value as files, and back: the image to edit and a mask of what was
painted over it.

Gradio's ImageEditor gives a background (the image) and layers (what was painted over it). Any
pixel of any layer that is not fully transparent is painted, whatever its colour; the mask is
white there and black elsewhere. The image is written as it came (a PNG, its transparency
kept), so the pixels the mask keeps are the image's own.

The brush has two colours: white for the part the prompt draws, and :data:`SECOND_COLOUR`
(magenta) for a part with a prompt of its own. When that second prompt is given, each colour
is also written as a region mask (``region-white.png``, ``region-magenta.png``), so each
prompt is scored only on its part (a region prompt, ``text @ mask``).

The editor does not show layers the server sends it (Gradio 6 draws the background only), so an
edit loaded from the gallery is shown as one picture, its mask painted in white, and the run
remembers the image and mask behind that picture (:class:`LoadedEdit`): while the editor still
shows it, they are what is edited, with anything painted since added to the mask.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from generator.errors import InputError
from generator.io.images import open_image
from generator.io.masks import ALPHA, mask_from_image

IMAGE_FILE, MASK_FILE = "image.png", "mask.png"
FIRST_REGION_FILE, SECOND_REGION_FILE = "region-white.png", "region-magenta.png"
FIRST_COLOUR, SECOND_COLOUR = "#ffffff", "#ff00ff"
"""The brush's colours: the prompt's part, and the part of the second (region) prompt."""
NOTHING_IN_SECOND = ("nothing is painted in magenta for the second prompt; paint its part in magenta, or clear "
                     "that prompt.")
NO_IMAGE = "there is no image to edit; upload one, or press Edit this image under a result."
NOTHING_PAINTED = "nothing is painted; paint over the part to change, or choose an outpaint."
ALPHA_NOTE = "Nothing is painted, so the image's transparent part changes."


@dataclass(frozen=True)
class EditorFiles:
    """What an editor value gives an edit.

    Attributes:
        image: the image to edit (a PNG).
        mask: the mask of what was painted (a PNG, white = change), :data:`ALPHA` (nothing
            painted: the image's transparent part changes), or None (nothing painted, for an
            outpaint alone).
        note: what the user should hear about the mask chosen for them, or None.
        regions: the region masks of the two colours (white = the region), when asked for:
            the white part's (None when nothing is white: the first prompt sees the whole
            image) and the magenta part's.
    """

    image: Path
    mask: str | None
    note: str | None = None
    regions: tuple[Path | None, Path] | None = None


@dataclass(frozen=True)
class LoadedEdit:
    """The image and mask behind the picture an edit loaded into the editor shows.

    Attributes:
        image: the image the edit changed (a checked server path).
        mask: its mask (a checked server path), or None (an outpaint alone).
        shown: the :func:`fingerprint` of the picture the editor was sent.
    """

    image: str
    mask: str | None
    shown: str


def fingerprint(image: Image.Image) -> str:
    """A digest of an image's RGBA pixels and size (what the editor gives back of a picture it was
    sent, unchanged)."""
    rgba = image.convert("RGBA")
    return hashlib.sha256(f"{rgba.size}".encode() + rgba.tobytes()).hexdigest()


def as_image(value: Image.Image | np.ndarray | None) -> Image.Image | None:
    """A PIL image of an editor part (a PIL image or a numpy array; never a path, which would
    name a server file), or None."""
    if value is None or isinstance(value, Image.Image):
        return value
    if isinstance(value, np.ndarray):
        return Image.fromarray(value)
    raise TypeError(f"an editor part is a PIL image or a numpy array, not {type(value).__name__}")


def painted_mask(layers: Sequence[Any], size: tuple[int, int]) -> np.ndarray | None:
    """(H, W) bool at ``size`` (width, height): the pixels any layer covers (alpha above 0); None
    when nothing is painted. A layer of another size is stretched to ``size``."""
    painted = np.zeros((size[1], size[0]), dtype=bool)
    for layer in layers:
        image = as_image(layer)
        if image is None:
            continue
        alpha = image.convert("RGBA").getchannel("A")
        if alpha.size != size:
            alpha = alpha.resize(size, Image.Resampling.NEAREST)
        painted |= np.asarray(alpha) > 0
    return painted if painted.any() else None


def second_colour_mask(layers: Sequence[Any], size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool at ``size`` (width, height): the painted pixels (alpha above 0) whose colour is
    the second brush colour's (magenta: green below half, where white has it full)."""
    found = np.zeros((size[1], size[0]), dtype=bool)
    for layer in layers:
        image = as_image(layer)
        if image is None:
            continue
        rgba = image.convert("RGBA")
        if rgba.size != size:
            rgba = rgba.resize(size, Image.Resampling.NEAREST)
        pixels = np.asarray(rgba)  # (H, W, 4)
        found |= (pixels[..., 3] > 0) & (pixels[..., 1] < 128) & (pixels[..., 0] >= 128) & (pixels[..., 2] >= 128)
    return found


def has_transparency(image: Image.Image) -> bool:
    """Whether any pixel of ``image`` is not fully opaque."""
    if not (image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info):
        return False
    return image.convert("RGBA").getchannel("A").getextrema()[0] < 255


def editor_files(value: dict[str, Any] | None, folder: Path, *, outpaint: bool,
                 loaded: LoadedEdit | None = None, regions: bool = False) -> EditorFiles:
    """Write an editor value's image and mask into ``folder`` as ``image.png`` and ``mask.png``.

    While the editor shows the picture of ``loaded``, its image is the one edited and its mask
    is the mask, with what was painted since added. Nothing painted: an outpaint needs no
    mask; otherwise an image with transparent pixels changes there (mask :data:`ALPHA`).
    ``regions``: also write the region masks of the two brush colours (the loaded mask counts
    as white), see :attr:`EditorFiles.regions`.

    Raises:
        InputError: there is no image; nothing is painted, no outpaint is asked for and the image
            is opaque; a loaded image or mask cannot be read; ``regions`` and nothing is magenta.
    """
    image = as_image((value or {}).get("background"))
    if image is None:
        raise InputError(NO_IMAGE)
    kept = None  # (H, W) uint8: the loaded mask, 255 = change
    if loaded is not None and fingerprint(image) == loaded.shown:
        image = open_image(loaded.image, what="the loaded image")
        if loaded.mask is not None:
            kept = mask_values(open_image(loaded.mask, what="the loaded mask"), image.size)
    transparent = has_transparency(image)
    image = image.convert("RGBA" if transparent else "RGB")
    folder.mkdir(parents=True, exist_ok=True)
    image_path = folder / IMAGE_FILE
    image.save(image_path)
    layers = (value or {}).get("layers") or []
    painted = painted_mask(layers, image.size)
    found = write_regions(folder, layers, image.size, painted, kept) if regions else None
    if painted is not None or kept is not None:
        values = kept if kept is not None else np.zeros((image.size[1], image.size[0]), dtype=np.uint8)
        if painted is not None:
            values = np.maximum(values, painted.astype(np.uint8) * 255)
        mask_path = folder / MASK_FILE
        Image.fromarray(values, mode="L").save(mask_path)
        return EditorFiles(image_path, str(mask_path), regions=found)
    if outpaint:
        return EditorFiles(image_path, None)
    if transparent:
        return EditorFiles(image_path, ALPHA, ALPHA_NOTE)
    raise InputError(NOTHING_PAINTED)


def write_regions(folder: Path, layers: Sequence[Any], size: tuple[int, int], painted: np.ndarray | None,
                  kept: np.ndarray | None) -> tuple[Path | None, Path]:
    """Write the region masks of the two brush colours into ``folder`` (see
    :attr:`EditorFiles.regions`); ``painted``: all that was painted, ``kept``: a loaded mask.

    Raises:
        InputError: nothing is painted magenta.
    """
    second = second_colour_mask(layers, size) if painted is not None else None
    if second is None or not second.any():
        raise InputError(NOTHING_IN_SECOND)
    first = painted & ~second
    if kept is not None:
        first |= kept >= 128
    second_path = folder / SECOND_REGION_FILE
    Image.fromarray(second.astype(np.uint8) * 255, mode="L").save(second_path)
    if not first.any():
        return None, second_path
    first_path = folder / FIRST_REGION_FILE
    Image.fromarray(first.astype(np.uint8) * 255, mode="L").save(first_path)
    return first_path, second_path


def mask_values(mask: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 of a mask image at ``size`` (width, height): 255 = change (its grey level
    times its alpha, see :func:`generator.io.masks.mask_from_image`), stretched to fit."""
    values = Image.fromarray((mask_from_image(mask).numpy() * 255).round().astype(np.uint8), mode="L")
    return np.asarray(values if values.size == size else values.resize(size, Image.Resampling.NEAREST))


def loaded_editor(image_path: str, mask_path: str | None) -> tuple[dict[str, Any], LoadedEdit]:
    """The editor value that shows an edit's image with its mask painted in white, as the user
    would have painted it, and the :class:`LoadedEdit` that remembers what the picture stands for.

    Raises:
        InputError: the image or the mask cannot be read.
    """
    picture = open_image(image_path, what="the image to edit").convert("RGBA")
    if mask_path is not None:
        alpha = mask_values(open_image(mask_path, what="the mask"), picture.size)
        paint = Image.new("RGBA", picture.size, (255, 255, 255, 0))
        paint.putalpha(Image.fromarray(alpha, mode="L"))
        picture = Image.alpha_composite(picture, paint)
    value = {"background": picture, "layers": [], "composite": picture}
    return value, LoadedEdit(image_path, mask_path, fingerprint(picture))
