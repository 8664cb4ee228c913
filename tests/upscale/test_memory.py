"""Tiles sized from free memory, and running out of memory: the device named, what to do said,
the failed tile's tensors dropped before the retry with smaller tiles."""

from __future__ import annotations

import sys
import weakref
from pathlib import Path

import pytest
import torch

from generator.errors import OutOfMemoryError
from generator.events import Notice
from generator.upscale import memory
from generator.upscale import tiles as tiles_module
from generator.upscale.loader import load_upscaler
from generator.upscale.tiles import MIN_TILE, plan_tiles, run_to_end, upscale_pixels
from tests.upscale.helpers import events_of, pixels

CPU_OOM = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 123456789 bytes."


@pytest.mark.parametrize(("name", "widest"), [("compact", 12.0), ("compact16", 16.0), ("rrdb", 128.0),
                                              ("rrdb_x2", 32.0)])
def test_widest_activation_is_measured_per_input_pixel(files: dict, name: str, widest: float) -> None:
    # compact x2: its last conv makes 3 * 2 * 2 channels; compact16: 16 features; RRDBNet x4 with
    # 8 features: 8 channels at 4 x 4 the area after upsampling; x2: 8 at 2 x 2.
    upscaler = load_upscaler(str(files[name]))
    assert upscaler.widest_activation == widest


def test_whole_image_where_it_fits_else_the_largest_tile_that_does(files: dict,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    upscaler = load_upscaler(str(files["rrdb_x2"]))  # tiles must be multiples of 4
    per_pixel, pad, step = upscaler.widest_activation, upscaler.tile_pad, upscaler.multiple_of
    assert step == 4
    monkeypatch.setattr(tiles_module, "free_bytes", lambda device: 2**40)
    assert plan_tiles(upscaler, 300, 500, tile=0).tile == 0
    assert plan_tiles(upscaler, 300, 500, tile=64).tile == 64  # a tile asked for is kept
    free = 256 * 2**20
    monkeypatch.setattr(tiles_module, "free_bytes", lambda device: free)
    plan = plan_tiles(upscaler, 1000, 1500, tile=0, precision="fp32")
    assert MIN_TILE <= plan.tile < 1000 and plan.tile % step == 0 and plan.dtype is None
    canvas = 1000 * 1500 * 2 * 2 * 3 * 4  # the (3, 2000, 3000) float32 result, on the CPU too
    budget = (free - canvas) * memory.CPU_SHARE
    assert memory.tile_bytes(plan.tile, pad, per_pixel, 4) <= budget < memory.tile_bytes(plan.tile + step, pad,
                                                                                           per_pixel, 4)
    assert plan_tiles(upscaler, 1000, 1500, tile=0, precision="bf16").tile == plan.tile  # planned as float32
    monkeypatch.setattr(tiles_module, "free_bytes", lambda device: 1000)
    assert plan_tiles(upscaler, 3000, 5000, tile=0).tile == MIN_TILE


def test_free_memory_on_the_cpu_comes_from_meminfo_without_psutil(files: dict, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   2000000 kB\n")
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil fails
    monkeypatch.setattr(memory, "MEMINFO", meminfo)
    assert memory.free_bytes(torch.device("cpu")) == 2000000 * 1024
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "missing")
    assert memory.free_bytes(torch.device("cpu")) is None
    upscaler = load_upscaler(str(files["compact"]))
    assert plan_tiles(upscaler, 40, 40, tile=0).tile == 0  # planned for a fixed 2 GiB
    assert plan_tiles(upscaler, 3000, 3000, tile=0).tile == memory.largest_tile(
        tiles_module.FALLBACK_FREE_BYTES - 6000 * 6000 * 3 * 4, memory.CPU_SHARE, upscaler.tile_pad,
        upscaler.widest_activation, 4, 1)


@pytest.mark.parametrize(("kind", "message"), [(RuntimeError, CPU_OOM), (MemoryError, ""),
                                               (torch.OutOfMemoryError, "CUDA out of memory")])
def test_out_of_memory_drops_the_failed_tile_then_retries_with_smaller_tiles(
        files: dict, monkeypatch: pytest.MonkeyPatch, kind: type[BaseException], message: str) -> None:
    upscaler = load_upscaler(str(files["compact"]))
    image = pixels(70, 70)
    reference = run_to_end(upscale_pixels(upscaler, image, tile=0, precision="fp32"))
    real = tiles_module._forward
    failed: list[weakref.ref] = []
    released: list[torch.device] = []

    def small_memory(model, region, dtype):
        if region.shape[2] * region.shape[3] > 45 * 45:
            failed.append(weakref.ref(region))
            raise kind(message)
        return real(model, region, dtype)

    monkeypatch.setattr(tiles_module, "_forward", small_memory)
    monkeypatch.setattr(tiles_module, "release_memory", released.append)
    generator = upscale_pixels(upscaler, image, tile=64, precision="fp32")
    notices = []
    for event in generator:
        if isinstance(event, Notice):
            notices.append(event.message)
            assert failed and all(ref() is None for ref in failed)  # the failed tile's input is gone already
    assert notices == ["the CPU ran out of memory with 64-pixel tiles; retrying with 32 "
                       "(a smaller --tile avoids the retry)."]
    assert released == [torch.device("cpu")]
    result = run_to_end(upscale_pixels(upscaler, image, tile=32, precision="fp32"))
    assert (result - reference).abs().max().item() <= 1e-5  # the same image, but for float rounding across tile sizes


def test_out_of_memory_with_the_smallest_tiles_names_the_device_and_what_to_do(
        files: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    upscaler = load_upscaler(str(files["compact"]))

    def no_memory(*args):
        raise RuntimeError(CPU_OOM)

    monkeypatch.setattr(tiles_module, "_forward", no_memory)
    events, error = [], None
    try:
        for event in upscale_pixels(upscaler, pixels(70, 50), tile=0):
            events.append(event)
    except OutOfMemoryError as raised:
        error = raised
    assert [e.message.split(";")[0] for e in events if isinstance(e, Notice)] == [
        "the CPU ran out of memory with 70-pixel tiles"]
    assert str(error) == ("the CPU ran out of memory upscaling a 50x70 image even with 35-pixel tiles; "
                          "close other programs or upscale a smaller image.")
    assert error.__context__ is None  # raised outside the except block


def test_other_runtime_errors_are_not_taken_for_out_of_memory(files: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    upscaler = load_upscaler(str(files["compact"]))
    monkeypatch.setattr(tiles_module, "_forward", lambda *args: (_ for _ in ()).throw(RuntimeError("bad shape")))
    with pytest.raises(RuntimeError, match="bad shape"):
        events_of(upscale_pixels(upscaler, pixels(20, 20), tile=0))


@pytest.mark.parametrize(("asked", "planned"), [(0, 0), (1, 4), (3, 4), (4, 4), (5, 8), (10, 12)])
def test_an_explicit_tile_pad_is_rounded_up_to_the_networks_multiple(files: dict, asked: int, planned: int) -> None:
    """A pad rounded down (to 0 for 1-3 on a multiple of 4) leaves the tiles without context: seams."""
    upscaler = load_upscaler(str(files["rrdb_x2"]))
    assert upscaler.multiple_of == 4
    assert plan_tiles(upscaler, 100, 120, tile=32, tile_pad=asked).pad == planned
    assert plan_tiles(upscaler, 100, 120, tile=32).pad == upscaler.tile_pad  # not given: the network's own
