"""The web UI as a user runs it: a Studio that loads (and reloads) models itself, and
``python app.py`` serving files from --out only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from generator.config import ClipModelConfig, ModelsConfig
from generator.webui.jobs import text_to_image_job
from generator.webui.studio import Studio
from tests.clip_factories import write_tiny_clip
from tests.factories import save_tiny_vqgan, tiny_run_config
from tests.webui.app_process import ROOT, get, running_app


def _models(vqgan: tuple[Path, Path], clip: tuple[Path, Path], weight: float = 1.0) -> ModelsConfig:
    return ModelsConfig(vqgan=str(vqgan[0]), vqgan_config=str(vqgan[1]),
                        clip_models=(ClipModelConfig(str(clip[0]), str(clip[1]), weight),))


def _same_weights(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    mine = module.state_dict()
    return set(state) <= set(mine) and all(torch.equal(mine[key].cpu(), value) for key, value in state.items())


def test_the_studio_loads_the_models_a_run_asks_for(tiny_files, tmp_path: Path) -> None:
    vqgan_a = (tiny_files.vqgan, tiny_files.vqgan_config)
    clip_a = (tiny_files.clip_config, tiny_files.clip_weights)
    *vqgan_b, model_b = save_tiny_vqgan(tmp_path, name="other_vqgan", seed=5)
    clip_b = write_tiny_clip(tmp_path, name="other-clip", seed=1)
    models_a, models_b = _models(vqgan_a, clip_a), _models(tuple(vqgan_b), clip_b)
    state_vqgan_b = {k: v for k, v in model_b.state_dict().items()}
    state_clip_b = torch.load(clip_b[1], weights_only=True)
    state_clip_a = torch.load(clip_a[1], weights_only=True)

    studio = Studio(outputs_dir=tmp_path / "outputs", models=models_a, device="cpu")
    assert studio.text_to_image is None  # nothing injected, nothing loaded yet
    first = studio.text_to_image_for(models_a)
    assert studio.text_to_image is first and first.requested.identity == models_a.identity
    assert _same_weights(first.clips[0].model, state_clip_a)
    assert studio.text_to_image_for(models_a) is first  # the same models: kept
    assert studio.text_to_image_for(_models(vqgan_a, clip_a, weight=0.5)) is first  # a weight needs no reload

    only_clip = studio.text_to_image_for(_models(vqgan_a, clip_b))  # another CLIP alone is reloaded too
    assert only_clip is not first and studio.text_to_image is only_clip
    assert _same_weights(only_clip.clips[0].model, state_clip_b) and not _same_weights(only_clip.vqgan, state_vqgan_b)

    second = studio.text_to_image_for(models_b)  # other models: loaded from their files
    assert second is not only_clip and studio.text_to_image is second
    assert second.requested.identity == models_b.identity
    assert _same_weights(second.vqgan, state_vqgan_b) and not _same_weights(first.vqgan, state_vqgan_b)
    assert _same_weights(second.clips[0].model, state_clip_b) and not _same_weights(second.clips[0].model, state_clip_a)
    assert studio.text_to_image_for(models_b) is second

    back = studio.text_to_image_for(models_a)  # and back again
    assert back is not second and _same_weights(back.clips[0].model, state_clip_a)
    assert not _same_weights(back.vqgan, state_vqgan_b)

    # a job whose config names the other models runs on them and records them
    config = tiny_run_config(tiny_files, steps=2, seed=12).replace(models=models_b)
    updates = list(text_to_image_job(studio, config, studio.session()))
    assert studio.text_to_image is not back and studio.text_to_image.requested.identity == models_b.identity
    folder = Path(updates[-1].result).parent
    recorded = json.loads((folder / "config.json").read_text())["models"]
    assert recorded["vqgan"] == str(vqgan_b[0]) and recorded["clip_models"][0]["pretrained"] == str(clip_b[1])


@pytest.fixture
def app_server(tiny_files, tmp_path: Path):
    """``python app.py --port P --out DIR --lazy`` with the tiny models, as a user starts it."""
    with running_app(tiny_files, tmp_path) as served:
        yield served


def test_app_main_serves_no_file_by_its_path(app_server, tiny_files, tmp_path: Path) -> None:
    """Not even a run's final.png is served to someone who names it: files reach a visitor only
    as copies sent to that visitor (tests/webui/test_visitors.py)."""
    base, out = app_server
    assert out.is_dir()  # created at start
    folder = out / "20240101-000000-city-at-night-1"
    folder.mkdir()
    Image.new("RGB", (8, 8), (200, 30, 40)).save(folder / "final.png")
    (tmp_path / "secret.txt").write_text("not for the browser")
    outside = [str(folder / "final.png"), "/etc/passwd", str(ROOT / "README.md"), str(ROOT / "app.py"),
               str(tiny_files.vqgan), str(tmp_path / "secret.txt"), f"{out}/../secret.txt",
               f"{folder}/../../secret.txt"]
    for path in outside:
        status, body = get(f"{base}gradio_api/file={path}")
        assert status in (403, 404) and b"not for the browser" not in body and b"root:" not in body, path
