"""The text-to-image pipeline end to end, in process, on tiny models loaded from official-format files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.config import GenerationConfig
from generator.errors import ConfigError, InputError
from generator.events import Done, Notice, Preview, Progress
from generator.io.images import pil_to_tensor
from generator.text_to_image.loop import synthesize
from generator.text_to_image.pipeline import TextToImage
from tests.factories import tiny_run_config


def _events(pipeline: TextToImage, config: GenerationConfig) -> list:
    return list(pipeline.run(config))


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def test_event_contract(tiny_pipeline: TextToImage, tiny_files) -> None:
    config = tiny_run_config(tiny_files, steps=12, output={"save_every": 4})
    events = _events(tiny_pipeline, config)
    progress = [e for e in events if isinstance(e, Progress)]
    previews = [e for e in events if isinstance(e, Preview)]
    assert [e.step for e in progress] == list(range(1, 13))
    assert all(e.stage == "optimise" and e.total == 12 and e.loss is not None for e in progress)
    assert [e.step for e in previews] == [4, 8, 12]
    assert isinstance(events[-1], Done) and sum(isinstance(e, Done) for e in events) == 1
    done = events[-1]
    assert done.images[0].size == (32, 32) and done.seed == 3
    assert done.config["seed"] == 3 and done.config["size"] == [32, 32]
    assert GenerationConfig.from_dict(done.config).models == config.models
    assert set(done.timings) >= {"load", "prepare", "optimise", "total"}
    # the last frame is the final image
    assert np.array_equal(_pixels(previews[-1].image), _pixels(done.images[0]))


def test_same_seed_same_pixels_different_seed_different_pixels(tiny_pipeline: TextToImage, tiny_files) -> None:
    config = tiny_run_config(tiny_files, steps=6)
    first = tiny_pipeline(config).images[0]
    again = tiny_pipeline(config).images[0]
    other = tiny_pipeline(config.replace(seed=4)).images[0]
    assert np.array_equal(_pixels(first), _pixels(again))
    assert not np.array_equal(_pixels(first), _pixels(other))


def test_a_missing_seed_is_chosen_and_recorded(tiny_pipeline: TextToImage, tiny_files) -> None:
    done = tiny_pipeline(tiny_run_config(tiny_files, steps=2).replace(seed=None))
    assert isinstance(done.seed, int) and done.config["seed"] == done.seed


def _similarity(pipeline: TextToImage, image: Image.Image, text: str) -> float:
    clip = pipeline.clips[0]
    pixels = torch.nn.functional.interpolate(pil_to_tensor(image), size=clip.input_size, mode="area")
    with torch.no_grad():
        return float(clip.encode_image(pixels) @ clip.encode_text([text]).T)


def test_clip_similarity_to_the_prompt_rises(tiny_pipeline: TextToImage, tiny_files) -> None:
    config = tiny_run_config(tiny_files, steps=40, optim={"lr": 0.2}, cutouts={"cutn": 8, "augments": []})
    run = tiny_pipeline.run(config)
    first_progress = next(e for e in run if isinstance(e, Progress))
    assert first_progress.step == 1
    start = run.latest_image()  # after one step; decode before the optimisation went far
    done = next(e for e in run if isinstance(e, Done))
    final = _similarity(tiny_pipeline, done.images[0], "city at night")
    assert final > _similarity(tiny_pipeline, start, "city at night") + 0.01


def test_prompt_loss_falls(tiny_pipeline: TextToImage, tiny_files) -> None:
    config = tiny_run_config(tiny_files, steps=30, optim={"lr": 0.2},
                             cutouts={"cutn": 8, "augments": [], "noise_fac": 0})
    losses = [e.loss for e in _events(tiny_pipeline, config) if isinstance(e, Progress)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_prompt_schedule_switches_phrases(tiny_pipeline: TextToImage, tiny_files) -> None:
    config = tiny_run_config(tiny_files, prompts="a forest ^ a city ^ the sea", steps=9, change_prompt_every=3)
    labels = [set(e.losses) for e in _events(tiny_pipeline, config) if isinstance(e, Progress)]
    assert labels == [{"text:a forest"}] * 3 + [{"text:a city"}] * 3 + [{"text:the sea"}] * 3


def test_negative_weights_push_away_and_weights_scale(tiny_pipeline: TextToImage, tiny_files) -> None:
    config = tiny_run_config(tiny_files, prompts="city:2 | fog:-0.5", steps=1)
    progress = next(e for e in tiny_pipeline.run(config) if isinstance(e, Progress))
    assert progress.losses["text:fog"] < 0 < progress.losses["text:city"]
    single_config = tiny_run_config(tiny_files, prompts="city", steps=1)
    single = next(e for e in tiny_pipeline.run(single_config) if isinstance(e, Progress))
    assert progress.losses["text:city"] == pytest.approx(2 * single.losses["text:city"], rel=1e-5)


def test_mse_pulls_toward_the_initial_latent_not_toward_zero(tiny_pipeline: TextToImage, tiny_files) -> None:
    config = tiny_run_config(tiny_files, steps=6, optim={"init_weight": 1.0, "init_weight_decay_steps": 3})
    progress = [e for e in _events(tiny_pipeline, config) if isinstance(e, Progress)]
    assert progress[0].losses["init_mse"] == 0.0  # at step 1 the latent is its initial value
    assert progress[1].losses["init_mse"] > 0.0
    assert all(p.losses["init_mse"] == 0.0 for p in progress[2:])  # the weight reached zero at step 3


def test_tv_loss_and_every_optimiser(tiny_pipeline: TextToImage, tiny_files) -> None:
    for optimiser in ("adam", "adamw", "adagrad", "adamax", "radam", "rmsprop", "sgd"):
        config = tiny_run_config(tiny_files, steps=2, optim={"optimiser": optimiser, "tv_weight": 0.5})
        progress = [e for e in _events(tiny_pipeline, config) if isinstance(e, Progress)]
        assert len(progress) == 2 and progress[0].losses["tv"] >= 0, optimiser


def test_latent_stays_inside_the_codebook_range(tiny_pipeline: TextToImage, tiny_files) -> None:
    config = tiny_run_config(tiny_files, steps=5, optim={"lr": 5.0})
    loop = tiny_pipeline.new_loop(config)
    list(tiny_pipeline.start_image(loop, config, (32, 32)))
    for _ in range(5):
        loop.step()
    z = loop.latents()
    codebook = tiny_pipeline.vqgan.codebook
    assert (z >= codebook.min(dim=0).values[None, :, None, None] - 1e-6).all()
    assert (z <= codebook.max(dim=0).values[None, :, None, None] + 1e-6).all()


@pytest.mark.parametrize("init", ["random", "pixels", "gradient"])
def test_initialisations(tiny_pipeline: TextToImage, tiny_files, init: str) -> None:
    done = tiny_pipeline(tiny_run_config(tiny_files, steps=2, init={"init": init}))
    assert done.images[0].size == (32, 32)


def test_init_image_starts_close_to_the_image(tiny_pipeline: TextToImage, tiny_files, tmp_path: Path) -> None:
    source = Image.new("RGB", (64, 48), (200, 30, 30))
    source.save(tmp_path / "red.png")
    config = tiny_run_config(tiny_files, steps=1, optim={"lr": 1e-6},
                             init={"init": "image", "init_image": str(tmp_path / "red.png")})
    run = tiny_pipeline.run(config)
    next(e for e in run if isinstance(e, Progress))
    z = tiny_pipeline.vqgan.encode(pil_to_tensor(source.resize((32, 32))) * 2 - 1)
    expected = synthesize(tiny_pipeline.vqgan, z).detach()
    assert torch.allclose(pil_to_tensor(run.latest_image()), expected, atol=2 / 255)


def test_size_is_rounded_down_with_a_notice(tiny_pipeline: TextToImage, tiny_files) -> None:
    events = _events(tiny_pipeline, tiny_run_config(tiny_files, steps=1, size=[33, 31]))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any("33x31 is not a multiple of the VQGAN's factor 2; using 32x30" in n for n in notices)
    assert events[-1].images[0].size == (32, 30)


def test_image_and_noise_prompts(tiny_pipeline: TextToImage, tiny_files, tmp_path: Path) -> None:
    Image.new("RGB", (40, 40), (0, 90, 200)).save(tmp_path / "blue.png")
    config = tiny_run_config(tiny_files, prompts="", image_prompts=f"{tmp_path / 'blue.png'}:2",
                             noise_prompts="7:0.5", steps=2)
    progress = next(e for e in tiny_pipeline.run(config) if isinstance(e, Progress))
    assert set(progress.losses) == {f"image:{tmp_path / 'blue.png'}", "noise:7"}


def test_closing_a_run_stops_it_and_keeps_the_latest_image(tiny_pipeline: TextToImage, tiny_files) -> None:
    run = tiny_pipeline.run(tiny_run_config(tiny_files, steps=1000))
    for event in run:
        if isinstance(event, Progress) and event.step == 3:
            break
    run.close()
    assert run.state.step == 3
    assert list(run) == []  # closed: nothing more comes
    assert run.latest_image().size == (32, 32)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"prompts": ""}, InputError, "the prompt is empty"),
        ({"prompts": "a || b"}, InputError, "is empty"),
        ({"image_prompts": "/nonexistent/cat.png"}, InputError, "does not exist"),
        ({"init": {"init": "image", "init_image": "/nonexistent/x.png"}}, InputError,
         "init image /nonexistent/x.png does not exist"),
        ({"cutouts": {"augments": ["wobble"]}}, ConfigError, "unknown augmentation 'wobble'"),
        ({"size": [1, 1]}, ConfigError, "out of range"),
    ],
)
def test_bad_inputs_fail_before_any_work(tiny_pipeline: TextToImage, tiny_files, overrides, error, message) -> None:
    with pytest.raises(error, match=message):
        list(tiny_pipeline.run(tiny_run_config(tiny_files, **overrides)))


def test_unreadable_init_image(tiny_pipeline: TextToImage, tiny_files, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match="init image .*broken.png is not an image this tool can read"):
        list(tiny_pipeline.run(tiny_run_config(tiny_files, init={"init": "image", "init_image": str(broken)})))


def test_ensemble_of_two_clip_models(tiny_files, tmp_path: Path) -> None:
    from generator.config import ClipModelConfig, ModelsConfig
    from tests.clip_factories import write_tiny_clip

    other_config, other_weights = write_tiny_clip(tmp_path, name="other-clip", seed=1)
    models = ModelsConfig(str(tiny_files.vqgan), str(tiny_files.vqgan_config), (
        ClipModelConfig(str(tiny_files.clip_config), str(tiny_files.clip_weights), 1.0),
        ClipModelConfig(str(other_config), str(other_weights), 3.0)))
    pipeline = TextToImage.from_pretrained(models, device="cpu")
    config = tiny_run_config(tiny_files, steps=1).replace(models=models)
    done = pipeline(config)
    assert [c["weight"] for c in done.config["models"]["clip_models"]] == [1.0, 3.0]
