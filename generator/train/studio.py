"""The studio model: a tiny VQGAN and a class-conditioned prior trained in minutes on images this
project draws itself, so that a machine without the official weights still has a decoder that
reproduces images (for demos, the README's pictures, and tests that need one).

The images are generated here, with PIL, from a seed: two classes, ``landscape`` (a sky
gradient, a sun, two hills, a lake) and ``pattern`` (stripes, checks and dots in a few
colours), 96 x 96 pixels. Being drawn by this project they carry its licence (MIT); nothing is
downloaded. ``python -m generator train studio`` trains a small factor-4 VQGAN on them, then the
prior over its codes, and registers both in the weights folder as ``studio_vqgan.ckpt`` and
``studio_transformer.ckpt`` (with their yamls); its folder also holds ``studio.png``: images of
each class over their reconstructions, then the prior's samples of each class. With the defaults
(4000 VQGAN steps on 32-pixel crops, 600 prior steps) it takes about ten minutes on two CPU cores.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from generator.events import Event, drain
from models.vqgan import VQGANConfig

if TYPE_CHECKING:
    from generator.train.vqgan_settings import VQGANTrainSettings

CLASSES = ("landscape", "pattern")
IMAGE_SIDE = 96
STUDIO_VQGAN = VQGANConfig(embed_dim=32, n_embed=512, z_channels=32, resolution=128, ch=32, ch_mult=(1, 2, 2),
                           num_res_blocks=1, attn_resolutions=())
"""The studio VQGAN: factor 4 (a code for every 4 x 4 pixels), 512 codes, about 0.6 M parameters;
widths are multiples of 32, so Taming's own modules load it too. After the same 800 steps it
reconstructs unseen landscapes 1.5 to 3.7 dB closer than the factor-8 ``tiny`` size (patterns:
one 2.1 dB closer, one 0.9 dB further)."""
VQGAN_NAME = "studio_vqgan"
PRIOR_NAME = "studio"  # registered as studio_transformer.ckpt


def draw_landscape(rng: random.Random, side: int = IMAGE_SIDE) -> Image.Image:
    """A sky gradient, a sun, two hills and a lake, in colours drawn from ``rng``."""
    image = Image.new("RGB", (side, side))
    draw = ImageDraw.Draw(image)
    top = (rng.randrange(20, 90), rng.randrange(60, 150), rng.randrange(150, 255))
    bottom = (rng.randrange(180, 255), rng.randrange(120, 220), rng.randrange(80, 200))
    for y in range(side):
        t = y / (side - 1)
        draw.line([(0, y), (side, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    sun = (rng.randrange(10, side - 10), rng.randrange(8, side // 2))
    radius = rng.randrange(6, 14)
    draw.ellipse((sun[0] - radius, sun[1] - radius, sun[0] + radius, sun[1] + radius),
                 fill=(255, rng.randrange(200, 250), rng.randrange(60, 160)))
    for layer in range(2):
        base = side * (0.55 + 0.12 * layer)
        amplitude, phase, period = rng.uniform(4, 14), rng.uniform(0, 6.3), rng.uniform(30, 90)
        green = (rng.randrange(20, 80), rng.randrange(90, 170) - 30 * layer, rng.randrange(20, 70))
        outline = [(x, base + amplitude * math.sin(phase + x * 2 * math.pi / period)) for x in range(side + 1)]
        draw.polygon([*outline, (side, side), (0, side)], fill=green)
    if rng.random() < 0.6:
        lake = rng.randrange(side * 3 // 4, side - 6)
        draw.ellipse((rng.randrange(0, side // 3), lake, rng.randrange(side // 2, side), side + 8),
                     fill=(rng.randrange(30, 80), rng.randrange(90, 150), rng.randrange(160, 230)))
    return image


def draw_pattern(rng: random.Random, side: int = IMAGE_SIDE) -> Image.Image:
    """Stripes, checks or dots in two or three colours drawn from ``rng``."""
    colours = [tuple(rng.randrange(0, 256) for _ in range(3)) for _ in range(3)]
    image = Image.new("RGB", (side, side), colours[0])
    draw = ImageDraw.Draw(image)
    kind, cell = rng.choice(("stripes", "checks", "dots")), rng.randrange(8, 24)
    if kind == "stripes":
        for x in range(-side, 2 * side, cell):
            draw.polygon([(x, 0), (x + cell // 2, 0), (x + cell // 2 + side // 2, side), (x + side // 2, side)],
                         fill=colours[1])
    elif kind == "checks":
        for y in range(0, side, cell):
            for x in range(0, side, cell):
                if (x // cell + y // cell) % 2:
                    draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=colours[1])
    else:
        for y in range(cell // 2, side, cell):
            for x in range(cell // 2, side, cell):
                r = cell // 3
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colours[1 + (x + y) // cell % 2])
    return image


def write_images(folder: str | Path, per_class: int = 48, seed: int = 0) -> Path:
    """``per_class`` images of each class into ``folder/<class>/`` (a folder ``train`` reads)."""
    root = Path(folder)
    rng = random.Random(seed)
    for name, draw in zip(CLASSES, (draw_landscape, draw_pattern), strict=True):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            draw(rng).save(root / name / f"{index:03d}.png")
    return root


@dataclass(frozen=True)
class StudioRecipe:
    """How the studio model is trained (the defaults take a few minutes on two CPU cores)."""

    vqgan_steps: int = 4000
    prior_steps: int = 600
    crop: int = 32
    batch_size: int = 8
    per_class: int = 48
    seed: int = 0


@dataclass(frozen=True)
class StudioModel:
    """Where the trained studio model is: its two registered checkpoints and the run's folder."""

    vqgan: Path
    prior: Path
    folder: Path


def studio_vqgan_settings(recipe: StudioRecipe, data: Path, out: Path, *, device: str = "auto",
                          weights_dir: str | None = None, name: str = VQGAN_NAME) -> VQGANTrainSettings:
    """The studio VQGAN's training run: :data:`STUDIO_VQGAN` on ``recipe.crop``-pixel crops of the
    images in ``data``, L1 only (no LPIPS weights needed), the discriminator for the last third."""
    from generator.train.vqgan_settings import VQGANTrainSettings

    return VQGANTrainSettings(
        data=str(data), name=name, architecture=STUDIO_VQGAN.to_dict(), size=recipe.crop, steps=recipe.vqgan_steps,
        batch_size=recipe.batch_size, lr=4e-4, seed=recipe.seed, disc_start=recipe.vqgan_steps * 2 // 3,
        disc_layers=2, disc_ndf=32, perceptual_weight=0.0, precision="fp32", device=device,
        sample_every=max(1, recipe.vqgan_steps // 4), save_every=recipe.vqgan_steps, out=str(out),
        weights_dir=weights_dir)


def train_studio_model(out: str | Path, recipe: StudioRecipe = StudioRecipe(), *, device: str = "auto",
                       weights_dir: str | None = None, on_event: Callable[[Event], None] | None = None,
                       names: tuple[str, str] = (VQGAN_NAME, PRIOR_NAME)) -> StudioModel:
    """Draw the images, train the VQGAN then the prior, register both (replacing earlier studio
    models of the same names), and write ``studio.png``. Returns where they are."""
    from generator.devices import pick_device
    from generator.io.outputs import new_folder
    from generator.train.prior_settings import PriorTrainingConfig
    from generator.train.prior_training import PriorTraining
    from generator.train.vqgan_checkpoint import registered_paths
    from generator.train.vqgan_train import VQGANTraining

    folder = new_folder(Path(out), "studio-model")  # a second recipe run never overwrites the first's
    data = write_images(folder / "images", recipe.per_class, recipe.seed)
    for name in (names[0], f"{names[1]}_transformer"):  # a new studio model replaces the earlier one
        for path in registered_paths(name, weights_dir):
            path.unlink(missing_ok=True)
    settings = studio_vqgan_settings(recipe, data, folder, device=device, weights_dir=weights_dir, name=names[0])
    vqgan_run = VQGANTraining.start(settings).run(on_event=on_event)
    prior = PriorTrainingConfig(
        vqgan=str(vqgan_run.registered), data=str(data), conditioning="class", size=recipe.crop,
        steps=recipe.prior_steps, batch_size=16, lr=1e-3, n_layer=4, n_head=4, n_embd=128, seed=recipe.seed,
        val_every=max(1, recipe.prior_steps // 4), sample_every=recipe.prior_steps, sample_count=4,
        save_every=recipe.prior_steps, precision="fp32", name=names[1])
    run = PriorTraining(prior, out_dir=str(folder), device=pick_device(device), weights_dir=weights_dir).run()
    result = drain(run, on_event)
    model = StudioModel(vqgan_run.registered, Path(result.registered), folder)
    write_sheet(model, data, Path(result.folder))
    return model


def write_sheet(model: StudioModel, data: Path, prior_folder: Path, shown: int = 4) -> Path:
    """``studio.png``: ``shown`` images of each class over their reconstructions by the studio
    VQGAN, then the prior's last samples of each class (its ``samples-<step>.png``, a row per
    class, enlarged to the images' size)."""
    import torch

    from generator.decoder.loader import load_vqgan
    from generator.io.images import contact_sheet, pil_to_tensor, tensor_to_pil
    from generator.io.outputs import save_png

    vqgan = load_vqgan(model.vqgan).eval()
    originals = [Image.open(path).convert("RGB") for name in CLASSES
                 for path in sorted((data / name).glob("*.png"))[:shown]]
    with torch.no_grad():
        batch = torch.cat([pil_to_tensor(image) for image in originals]) * 2 - 1  # (N, 3, S, S)
        quantized = vqgan.quantize(vqgan.encode(batch))
        rebuilt = [tensor_to_pil((image + 1) / 2) for image in vqgan.decode(quantized.z_q)]
    rows = [contact_sheet(originals + rebuilt, columns=len(originals))]
    samples = sorted(prior_folder.glob("samples-*.png"))
    if samples:
        with Image.open(samples[-1]) as sheet:
            scale = max(1, round(IMAGE_SIDE * len(CLASSES) / sheet.height))  # each sample about as large as an image
            rows.append(sheet.convert("RGB").resize((sheet.width * scale, sheet.height * scale),
                                                    Image.Resampling.NEAREST))
    width = max(row.width for row in rows)
    picture = Image.new("RGB", (width, sum(row.height for row in rows) + 4 * (len(rows) - 1)), "white")
    top = 0
    for row in rows:
        picture.paste(row, (0, top))
        top += row.height + 4
    path = model.folder / "studio.png"
    save_png(picture, path)
    return path
