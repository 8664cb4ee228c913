"""The CLIP-guided loop as an object: replacing the latent mid-run, retargeting, and batches
whose images equal the same images made alone."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from generator.devices import SeedStreams
from generator.io.images import pil_to_tensor
from generator.text_to_image.latents import encode_pixels
from generator.text_to_image.loop import GuidanceLoop
from generator.text_to_image.pipeline import TextToImage, prompt_spec
from generator.text_to_image.targets import build_targets
from tests.factories import tiny_run_config

SIZE = (32, 32)


def _loop_with(pipeline: TextToImage, configs: list) -> GuidanceLoop:
    loop = pipeline.new_loop(configs[0])
    for config in configs:
        list(pipeline.start_image(loop, config, SIZE))
    return loop


def _pattern() -> Image.Image:
    """Quadrants of four colours: something a tiny VQGAN re-encodes recognisably."""
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[:16, :16] = (250, 20, 20)
    pixels[:16, 16:] = (20, 250, 20)
    pixels[16:, :16] = (20, 20, 250)
    pixels[16:, 16:] = (240, 240, 30)
    return Image.fromarray(pixels)


def test_the_latent_can_be_replaced_mid_run_from_an_image_and_the_loop_continues(tiny_pipeline, tiny_files) -> None:
    config = tiny_run_config(tiny_files, optim={"init_weight": 0.5})
    loop = _loop_with(tiny_pipeline, [config])
    for _ in range(3):
        drifted = loop.step()
    assert drifted.values(0)[1]["init_mse"] > 0  # the latent moved away from where it started
    before = loop.latents()
    replacement = encode_pixels(tiny_pipeline.vqgan, pil_to_tensor(_pattern()))
    loop.replace_latent(0, replacement)
    assert torch.equal(loop.latents(), replacement) and not torch.equal(before, replacement)
    # the decoded image is now the pattern (as the VQGAN reconstructs it), not the old image
    decoded = np.asarray(loop.decode()[0], dtype=np.float32)
    reconstructed = np.asarray(tiny_pipeline.vqgan.decode(tiny_pipeline.vqgan.quantize(replacement).z_q)
                               .add(1).div(2).clamp(0, 1)[0].permute(1, 2, 0).detach().numpy() * 255)
    assert np.abs(decoded - reconstructed).max() <= 1.0
    # stepping continues from the new latent, and the MSE regulariser now pulls toward it
    assert loop.step().values(0)[1]["init_mse"] == 0  # measured before the step: at the replacement
    assert loop.images[0].step == 4 and not torch.equal(loop.latents(), replacement)
    assert loop.step().values(0)[1]["init_mse"] > 0


def test_retargeting_changes_what_the_loop_pulls_toward(tiny_pipeline, tiny_files) -> None:
    config = tiny_run_config(tiny_files)
    loop = _loop_with(tiny_pipeline, [config])
    loop.step()
    assert set(loop.step().losses[0]) == {"text:city at night"}
    streams = SeedStreams.from_seed(9, tiny_pipeline.device)
    targets = build_targets(loop.guide, prompt_spec(config.replace(prompts="a red barn")), steps=10, size=SIZE,
                            streams=streams)
    loop.retarget(0, targets)
    assert set(loop.step().losses[0]) == {"text:a red barn"}


def test_images_optimised_together_equal_the_same_images_made_alone(tiny_pipeline, tiny_files) -> None:
    """Each image has its own cutouts and random streams: batching changes no image beyond
    float rounding of the batched convolutions (tolerance 1e-3 on the latent here: Adam's
    normalised steps grow a rounding difference to ~3e-4 in a few entries on AMD EPYC)."""
    configs = [tiny_run_config(tiny_files, seed=seed, prompts=prompt, optim={"init_weight": 0.1})
               for seed, prompt in ((3, "city at night"), (8, "a quiet harbour"))]
    together = _loop_with(tiny_pipeline, configs)
    alone = [_loop_with(tiny_pipeline, [config]) for config in configs]
    for _ in range(4):
        together.step()
        for loop in alone:
            loop.step()
    batched = together.latents()
    for index, loop in enumerate(alone):
        assert torch.allclose(batched[index : index + 1], loop.latents(), atol=1e-3)
    assert not torch.allclose(batched[0], batched[1], atol=1e-2)


def test_seed_streams_advance_per_image_and_leave_the_global_generators_alone() -> None:
    torch.manual_seed(123)
    outside = torch.get_rng_state()
    streams, other = SeedStreams.from_seed(5, torch.device("cpu")), SeedStreams.from_seed(6, torch.device("cpu"))
    with streams.active():
        first = torch.rand(3)
    with other.active():
        torch.rand(100)  # another image's draws in between change nothing for this one
    with streams.active():
        second = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), outside)
    torch.manual_seed(5)
    assert torch.equal(torch.cat([first, second]), torch.rand(6))  # one stream, as if alone
