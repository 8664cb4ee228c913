"""Text-to-image on CUDA: every precision gives a real image, --deterministic gives the same
pixels twice at 512 px without a warning, an out-of-memory keeps the latest image, a second
GPU is used alone. Skipped without a GPU (bench/gpu_suite.sh runs them first)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.cli.main import main
from generator.devices import cuda_half_dtype
from generator.events import Done, Progress
from generator.text_to_image.pipeline import TextToImage
from tests.factories import tiny_run_config

pytestmark = pytest.mark.gpu

REPRODUCIBLE_AUGMENTS = ["jitter", "erasing", "noise", "flip", "sharpness"]


@pytest.fixture(scope="module")
def cuda_pipeline(tiny_files) -> TextToImage:
    return TextToImage.from_pretrained(tiny_files.models(), device="cuda")


def _run(pipeline: TextToImage, config) -> tuple[Done, list[Progress]]:
    progress, done = [], None
    with pipeline.run(config) as run:
        for event in run:
            if isinstance(event, Progress):
                progress.append(event)
            elif isinstance(event, Done):
                done = event
    assert done is not None
    return done, progress


@pytest.mark.parametrize("precision", ["auto", "bf16", "fp16", "fp32"])
def test_every_precision_gives_a_finite_loss_and_an_image_that_is_not_black(cuda_pipeline: TextToImage, tiny_files,
                                                                            precision: str) -> None:
    done, progress = _run(cuda_pipeline, tiny_run_config(tiny_files, steps=12, precision=precision))
    assert progress[-1].loss is not None and math.isfinite(progress[-1].loss)  # checked at the last step
    pixels = np.asarray(done.images[0], dtype=np.float64)
    assert done.images[0].size == (32, 32)
    assert 2.0 < pixels.mean() < 253.0 and pixels.std() > 1.0  # not black, not white, not flat


def test_deterministic_runs_give_the_same_pixels_at_512_without_a_warning(cuda_pipeline: TextToImage,
                                                                          tiny_files) -> None:
    config = tiny_run_config(tiny_files, size=[512, 512], steps=4, deterministic=True,
                             cutouts={"cutn": 8, "augments": REPRODUCIBLE_AUGMENTS})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, _ = _run(cuda_pipeline, config)
        again, _ = _run(cuda_pipeline, config)
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
    assert not [w for w in caught if "determinis" in str(w.message).lower()]
    assert not torch.are_deterministic_algorithms_enabled()  # scoped to the run


def test_a_default_gpu_run_prints_no_determinism_warning(cuda_pipeline: TextToImage, tiny_files) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run(cuda_pipeline, tiny_run_config(tiny_files, steps=3))
    assert not [w for w in caught if "determinis" in str(w.message).lower()]


def test_running_out_of_gpu_memory_mid_run_keeps_the_latest_image(tiny_files, tmp_path: Path, capsys) -> None:
    pipeline = TextToImage.from_pretrained(tiny_files.models(), device="cuda")
    decode, calls = pipeline.vqgan.decode, {"n": 0}
    total = torch.cuda.get_device_properties(0).total_memory

    def decode_then_run_out(z_q, *args):
        pixels = decode(z_q, *args)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 5:
                torch.empty(2 * total, dtype=torch.uint8, device=z_q.device)  # a real CUDA out-of-memory
        return pixels

    pipeline.vqgan.decode = decode_then_run_out
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(0)
    code = main(["city", *tiny_files.cli_args(), "--size", "64", "64", "--cutn", "4", "--steps", "20",
                 "--save-every", "2", "--seed", "1", "--device", "cuda", "--out", str(tmp_path)],
                make_pipeline=lambda *a, **k: pipeline)
    err = capsys.readouterr().err
    assert code == 1 and "error: GPU cuda:0 ran out of memory at 64x64 with 4 cutouts" in err
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    final = np.asarray(Image.open(folder / "final.png"))
    assert final.shape == (64, 64, 3) and final.std() > 0
    assert sorted(p.name for p in (folder / "frames").iterdir()) == ["000002.png", "000004.png"]
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated(0) - before < 64 * 2**20  # the failed step's tensors were released


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_a_run_on_the_second_gpu_stays_there_and_uses_its_precision(tiny_files) -> None:
    second = torch.device("cuda:1")
    torch.cuda.synchronize(0)
    on_first = torch.cuda.memory_allocated(0)
    pipeline = TextToImage.from_pretrained(tiny_files.models(), device=second)
    config = tiny_run_config(tiny_files, steps=3, precision="auto")
    loop = pipeline.new_loop(config)
    list(pipeline.start_image(loop, config, (32, 32)))
    loop.check(loop.step())
    assert loop.latents().device == second and loop.precision.decoder == cuda_half_dtype(second)
    done, _ = _run(pipeline, config)
    assert np.asarray(done.images[0]).std() > 0
    torch.cuda.synchronize(0)
    assert torch.cuda.memory_allocated(0) == on_first  # nothing was put on cuda:0


def test_a_step_never_makes_the_cpu_wait_for_the_gpu_in_the_loops_own_code(cuda_pipeline: TextToImage,
                                                                           tiny_files) -> None:
    config = tiny_run_config(tiny_files, precision="bf16", cutouts={"cutn": 8, "augments": ["jitter"]})
    loop = cuda_pipeline.new_loop(config)
    list(cuda_pipeline.start_image(loop, config, (32, 32)))
    loop.step()  # first-use allocations (pinned buffers, cached constants)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                loop.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ours = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught
            if "/generator/" in w.filename.replace("\\", "/") and "synchroniz" in str(w.message).lower()]
    assert not ours
