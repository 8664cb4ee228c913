"""Contracts of the guidance loss and loop that the rest of the suite would let slip:

* a prompt's stop: below it, that prompt no longer changes the image, while others still do;
* the CLIP ensemble: the total loss is the weighted sum of each member's loss alone;
* every optimiser name builds that optimiser (checked by replaying its updates);
* every init kind starts where it is documented to start.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from generator.config import OPTIMISERS, ClipModelConfig, GenerationConfig, ModelsConfig
from generator.devices import SeedStreams
from generator.text_to_image.cutouts import MakeCutouts
from generator.text_to_image.latents import encode_pixels, gradient_noise, initial_latent, pixel_noise
from generator.text_to_image.loop import GuidanceLoop
from generator.text_to_image.losses import ClipGuide, GuideMember, PromptTarget, spherical_distance
from generator.text_to_image.pipeline import TextToImage
from tests.clip_factories import tiny_clip, write_tiny_clip
from tests.factories import tiny_run_config

SIZE = (32, 32)
CPU = torch.device("cpu")
MAX_DISTANCE = 2 * (torch.pi / 2) ** 2  # the largest squared spherical distance


def _result(events: Generator) -> int:
    """Drain a generator (start_image) and return its return value."""
    while True:
        try:
            next(events)
        except StopIteration as stop:
            return stop.value


def _started(pipeline: TextToImage, config: GenerationConfig) -> GuidanceLoop:
    loop = pipeline.new_loop(config)
    assert _result(pipeline.start_image(loop, config, SIZE)) == 0
    return loop


# --- 1. a prompt's stop ----------------------------------------------------------------------------


def test_below_its_stop_a_prompt_gives_no_gradient_per_cutout_but_keeps_its_value() -> None:
    generator = torch.Generator().manual_seed(0)
    embeds = torch.randn(8, 16, generator=generator).requires_grad_(True)  # 8 cutouts
    target = F.normalize(torch.randn(1, 16, generator=generator), dim=-1)
    dists = spherical_distance(embeds.detach(), target)[:, 0]
    ordered = dists.sort().values
    stop = float((ordered[3] + ordered[4]) / 2)  # half the cutouts below, half above, no ties
    below = dists < stop
    assert int(below.sum()) == 4

    loss = PromptTarget("text:a", target, 2.0, stop).loss(embeds)
    free_loss = PromptTarget("text:a", target, 2.0).loss(embeds)
    # the reported value is still |w| * mean(d): the stop only cuts the gradient
    torch.testing.assert_close(loss, 2.0 * dists.mean(), rtol=1e-6, atol=0)
    torch.testing.assert_close(loss, free_loss, rtol=0, atol=0)
    (grad,) = torch.autograd.grad(loss, embeds)
    (free,) = torch.autograd.grad(free_loss, embeds)
    assert torch.count_nonzero(grad[below]) == 0  # cutouts already close enough: no pull at all
    assert bool((grad[~below].norm(dim=-1) > 0).all())
    torch.testing.assert_close(grad[~below], free[~below], rtol=0, atol=0)  # the others pull as without a stop


def _latents(pipeline: TextToImage, config: GenerationConfig,
             steps: int = 3) -> tuple[torch.Tensor, torch.Tensor, dict]:
    loop = _started(pipeline, config)
    start = loop.latents()
    for _ in range(steps):
        report = loop.step()
    return start, loop.latents(), report.values(0)[1]


def test_a_prompt_past_its_stop_no_longer_changes_the_image_while_other_prompts_act(tiny_pipeline, tiny_files) -> None:
    stop = MAX_DISTANCE + 0.1  # every cutout is always below this stop
    config = tiny_run_config(tiny_files, steps=3)
    start, after, parts = _latents(tiny_pipeline, config.replace(prompts=f"city at night:1:{stop}"))
    assert torch.equal(after, start)  # its gradient w.r.t. the latent is exactly zero: Adam never moves
    assert parts["text:city at night"] > 0  # still scored and reported

    free_start, free_after, _ = _latents(tiny_pipeline, config.replace(prompts="city at night"))
    assert torch.equal(free_start, start) and not torch.equal(free_after, start)  # without the stop it pulls

    _, with_stopped, both = _latents(tiny_pipeline, config.replace(prompts=f"city at night:1:{stop} | a red barn"))
    _, alone, _ = _latents(tiny_pipeline, config.replace(prompts="a red barn"))
    assert set(both) == {"text:city at night", "text:a red barn"}
    assert not torch.equal(alone, start)  # the other prompt still acts ...
    # ... as if it were alone (up to the float noise of embedding two texts in one batch instead of one)
    torch.testing.assert_close(with_stopped, alone, rtol=0, atol=1e-4)


# --- 2. the CLIP ensemble weights ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[Path, Path], tuple[Path, Path]]:
    """Two different tiny CLIPs (same 32x32 input size, so they share cutouts)."""
    directory = tmp_path_factory.mktemp("two-clips")
    return (write_tiny_clip(directory, name="clip-a", seed=0), write_tiny_clip(directory, name="clip-b", seed=1))


def _guide_losses(clips: list, weights: list[float], pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, d total / d pixels) of an ensemble of ``clips`` with ``weights``, fresh streams."""
    members = [GuideMember(clip, weight, MakeCutouts(clip.input_size, 6, cut_pow=1.0, augments=("affine", "jitter"),
                                                     noise_fac=0.1))
               for clip, weight in zip(clips, weights, strict=True)]
    guide = ClipGuide(members)
    targets = [[[PromptTarget("text:a lighthouse", clip.encode_text(["a lighthouse"]), 1.0),
                 PromptTarget("text:fog", clip.encode_text(["fog"]), -0.5)] for clip in clips]]
    leaf = pixels.clone().requires_grad_(True)
    (parts,) = guide.losses(leaf, targets, [SeedStreams.from_seed(5, CPU)])
    assert set(parts) == {"text:a lighthouse", "text:fog"}
    total = torch.stack(list(parts.values())).sum()
    (grad,) = torch.autograd.grad(total, leaf)
    return total.detach(), grad


def test_the_ensemble_loss_is_the_weighted_sum_of_the_members_alone(two_clips, tmp_path: Path) -> None:
    clip_a = tiny_clip(tmp_path / "a", seed=0)
    clip_b = tiny_clip(tmp_path / "b", seed=1)
    pixels = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(3))
    loss_a, grad_a = _guide_losses([clip_a], [1.0], pixels)
    loss_b, grad_b = _guide_losses([clip_b], [1.0], pixels)
    loss, grad = _guide_losses([clip_a, clip_b], [0.3, 1.7], pixels)
    assert abs(float(loss_a) - float(loss_b)) > 1e-3  # the members really differ
    torch.testing.assert_close(loss, 0.3 * loss_a + 1.7 * loss_b, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad, 0.3 * grad_a + 1.7 * grad_b, rtol=1e-4, atol=1e-9)


def test_the_pipeline_applies_the_clip_weights_the_config_asks_for(two_clips, tiny_files) -> None:
    (config_a, weights_a), (config_b, weights_b) = two_clips

    def models(*clips: tuple[Path, Path, float]) -> ModelsConfig:
        return ModelsConfig(vqgan=str(tiny_files.vqgan), vqgan_config=str(tiny_files.vqgan_config),
                            clip_models=tuple(ClipModelConfig(str(c), str(w), weight) for c, w, weight in clips))

    ensemble = TextToImage.from_pretrained(models((config_a, weights_a, 1.0), (config_b, weights_b, 1.0)),
                                           device="cpu")  # loaded with unit weights ...
    asked = models((config_a, weights_a, 0.3), (config_b, weights_b, 1.7))  # ... run with the config's weights
    alone_a = TextToImage.from_pretrained(models((config_a, weights_a, 1.0)), device="cpu")
    alone_b = TextToImage.from_pretrained(models((config_b, weights_b, 1.0)), device="cpu")
    config = tiny_run_config(tiny_files, seed=4)

    def first_step(pipeline: TextToImage, chosen: ModelsConfig) -> tuple[float, dict[str, float]]:
        return _started(pipeline, config.replace(models=chosen)).step().values(0)

    total, parts = first_step(ensemble, asked)
    total_a, parts_a = first_step(alone_a, alone_a.models)
    total_b, parts_b = first_step(alone_b, alone_b.models)
    assert abs(total_a - total_b) > 1e-3
    assert total == pytest.approx(0.3 * total_a + 1.7 * total_b, rel=1e-5)
    assert parts["text:city at night"] == pytest.approx(0.3 * parts_a["text:city at night"]
                                                        + 1.7 * parts_b["text:city at night"], rel=1e-5)
    unweighted, _ = first_step(ensemble, ensemble.models)
    assert unweighted == pytest.approx(total_a + total_b, rel=1e-5)  # sanity: the weights made the difference


# --- 5a. optimisers --------------------------------------------------------------------------------

TORCH_OPTIMISERS = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adagrad": torch.optim.Adagrad,
    "adamax": torch.optim.Adamax, "radam": torch.optim.RAdam, "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def test_every_optimiser_name_is_covered_here() -> None:
    assert set(TORCH_OPTIMISERS) == set(OPTIMISERS)


def _replayed(pipeline: TextToImage, config: GenerationConfig, optimiser: type, steps: int) -> torch.Tensor:
    """Step a loop and, beside it, apply ``optimiser`` (torch defaults, the config's lr) to a copy of
    the start latent with the loop's own gradients; they must move alike. Returns the displacement."""
    loop = _started(pipeline, config)
    start = loop.latents()
    reference = start.clone().requires_grad_(True)
    replay = optimiser([reference], lr=config.optim.lr)
    codebook = pipeline.vqgan.codebook.detach().float()
    low = codebook.min(dim=0).values[None, :, None, None]
    high = codebook.max(dim=0).values[None, :, None, None]
    for step in range(steps):
        loop.step()
        reference.grad = loop.images[0].latent.grad.detach().clone()
        replay.step()
        with torch.no_grad():
            reference.clamp_(min=low, max=high)  # the loop keeps the latent in the codebook's range
        # displacements, not latents: SGD and RAdam's first steps move by only ~1e-5 here
        torch.testing.assert_close(loop.latents() - start, reference.detach() - start, rtol=1e-4, atol=1e-9,
                                   msg=lambda m, step=step: f"{config.optim.optimiser} step {step + 1}: {m}")
    return loop.latents() - start


def test_each_optimiser_name_builds_that_optimiser(tiny_pipeline, tiny_files) -> None:
    moved = {}
    for name in OPTIMISERS:
        config = tiny_run_config(tiny_files, optim={"optimiser": name, "lr": 0.05}, cutouts={"cutn": 2})
        moved[name] = _replayed(tiny_pipeline, config, TORCH_OPTIMISERS[name], steps=3)
        assert float(moved[name].abs().max()) > 1e-6, name
    for first, second in itertools.combinations(OPTIMISERS, 2):  # three steps tell every pair apart
        scale = max(float(moved[first].abs().max()), float(moved[second].abs().max()))
        assert float((moved[first] - moved[second]).abs().max()) > 3e-3 * scale, (first, second)


# --- 5b. init kinds --------------------------------------------------------------------------------


def test_init_random_starts_from_uniformly_random_codebook_entries(tiny_pipeline, tiny_files) -> None:
    vqgan = tiny_pipeline.vqgan
    codebook = vqgan.codebook.detach().float()  # (n_embed, C)
    seen = set()
    latents = []
    for seed in (1, 2):
        latent = _started(tiny_pipeline, tiny_run_config(tiny_files, seed=seed, init={"init": "random"})).latents()
        assert latent.shape == (1, codebook.shape[1], SIZE[1] // 2, SIZE[0] // 2)
        rows = latent[0].permute(1, 2, 0).reshape(-1, codebook.shape[1])  # one row per latent cell
        matches = (rows[:, None, :] == codebook[None]).all(dim=-1)  # (cells, n_embed)
        assert bool(matches.any(dim=1).all()), "every cell must be exactly a codebook entry"
        seen.update(matches.float().argmax(dim=1).tolist())
        latents.append(latent)
    assert len(seen) == codebook.shape[0]  # 512 uniform draws from 16 codes reach every code
    assert not torch.equal(latents[0], latents[1])


def test_pixel_and_gradient_noise_have_their_documented_properties() -> None:
    pixels = pixel_noise((64, 48), torch.Generator().manual_seed(0))
    assert pixels.shape == (1, 3, 48, 64) and float(pixels.min()) >= 0 and float(pixels.max()) <= 1
    assert float(pixels.mean()) == pytest.approx(0.5, abs=0.02)
    assert float(pixels.std()) == pytest.approx((1 / 12) ** 0.5, abs=0.01)  # uniform on [0, 1]
    assert float((pixels[..., 1:] - pixels[..., :-1]).abs().mean()) == pytest.approx(1 / 3, abs=0.02)  # no smoothing
    for seed in range(5):
        smooth = gradient_noise((64, 48), torch.Generator().manual_seed(seed))
        assert smooth.shape == (1, 3, 48, 64) and float(smooth.min()) >= 0 and float(smooth.max()) <= 1
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, 48), torch.linspace(-1, 1, 64), indexing="ij")
        design = torch.stack([torch.ones_like(xs), xs, ys], dim=-1).reshape(-1, 3)
        for channel in smooth[0]:
            fit = torch.linalg.lstsq(design, channel.reshape(-1, 1)).solution
            residual = channel.reshape(-1) - (design @ fit)[:, 0]
            assert float(residual.std()) < 0.025  # a linear ramp plus faint (0.02) noise
        assert float((smooth[..., 1:] - smooth[..., :-1]).abs().mean()) < 0.05


@pytest.mark.parametrize(("mode", "noise"), [("pixels", pixel_noise), ("gradient", gradient_noise)])
def test_init_pixels_and_gradient_start_from_the_encoded_noise_image(tiny_pipeline, tiny_files, mode, noise) -> None:
    vqgan = tiny_pipeline.vqgan
    seed = 6
    image = noise(SIZE, torch.Generator().manual_seed(seed))  # what the seed's generator draws first
    with torch.no_grad():
        expected = vqgan.encode(image * 2 - 1)  # [0, 1] pixels go to the encoder as [-1, 1]
    torch.testing.assert_close(encode_pixels(vqgan, image), expected, rtol=0, atol=0)
    torch.testing.assert_close(initial_latent(vqgan, mode, SIZE, torch.Generator().manual_seed(seed)), expected,
                               rtol=0, atol=0)
    started = _started(tiny_pipeline, tiny_run_config(tiny_files, seed=seed, init={"init": mode})).latents()
    torch.testing.assert_close(started, expected, rtol=1e-6, atol=1e-6)
    other = pixel_noise if noise is gradient_noise else gradient_noise
    with torch.no_grad():
        assert (vqgan.encode(other(SIZE, torch.Generator().manual_seed(seed)) * 2 - 1) - expected).abs().max() > 1e-2


def test_init_image_starts_from_the_encoded_init_image(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[:16] = (230, 40, 30)
    pixels[16:, :20] = (20, 60, 220)
    pixels[16:, 20:] = rng.integers(0, 256, (16, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "init.png")
    config = tiny_run_config(tiny_files, init={"init": "image", "init_image": str(tmp_path / "init.png")})
    started = _started(tiny_pipeline, config).latents()
    tensor = torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = tiny_pipeline.vqgan.encode(tensor * 2 - 1)
        flipped = tiny_pipeline.vqgan.encode(tensor.flip(-1) * 2 - 1)
    torch.testing.assert_close(started, expected, rtol=1e-5, atol=1e-5)
    assert (flipped - expected).abs().max() > 1e-2  # another image starts elsewhere
