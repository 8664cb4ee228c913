"""The upscaler's precision: which half precision ``auto`` picks, bf16's error on the CPU, and
the fall back to float32 when half precision output is not finite (checked before the clamp)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from generator.errors import ConfigError
from generator.events import Notice
from generator.upscale import loader as loader_module
from generator.upscale.loader import Upscaler, load_upscaler
from generator.upscale.tiles import plan_tiles, run_to_end, upscale_pixels
from tests.upscale.helpers import events_of, pixels

# bf16 against float32 on the CPU. The real realesr-general-x4v3 weights at 256 px differ by at
# most 0.061 (one edge pixel of a screenshot; mean 0.0002-0.004, PSNR 46-59 dB); this tiny
# random network, whose activations are smaller, stays within these bounds.
BF16_MAX_ERROR = 0.02
BF16_MEAN_ERROR = 0.002


def _stub(monkeypatch: pytest.MonkeyPatch, device: str, *, half: bool, bf16: bool) -> Upscaler:
    """An Upscaler on ``device`` (as far as the choice can tell) whose descriptor supports
    fp16 / bf16 as given."""
    descriptor = SimpleNamespace(model=torch.nn.Conv2d(3, 3, 1), supports_half=half, supports_bfloat16=bf16,
                                 architecture=SimpleNamespace(name="Stub"))
    monkeypatch.setattr(Upscaler, "device", property(lambda self: torch.device(device)))
    return Upscaler(descriptor, "stub")  # type: ignore[arg-type]


@pytest.mark.parametrize(("device", "half", "bf16", "native_bf16", "expected"), [
    ("cuda:1", True, True, True, torch.float16),  # fp16 first: a tenth of bf16's error
    ("cuda:1", True, False, False, torch.float16),
    ("cuda:1", False, True, True, torch.bfloat16),  # bf16 only where fp16 is not supported
    ("cuda:1", False, True, False, None),  # ... and the GPU runs bf16 natively
    ("cuda:1", False, False, True, None),
    ("cpu", True, True, True, torch.bfloat16),  # CPUs: bf16 where they have bf16 units
    ("cpu", True, True, False, None),
    ("cpu", True, False, True, None),
])
def test_auto_prefers_fp16_on_cuda_and_bf16_on_cpus_with_bf16_units(
        monkeypatch: pytest.MonkeyPatch, device: str, half: bool, bf16: bool, native_bf16: bool,
        expected: torch.dtype | None) -> None:
    asked: list[torch.device] = []

    def gpu_half(gpu: torch.device) -> torch.dtype:
        asked.append(gpu)
        return torch.bfloat16 if native_bf16 else torch.float16

    monkeypatch.setattr(loader_module, "cuda_half_dtype", gpu_half)
    monkeypatch.setattr(loader_module, "cpu_has_native_bf16", lambda: native_bf16)
    upscaler = _stub(monkeypatch, device, half=half, bf16=bf16)
    assert upscaler.half_dtype() is expected
    assert upscaler.autocast_dtype("auto") is expected and upscaler.autocast_dtype("fp32") is None
    assert all(gpu == torch.device("cuda:1") for gpu in asked)  # the GPU in use, not the current one
    if device.startswith("cuda") and not half and bf16:
        assert asked  # asked the GPU, which decides


def test_explicit_precisions_the_network_does_not_support_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    upscaler = _stub(monkeypatch, "cpu", half=False, bf16=True)
    assert upscaler.autocast_dtype("bf16") is torch.bfloat16
    with pytest.raises(ConfigError, match=r"stub \(Stub\) does not work in fp16; use auto or fp32"):
        upscaler.autocast_dtype("fp16")
    with pytest.raises(ConfigError, match="unknown upscale precision 'int8'"):
        upscaler.autocast_dtype("int8")


def test_bf16_on_the_cpu_stays_within_its_stated_error(files: dict) -> None:
    upscaler = load_upscaler(str(files["compact16"]))
    image = pixels(40, 36, seed=5)
    full = run_to_end(upscale_pixels(upscaler, image, tile=16, precision="fp32"))
    half = run_to_end(upscale_pixels(upscaler, image, tile=16, precision="bf16"))
    assert plan_tiles(upscaler, 40, 36, tile=16, precision="bf16").precision == "bfloat16"
    error = (half - full).abs()
    assert error.max().item() > 0  # bf16 did run
    assert error.max().item() <= BF16_MAX_ERROR and error.mean().item() <= BF16_MEAN_ERROR
    assert half.min().item() >= 0 and half.max().item() <= 1


def _inf_in_half_precision(upscaler: Upscaler, value: float = float("inf")) -> None:
    """Make the network emit ``value`` at one output pixel whenever it runs under autocast."""

    def hook(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(output.device.type):
            output = output.clone()
            output[:, :, 1, 1] = value
        return output

    upscaler.descriptor.model.register_forward_hook(hook)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_half_output_is_caught_before_the_clamp_and_rerun_in_float32(files: dict, value: float) -> None:
    upscaler = load_upscaler(str(files["compact"]))
    image = pixels(20, 20)
    reference = run_to_end(upscale_pixels(upscaler, image, tile=8, precision="fp32"))
    _inf_in_half_precision(upscaler, value)
    events, result = events_of(upscale_pixels(upscaler, image, tile=8, precision="bf16"))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert notices == [f"{upscaler.name} gave non-finite values in bfloat16; using float32 from here on."]
    assert torch.equal(result, reference)  # the first tile was rerun in float32, the rest ran in it


def test_finite_half_output_is_kept(files: dict) -> None:
    upscaler = load_upscaler(str(files["compact"]))
    image = pixels(20, 20)
    events, result = events_of(upscale_pixels(upscaler, image, tile=8, precision="bf16"))
    assert not any(isinstance(e, Notice) for e in events)
    assert not torch.equal(result, run_to_end(upscale_pixels(upscaler, image, tile=8, precision="fp32")))
