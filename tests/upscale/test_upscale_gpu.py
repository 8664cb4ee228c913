"""The upscaler on CUDA: fp16 tiles close to float32, the fall back to float32 when fp16 output
is not finite, tiles sized from the GPU's free memory, and out-of-memory errors that name the GPU."""

from __future__ import annotations

import pytest
import torch

from generator.errors import OutOfMemoryError
from generator.events import Notice
from generator.upscale import memory
from generator.upscale import tiles as tiles_module
from generator.upscale.loader import load_upscaler
from generator.upscale.tiles import MIN_TILE, plan_tiles, run_to_end, upscale_pixels
from tests.upscale.helpers import events_of, pixels

pytestmark = pytest.mark.gpu


def test_half_precision_tiles_match_float32(files: dict) -> None:
    upscaler = load_upscaler(str(files["compact16"]), device="cuda")
    assert upscaler.half_dtype() is torch.float16  # spandrel's Compact supports fp16, preferred to bf16
    assert plan_tiles(upscaler, 67, 45, tile=32).precision == "float16"
    image = pixels(67, 45)
    events, half = events_of(upscale_pixels(upscaler, image, tile=32))
    full = run_to_end(upscale_pixels(upscaler, image, tile=0, precision="fp32"))
    assert not any(isinstance(e, Notice) for e in events)
    assert half.device.type == "cpu" and half.dtype == torch.float32 and bool(torch.isfinite(half).all())
    assert 0 < (half - full).abs().max().item() < 0.01


def test_non_finite_fp16_output_falls_back_to_float32(files: dict) -> None:
    upscaler = load_upscaler(str(files["compact"]), device="cuda")
    image = pixels(20, 20)
    reference = run_to_end(upscale_pixels(upscaler, image, tile=8, precision="fp32"))

    def overflow(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled("cuda"):
            output = output.clone()
            output[:, :, 1, 1] = float("inf")  # spandrel's clamp would have made this 1
        return output

    upscaler.descriptor.model.register_forward_hook(overflow)
    events, result = events_of(upscale_pixels(upscaler, image, tile=8))
    assert [e.message for e in events if isinstance(e, Notice)] == [
        f"{upscaler.name} gave non-finite values in float16; using float32 from here on."]
    torch.testing.assert_close(result, reference, atol=1e-5, rtol=0)


def test_tiles_come_from_the_free_memory_of_the_gpu_in_use(files: dict) -> None:
    upscaler = load_upscaler(str(files["rrdb"]), device="cuda")
    free, _ = torch.cuda.mem_get_info(upscaler.device)
    assert memory.free_bytes(upscaler.device) >= free > 0
    assert plan_tiles(upscaler, 512, 512, tile=0).tile == 0
    huge = plan_tiles(upscaler, 10**6, 10**6, tile=0)
    assert MIN_TILE <= huge.tile < 10**6
    assert memory.tile_bytes(huge.tile, huge.pad, upscaler.widest_activation, 4) <= free * memory.CUDA_SHARE * 1.01


def test_out_of_memory_names_the_gpu(files: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    upscaler = load_upscaler(str(files["compact"]), device="cuda")
    index = upscaler.device.index

    def no_memory(*args: object) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(tiles_module, "_forward", no_memory)
    events = []
    with pytest.raises(OutOfMemoryError) as raised:
        for event in upscale_pixels(upscaler, pixels(70, 50), tile=0):
            events.append(event)
    assert [e.message for e in events if isinstance(e, Notice)] == [
        f"GPU cuda:{index} ran out of memory with 70-pixel tiles; retrying with 35 "
        "(a smaller --tile avoids the retry)."]
    assert str(raised.value) == (f"GPU cuda:{index} ran out of memory upscaling a 50x70 image even with 35-pixel "
                                 "tiles; free memory on it or use --device cpu.")
