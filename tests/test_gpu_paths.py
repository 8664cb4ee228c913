"""What a first GPU user would meet, checked on the CPU by standing in for CUDA's answers (issue
26, point 12): tiles and canvases planned from this process's share of the GPU, --deterministic
after CUDA started is one sentence, and keeping the latest image retries after running out of
memory on the run's own device (the CPU allocator's error too)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from generator import devices
from generator import runs as runs_module
from generator.errors import ConfigError
from generator.runs import GenerationRun, RunState
from generator.text_to_image.edit import available_bytes
from generator.upscale import memory

GB = 1 << 30
GPU = torch.device("cuda:1")


@pytest.fixture
def shared_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 16 GB GPU with 8 GB free, of which this process may use a quarter, 1 GB reserved already."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * GB, 16 * GB))
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 0.25)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 1 * GB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: GB // 2)


def test_planning_follows_this_processs_share_of_the_gpu(shared_gpu) -> None:
    assert devices.cuda_free_bytes(GPU) == 3 * GB  # a quarter of 16 GB less the 1 GB held, not the 8 GB free
    assert available_bytes(GPU) == 3 * GB  # an outpaint's memory check
    assert memory.free_bytes(GPU) == 3 * GB + GB // 2  # tiles: plus what the allocator holds unused


def test_a_whole_gpu_is_planned_from_its_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (5 * GB, 16 * GB))
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 1.0)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 2 * GB)
    assert devices.cuda_free_bytes(GPU) == 5 * GB


def test_deterministic_after_cuda_started_without_the_cublas_setting_is_one_sentence(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    with pytest.raises(ConfigError) as refused:
        with devices.deterministic(GPU, True):
            pass
    assert str(refused.value).startswith("--deterministic on CUDA needs CUBLAS_WORKSPACE_CONFIG=:4096:8")
    with devices.deterministic(GPU, False):  # not asked for: nothing to say
        pass
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    devices.check_cublas_for_determinism()  # set before CUDA started: fine


@pytest.mark.parametrize("failure", [RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                                                  "allocate 123 bytes."), MemoryError(), torch.OutOfMemoryError("x")])
def test_keeping_the_latest_image_retries_after_any_out_of_memory_on_the_runs_device(
        monkeypatch: pytest.MonkeyPatch, failure: BaseException) -> None:
    released: list[torch.device] = []
    monkeypatch.setattr(runs_module, "release_memory", released.append)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: pytest.fail("the CUDA cache of a CPU run was emptied"))
    attempts = []

    def decode() -> Image.Image:
        attempts.append(1)
        if len(attempts) == 1:
            raise failure
        return Image.new("RGB", (4, 4))

    run = GenerationRun(iter(()), RunState(mode="text-to-image", label="x", decode=decode), torch.device("cpu"))
    assert run.latest_image() is not None and len(attempts) == 2
    assert released == [torch.device("cpu")]
