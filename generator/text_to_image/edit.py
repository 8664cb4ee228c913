"""The canvas of a text-to-image run, and what an edit keeps of its image.

A run makes its image on a canvas whose sides are multiples of the decoder's factor. Without
an edit the canvas is the run's size. An edit (a mask, an outpaint, or both) places the init
image on the canvas and says, with a feathered mask, which pixels may change: the masked ones,
and on an outpaint the new border (whose first pixels come from reflecting and blurring the
image, so it starts by continuing the image rather than as grey). The loop composites every
decoded image over those base pixels with the mask, so pixels outside a hard mask are the
input's exactly (not a trip through the VQGAN). A canvas whose output size is not a multiple
of the factor gets a strip on the right and bottom that is generated and cropped away.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from generator.config import GenerationConfig
from generator.devices import cuda_free_bytes, describe_device
from generator.errors import InputError
from generator.io.images import cover, open_image, pil_to_tensor
from generator.io.masks import (
    check_mask,
    cover_mask,
    feather,
    feather_outward,
    grid_mask,
    load_mask,
    mask_from_image,
    resize_mask,
)

ACTIVATION_BYTES_PER_PIXEL = {"auto": 4_200, "decoder": 4_200, "off": 9_000}
"""Peak bytes per canvas pixel of an optimisation step beyond the models, by ``recompute``
setting: fitted to the CPU measurements in BENCHMARKS.md (2.3 GB at 256x256, 6.2 GB at
1024x1024 with 32 cutouts, of which about 2 GB is libraries and models)."""


@dataclass
class Canvas:
    """Where a run's image is made.

    Attributes:
        size: (width, height) of the canvas, multiples of the decoder's factor.
        output: (width, height) of the image the run gives: the canvas's top-left part.
        base: (1, 3, H, W) pixels in [0, 1] that the mask keeps (an edit), or None.
        mask: (H, W) feathered mask in [0, 1], 1 = change (an edit), or None.
        notes: things the user should hear about (a size rounded, a mask stretched).
    """

    size: tuple[int, int]
    output: tuple[int, int]
    base: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)

    def place(self, values: torch.Tensor) -> torch.Tensor:
        """A mask (H, W) at the output's size, on the canvas (the rounding strip is 0)."""
        width, height = self.size
        return F.pad(values, (0, width - values.shape[1], 0, height - values.shape[0]))

    def cells(self, factor: int) -> torch.Tensor | None:
        """(h, w) bool: the latent cells an edit optimises (those under the mask and one around
        them); None for a run that is not an edit."""
        return None if self.mask is None else grid_mask(self.mask, factor, dilate=1)

    def crop(self, image: Image.Image) -> Image.Image:
        """The output part of a canvas-sized image."""
        return image if image.size == self.output else image.crop((0, 0, *self.output))


def round_up(value: int, factor: int) -> int:
    return math.ceil(value / factor) * factor


def edit_canvas(config: GenerationConfig, factor: int) -> Canvas:
    """The canvas of an edit: the init image (fitted to ``config.size`` if given, else at its
    own size) on a canvas grown by the outpaint, with the feathered mask of what may change.

    Raises:
        InputError: the image or the mask cannot be read; the mask is black or white everywhere.
    """
    edit = config.edit
    assert edit.edits and config.init.init_image  # checked by GenerationConfig
    original = open_image(config.init.init_image, what="image to edit")
    image = cover(original, tuple(config.size)) if config.size else original.convert("RGB")
    notes: list[str] = []
    user_mask = None
    if edit.mask is not None:
        user_mask, notes = load_mask(edit.mask, original)
        if config.size:
            user_mask = cover_mask(user_mask, tuple(config.size))
        check_mask(user_mask, "the mask" if edit.mask == "alpha" else f"the mask {Path(edit.mask).name}")
    left, top, right, bottom = edit.outpaint or (0, 0, 0, 0)
    width, height = image.size
    output = (width + left + right, height + top + bottom)
    size = (round_up(output[0], factor), round_up(output[1], factor))
    pixels = pil_to_tensor(image)  # (1, 3, h, w)
    pads = (left, size[0] - width - left, top, size[1] - height - top)
    base = extend(pixels, pads)
    inside = F.pad(torch.ones(height, width), pads)  # (H, W): 1 on the image
    # The image's own mask feathers both ways; the new border feathers outward only, from 0 at
    # the image's edge (where the border is the image mirrored) up to 1, so an outpaint never
    # touches the image itself and its border starts as the image's continuation.
    inner = feather(F.pad(user_mask, pads), edit.mask_blur) * inside if user_mask is not None else 0 * inside
    outer = feather_outward(inside, edit.mask_blur)
    mask = torch.maximum(inner, outer)
    if size != output:
        notes.append(f"the canvas {output[0]}x{output[1]} is not a multiple of the VQGAN's factor {factor}; it is "
                     f"made at {size[0]}x{size[1]} and cropped back.")
    return Canvas(size=size, output=output, base=base, mask=mask, notes=notes)


def extend(pixels: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """(1, 3, h, w) image grown by ``pads`` (left, right, top, bottom): the border mirrors the
    image (again and again where it is wider than the image) and is blurred more the further it
    is from the image, so it continues the image's colours without copying its detail."""
    left, right, top, bottom = pads
    if not any(pads):
        return pixels
    grown = pixels
    while any((left, right, top, bottom)):  # reflect pads must be smaller than the side they mirror
        height, width = grown.shape[-2:]
        step = (min(left, width - 1), min(right, width - 1), min(top, height - 1), min(bottom, height - 1))
        if width == 1 or height == 1:
            grown = F.pad(grown, (left, right, top, bottom), mode="replicate")
            break
        grown = F.pad(grown, step, mode="reflect")
        left, right, top, bottom = (left - step[0], right - step[1], top - step[2], bottom - step[3])
    height, width = pixels.shape[-2:]
    inside = F.pad(torch.ones(height, width), pads)
    radius = max(2.0, max(pads) / 4)
    blurred = torch.stack([feather(channel, radius) for channel in grown[0]])[None]
    weight = feather(inside, radius)  # 1 on the image, falling off into the border
    return (grown * weight + blurred * (1 - weight)) * (1 - inside) + grown * inside


def region_mask(path: str, canvas: Canvas) -> tuple[torch.Tensor, list[str]]:
    """A region prompt's mask (white = the region), fitted to the output and placed on the canvas.

    Raises:
        InputError: the file cannot be read, or it is black everywhere.
    """
    values = mask_from_image(open_image(path, what="region mask"))
    notes = []
    if (values.shape[1], values.shape[0]) != canvas.output:
        notes.append(f"the region mask {Path(path).name} is {values.shape[1]}x{values.shape[0]} and the image "
                     f"{canvas.output[0]}x{canvas.output[1]}; it was stretched to fit.")
        values = resize_mask(values, canvas.output)
    if float(values.max()) < 0.5 / 255:
        raise InputError(f"the region mask {Path(path).name} is black everywhere, so its prompt would see nothing; "
                         "paint its region white.")
    return canvas.place(values), notes


def available_bytes(device: torch.device) -> int:
    """Memory free for a run's activations now: the GPU's free memory, or the system's available memory."""
    if device.type == "cuda":
        return cuda_free_bytes(device)
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            fields = dict(line.split(":", 1) for line in info)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_memory(canvas: Canvas, recompute: str, device: torch.device, what: str) -> None:
    """Refuse a canvas whose optimisation would not fit the memory free now.

    Raises:
        InputError: the estimate exceeds the free memory.
    """
    width, height = canvas.size
    needed = width * height * ACTIVATION_BYTES_PER_PIXEL[recompute]
    free = available_bytes(device)
    if needed > free:
        raise InputError(f"{what} makes a {width}x{height} canvas, which needs about {needed / 1e9:.1f} GB to optimise "
                         f"and {describe_device(device)} has {free / 1e9:.1f} GB free; add less, start from a smaller "
                         "image (--size), or use --recompute decoder.")
