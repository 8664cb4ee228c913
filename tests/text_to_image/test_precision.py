"""Reduced precision on the CPU: within the stated tolerance of float32, and CLIP's weights
rounded for a bf16 run and brought back exactly for a float32 one."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from generator.text_to_image.pipeline import TextToImage
from tests.clip_factories import tiny_clip
from tests.factories import tiny_run_config, tiny_vqgan

SIZE = (32, 32)


def _first_step(pipeline: TextToImage, config) -> tuple[float, torch.Tensor, np.ndarray]:
    """(loss, latent update, start image) of the first step of ``config``'s run."""
    loop = pipeline.new_loop(config)
    list(pipeline.start_image(loop, config, SIZE))
    start = loop.latents()
    image = np.asarray(loop.decode()[0], dtype=np.float64)
    report = loop.step()
    return report.values()[0], (loop.latents() - start).flatten(), image


def test_a_bf16_run_stays_within_the_stated_tolerance_of_float32(tiny_files) -> None:
    # The tolerance README states for precision auto/bf16: first loss within 1 %, the first
    # latent update pointing the same way (cosine >= 0.9), the decoded image within 2/255 on
    # average. bench/precision.py measures the same at the official shapes.
    pipeline = TextToImage.from_pretrained(tiny_files.models(), device="cpu")
    loss32, update32, image32 = _first_step(pipeline, tiny_run_config(tiny_files))
    loss16, update16, image16 = _first_step(pipeline, tiny_run_config(tiny_files, precision="bf16"))
    assert pipeline.clips[0].dtype == torch.bfloat16  # the bf16 run really ran CLIP in bf16
    assert loss16 != loss32 and abs(loss16 - loss32) <= 0.01 * abs(loss32)
    assert float(torch.nn.functional.cosine_similarity(update16, update32, dim=0)) >= 0.9
    assert 0 < np.abs(image16 - image32).mean() <= 2.0


def test_clip_weights_rounded_for_bf16_come_back_exactly_for_float32(tiny_files) -> None:
    pipeline = TextToImage.from_pretrained(tiny_files.models(), device="cpu")
    original = {name: value.clone() for name, value in pipeline.clips[0].model.state_dict().items()}
    pipeline.new_loop(tiny_run_config(tiny_files, precision="bf16"))
    rounded = pipeline.clips[0].model.state_dict()
    assert all(value.dtype == torch.bfloat16 for value in rounded.values() if value.is_floating_point())
    pipeline.new_loop(tiny_run_config(tiny_files))  # float32 again: read again from the file
    restored = pipeline.clips[0].model.state_dict()
    assert restored.keys() == original.keys()
    assert all(torch.equal(restored[name], value) for name, value in original.items())


def test_models_built_in_memory_are_widened_with_a_warning(tmp_path, tiny_files, caplog) -> None:
    clip = tiny_clip(tmp_path)
    pipeline = TextToImage(tiny_vqgan(), [clip])
    pipeline.new_loop(tiny_run_config(tiny_files, precision="bf16"))
    assert clip.dtype == torch.bfloat16
    with caplog.at_level(logging.WARNING):
        pipeline.new_loop(tiny_run_config(tiny_files))
    assert clip.dtype == torch.float32 and "cannot be read again" in caplog.text


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_on_the_cpu_follows_its_bf16_units(monkeypatch, tiny_files, native: bool) -> None:
    from generator import devices

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    pipeline = TextToImage.from_pretrained(tiny_files.models(), device="cpu")
    loop = pipeline.new_loop(tiny_run_config(tiny_files, precision="auto"))
    expected = torch.bfloat16 if native else None
    assert loop.precision.decoder == expected and loop.precision.clip is None
    assert pipeline.clips[0].dtype == (expected or torch.float32)


def test_the_clamp_blocks_outward_gradients_even_where_fp16_would_underflow() -> None:
    from generator.text_to_image.losses import clamp_with_grad

    # Overshoot 1e-3 times gradient -1e-5 is 1e-8, below fp16's smallest number (6e-8): a
    # mask computed in fp16 sees 0 and lets the outward push through.
    x = torch.tensor([1.001, 0.5, -0.001], dtype=torch.float16, requires_grad=True)
    grad = torch.tensor([-1e-5, -1e-5, 1e-5], dtype=torch.float16)
    assert float(grad[0] * (x[0].detach() - 1)) == 0.0  # the underflow this guards against
    (passed,) = torch.autograd.grad(clamp_with_grad(x, 0.0, 1.0), x, grad)
    assert passed.tolist() == [0.0, pytest.approx(-1e-5, rel=1e-2), 0.0]  # outward pushes blocked, inner passed
    inward = torch.tensor([1e-5, 1e-5, -1e-5], dtype=torch.float16)  # pulling back into range passes
    (back,) = torch.autograd.grad(clamp_with_grad(x, 0.0, 1.0), x, inward)
    assert (back != 0).all()
