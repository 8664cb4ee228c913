"""The images a model is trained on: a folder of images of any size (sub-folders: classes).

A folder holds images directly (one class, unconditional) or in sub-folders, one per class
(``faces/``, ``textures/``; the class labels are the sub-folders' names in sorted order). An
image that cannot be read is skipped with one line each, and training goes on; a folder with
no image at all is one sentence before anything loads. :class:`CropSampler` draws a training's
random crops, image by image in a shuffled order per epoch, from one seeded generator.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from generator.errors import InputError
from generator.io.images import IMAGE_SUFFIXES, open_image, pil_to_tensor, to_rgb
from generator.train.vqgan_checkpoint import python_random_from, python_random_state

logger = logging.getLogger(__name__)
_CACHE_BYTES = 1 << 30  # decoded images kept in memory (RGB bytes)


@dataclass
class ImageFolder:
    """The images of a training folder.

    Attributes:
        root: the folder.
        files: every image file, sorted.
        classes: the sub-folders' names (sorted) when the images are in sub-folders, else empty.
        labels: each file's class index (0 for every file of a folder without classes).
        skipped: the files found unreadable so far (each said once).
    """

    root: Path
    files: list[Path]
    classes: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    skipped: set[Path] = field(default_factory=set)

    def read(self, index: int) -> Image.Image | None:
        """The RGB image of file ``index``, or None for one that cannot be read (said once)."""
        path = self.files[index]
        if path in self.skipped:
            return None
        try:
            return to_rgb(open_image(path, what="training image"))
        except InputError as error:
            self.skipped.add(path)
            logger.warning("skipped %s: %s", path.name, error)
            return None


def scan_images(folder: str | Path) -> ImageFolder:
    """The images of ``folder`` (see the module's docstring).

    Raises:
        InputError: the folder does not exist, or holds no image file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"the training folder {root} does not exist; give a folder of images (PNG, JPEG, WebP).")
    top = _images_in(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and _images_in(p))
    if classes and not top:
        files, labels = [], []
        for label, name in enumerate(classes):
            found = _images_in(root / name)
            files += found
            labels += [label] * len(found)
        return ImageFolder(root, files, classes, labels)
    if not top:
        raise InputError(f"the training folder {root} holds no image; put PNG, JPEG or WebP files in it (or in "
                         "one sub-folder per class).")
    return ImageFolder(root, top, [], [0] * len(top))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def random_crop(image: Image.Image, size: int, generator: random.Random) -> torch.Tensor:
    """A ``size`` x ``size`` crop of ``image`` at a random place (an image smaller than ``size``
    is first scaled up so its shorter side is ``size``), as a (3, size, size) tensor in [-1, 1]."""
    width, height = image.size
    if min(width, height) < size:
        scale = size / min(width, height)
        image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))),
                             Image.Resampling.BICUBIC)
        width, height = image.size
    left = generator.randint(0, width - size)
    top = generator.randint(0, height - size)
    crop = image.crop((left, top, left + size, top + size))
    return pil_to_tensor(crop)[0] * 2 - 1  # (3, size, size)


class CropSampler:
    """Random crops of a folder's images, image by image in a shuffled order per epoch.

    Every draw comes from ``rng`` (Python's generator, as :func:`random_crop` takes it), so
    its state plus :meth:`state` decide every later crop. Decoded images are kept in memory
    up to 1 GiB.
    """

    def __init__(self, folder: ImageFolder, size: int, rng: random.Random) -> None:
        self.folder = folder
        self.size = size
        self.rng = rng
        self.order: list[int] = []
        self.position = 0
        self.epoch = 0
        self._cache: OrderedDict[int, Image.Image] = OrderedDict()
        self._cached_bytes = 0

    def crop(self) -> torch.Tensor:
        """The next crop, (3, size, size) in [-1, 1]; unreadable images are skipped (said once).

        Raises:
            InputError: no image of the folder can be read.
        """
        while True:
            if self.position >= len(self.order):
                if len(self.folder.skipped) >= len(self.folder.files):
                    raise InputError(f"none of the {len(self.folder.files)} images in {self.folder.root} can be "
                                     "read; give a folder of PNG, JPEG or WebP images.")
                if self.order:
                    self.epoch += 1
                order = list(range(len(self.folder.files)))
                self.rng.shuffle(order)
                self.order, self.position = order, 0
            index = self.order[self.position]
            self.position += 1
            image = self._image(index)
            if image is not None:
                return random_crop(image, self.size, self.rng)

    def batch(self, count: int) -> torch.Tensor:
        """``count`` crops, (count, 3, size, size) in [-1, 1]."""
        return torch.stack([self.crop() for _ in range(count)])

    def _image(self, index: int) -> Image.Image | None:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        image = self.folder.read(index)
        if image is None:
            return None
        cost = image.width * image.height * 3
        if cost <= _CACHE_BYTES:
            self._cache[index] = image
            self._cached_bytes += cost
            while self._cached_bytes > _CACHE_BYTES:
                _, dropped = self._cache.popitem(last=False)
                self._cached_bytes -= dropped.width * dropped.height * 3
        return image

    def state(self) -> dict[str, torch.Tensor]:
        """Where the order stands, and the generator's state, as tensors."""
        return {"data.order": torch.tensor(self.order, dtype=torch.int64),
                "data.position": torch.tensor(self.position), "data.epoch": torch.tensor(self.epoch),
                "rng.python": python_random_state(self.rng.getstate())}

    def restore(self, state: Mapping[str, torch.Tensor]) -> None:
        """Go back to a :meth:`state`."""
        self.order = [int(i) for i in state["data.order"].tolist()]
        self.position, self.epoch = int(state["data.position"]), int(state["data.epoch"])
        self.rng.setstate(python_random_from(state["rng.python"]))
        if self.order and max(self.order) >= len(self.folder.files):
            raise InputError(f"the training folder {self.folder.root} holds fewer images than when the run started; "
                             "resume with the same images.")
