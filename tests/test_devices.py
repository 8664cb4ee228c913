"""Device decisions made without a GPU: which half precision a GPU gets (asked of the GPU in
use), what ``auto`` means on the CPU, determinism scoped to a run, out-of-memory recognised."""

from __future__ import annotations

import pytest
import torch

from generator import devices
from generator.devices import Precision, cuda_half_dtype, describe_device, deterministic, precision_for


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> list:
    """cuda:0 an A100 (8.0), cuda:1 a T4 (7.5); records which device each query asked about."""
    asked: list = []
    capabilities = {0: (8, 0), 1: (7, 5)}

    def capability(device=None):
        asked.append(device)
        index = torch.device(device).index if device is not None else 0
        return capabilities[index]

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # counts emulation: never asked
    return asked


def test_each_gpu_gets_its_own_native_half_precision(two_gpus: list) -> None:
    assert cuda_half_dtype(torch.device("cuda:0")) == torch.bfloat16
    assert cuda_half_dtype(torch.device("cuda:1")) == torch.float16  # T4: bf16 only emulated
    assert [torch.device(d) for d in two_gpus] == [torch.device("cuda:0"), torch.device("cuda:1")]
    assert precision_for(torch.device("cuda:1"), "auto") == Precision(torch.float16, torch.float16)
    assert precision_for(torch.device("cuda:0"), "auto") == Precision(torch.bfloat16, torch.bfloat16)
    assert precision_for(torch.device("cuda:1"), "bf16") == Precision(torch.bfloat16, torch.bfloat16)
    assert precision_for(torch.device("cuda:0"), "fp32") == Precision()


@pytest.mark.parametrize("native", [True, False])
def test_the_cpu_gets_bf16_only_where_it_has_bf16_units(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    bf16 = Precision(decoder=torch.bfloat16, clip_weights=torch.bfloat16)
    assert precision_for(cpu, "auto") == (bf16 if native else Precision())
    assert precision_for(cpu, "bf16") == bf16  # asked for: given even where it is slow
    assert precision_for(cpu, "fp16") == Precision()  # GPUs only
    assert precision_for(cpu, "fp32") == Precision()


def test_deterministic_kernels_are_scoped_to_the_run_and_restored_after_a_failure() -> None:
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
              torch.are_deterministic_algorithms_enabled())
    with pytest.raises(RuntimeError, match="inside"), deterministic(torch.device("cuda"), True):
        assert torch.backends.cudnn.deterministic and torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()  # raise, never a warning per step
        raise RuntimeError("inside")
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
            torch.are_deterministic_algorithms_enabled()) == before
    with deterministic(torch.device("cpu"), True):  # CPU runs are reproducible without it
        assert torch.are_deterministic_algorithms_enabled() == before[2]


def test_messages_name_the_device_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    assert describe_device(torch.device("cpu")) == "the CPU"
    assert describe_device(torch.device("cuda:1")) == "GPU cuda:1"
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert describe_device(torch.device("cuda")) == "GPU cuda:0"


def test_out_of_memory_is_recognised_from_every_allocator() -> None:
    assert devices.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert devices.is_out_of_memory(MemoryError())
    assert devices.is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't "
                                                 "allocate memory: you tried to allocate 9 bytes"))
    assert not devices.is_out_of_memory(RuntimeError("shape mismatch"))
