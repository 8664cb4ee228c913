"""The settings of a reconstruction (``python -m generator reconstruct IMAGE``)."""

from __future__ import annotations

from dataclasses import dataclass

from generator.config import MAX_SIDE, _RunConfig, ensure


@dataclass(frozen=True)
class ReconstructConfig(_RunConfig):
    """Everything that decides a reconstruction.

    Attributes:
        image: the image (a file or an http(s) address).
        vqgan: a registry VQGAN name or a checkpoint file.
        vqgan_config: its yaml (default: the registry's, or beside the checkpoint).
        size: (width, height) the image is resized to first (None: its own size, the longer
            side at most ``max_side``); rounded down to the VQGAN's factor.
        max_side: the longest side when ``size`` is None.
        seed: recorded for the run folder's name (a reconstruction draws nothing at random).
    """

    image: str = ""
    vqgan: str = "vqgan_imagenet_f16_16384"
    vqgan_config: str | None = None
    size: tuple[int, int] | None = None
    max_side: int = 512
    seed: int | None = 0

    def __post_init__(self) -> None:
        ensure(bool(self.image.strip()), "there is no image to reconstruct; give an image file or address.")
        ensure(bool(self.vqgan.strip()), "vqgan must name a registry VQGAN or a checkpoint file.")
        ensure(16 <= self.max_side <= MAX_SIDE, f"max_side must be between 16 and {MAX_SIDE}, not {self.max_side}.")
        if self.size is not None:
            ensure(len(self.size) == 2 and all(16 <= side <= MAX_SIDE for side in self.size),
                   f"size must be a width and a height between 16 and {MAX_SIDE}, not {self.size}.")
