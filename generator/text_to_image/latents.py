"""Where the optimised latent starts: random codes, pixel noise, gradient noise, an image, or
the saved latent of an earlier run (to continue it); and seed variations, a random start mixed
with another seed's (:func:`varied_start`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from generator.decoder.protocol import Decoder
from generator.errors import InputError
from generator.io.images import cover, open_image, pil_to_tensor
from generator.io.latents import read_latent


def random_codes(vqgan: Decoder, grid: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Latent of uniformly random codebook entries: (1, embed_dim, h, w)."""
    indices = torch.randint(vqgan.n_codes, (1, *grid), generator=generator)  # (1, h, w)
    return vqgan.indices_to_latent(indices.to(vqgan.codebook.device))


def pixel_noise(size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Uniform RGB noise, (1, 3, H, W) in [0, 1]."""
    width, height = size
    return torch.rand(1, 3, height, width, generator=generator)


def gradient_noise(size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """A smooth random image: per channel, a linear ramp between two random levels in a random
    direction, plus faint noise. (1, 3, H, W) in [0, 1]."""
    width, height = size
    ys = torch.linspace(-1, 1, height)[:, None]  # (H, 1)
    xs = torch.linspace(-1, 1, width)[None, :]  # (1, W)
    channels = []
    for _ in range(3):
        angle = torch.rand((), generator=generator) * 2 * math.pi
        low, high = torch.rand(2, generator=generator).sort().values
        ramp = (xs * torch.cos(angle) + ys * torch.sin(angle)) / math.sqrt(2) * 0.5 + 0.5  # (H, W) in [0, 1]
        channels.append(low + (high - low) * ramp)
    image = torch.stack(channels)[None]  # (1, 3, H, W)
    return (image + 0.02 * torch.randn(image.shape, generator=generator)).clamp(0, 1)


def image_pixels(path: str, size: tuple[int, int]) -> torch.Tensor:
    """An init image file, resized to cover ``size`` and centre-cropped: (1, 3, H, W) in [0, 1]."""
    return pil_to_tensor(cover(open_image(path, what="init image"), size))


def encode_pixels(vqgan: Decoder, pixels: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) image in [0, 1] -> latent (1, embed_dim, H/f, W/f)."""
    with torch.no_grad():
        return vqgan.encode(pixels.to(vqgan.codebook.device) * 2 - 1).float()


def initial_latent(vqgan: Decoder, mode: str, size: tuple[int, int], generator: torch.Generator,
                   init_image: str | None = None, init_latent: str | None = None) -> torch.Tensor:
    """The starting latent for ``mode`` (random, pixels, gradient, image or latent) at ``size`` (W, H)."""
    factor = vqgan.downsample_factor
    grid = (size[1] // factor, size[0] // factor)
    if mode == "latent":
        assert init_latent is not None  # checked by InitConfig
        return saved_latent(vqgan, init_latent, size)
    if mode == "random":
        return random_codes(vqgan, grid, generator)
    if mode == "pixels":
        return encode_pixels(vqgan, pixel_noise(size, generator))
    if mode == "gradient":
        return encode_pixels(vqgan, gradient_noise(size, generator))
    if mode == "image":
        assert init_image is not None  # checked by InitConfig
        return encode_pixels(vqgan, image_pixels(init_image, size))
    raise ValueError(f"unknown init mode {mode!r}")


def slerp(start: torch.Tensor, end: torch.Tensor, strength: float) -> torch.Tensor:
    """Spherical interpolation of two tensors of one shape, taken as flat vectors: the direction
    turns from ``start``'s to ``end``'s along the great circle, the norm goes linearly from one
    norm to the other. ``strength`` 0 returns ``start`` itself and 1 ``end`` itself (bit for
    bit); nearly parallel, opposite or zero vectors are mixed linearly."""
    if strength == 0:
        return start
    if strength == 1:
        return end
    a, b = start.flatten().double(), end.flatten().double()
    norm_a, norm_b = a.norm(), b.norm()
    norm = (1 - strength) * norm_a + strength * norm_b
    if norm_a == 0 or norm_b == 0:
        return ((1 - strength) * a + strength * b).to(start.dtype).reshape(start.shape)
    unit_a, unit_b = a / norm_a, b / norm_b
    angle = torch.arccos((unit_a @ unit_b).clamp(-1, 1))
    if torch.sin(angle) < 1e-6:
        direction = (1 - strength) * unit_a + strength * unit_b
    else:
        direction = torch.sin((1 - strength) * angle) * unit_a + torch.sin(strength * angle) * unit_b
    direction = direction / direction.norm().clamp_min(1e-12)
    return (direction * norm).to(start.dtype).reshape(start.shape)


def varied_start(draw: Callable[[torch.Generator], torch.Tensor], generator: torch.Generator,
                 variation_seed: int | None, strength: float | None) -> torch.Tensor:
    """A random start, ``draw(generator)``, mixed with a variation seed's by ``strength`` (seed
    variations).

    The seed's start is drawn from the run's own ``generator`` exactly as without a variation,
    so that generator's later draws (the cutouts' crops) stay the same; the variation seed's
    start is ``draw`` from a fresh CPU generator seeded with ``variation_seed`` (the start of
    a plain run with that seed, unless image prompts drew from its generator first) and leaves
    every other random stream alone. The two are mixed by :func:`slerp` in the latent space,
    where the optimiser moves: strength 0 is the seed's start bit for bit, 1 the variation
    seed's. For random codes that is after quantisation (the codes' embeddings): code indices
    have no geometry, while the mixed embeddings move continuously with the strength and the
    loop's straight-through quantiser turns cells over to the other seed's codes one by one as
    it grows, so small strengths give images near the seed's. None: no variation.
    """
    start = draw(generator)
    if variation_seed is None:
        return start
    assert strength is not None  # checked by InitConfig
    other = draw(torch.Generator().manual_seed(variation_seed)).to(start)
    return slerp(start, other, strength)


def saved_latent(vqgan: Decoder, path: str, size: tuple[int, int]) -> torch.Tensor:
    """The latent a run saved (see :mod:`generator.io.latents`), checked against this VQGAN and size."""
    latent = read_latent(path)  # (1, C, h, w)
    factor = vqgan.downsample_factor
    expected = (vqgan.code_dim, size[1] // factor, size[0] // factor)
    if tuple(latent.shape[1:]) != expected:
        channels, rows, cols = latent.shape[1:]
        raise InputError(
            f"the latent in {path} is for {cols * factor}x{rows * factor} images of a VQGAN with {channels} channels, "
            f"not {size[0]}x{size[1]} with {expected[0]}; continue it with the size and VQGAN of the run it came from."
        )
    return latent.to(vqgan.codebook.device)
