"""Steady video: optical flow between input frames, warping by it, occlusions, the temporal
consistency loss, and flow-guided restyles on the tiny models (flows cached, resumed, measured)."""

from __future__ import annotations

import json
import random
import tempfile
import wave
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from generator.animate import pipeline as animate_pipeline
from generator.animate.flow import consistent_pixels, optical_flow, pair_flow, warp, warping_error
from generator.animate.resume import read_resume
from generator.drive import drive
from generator.errors import InputError
from generator.events import Notice, Preview
from generator.io.images import pil_to_tensor
from generator.text_to_image.loop import PixelAnchor
from tests.animate.conftest import animate, animation_config, frames_of


def _texture(size: int = 96, seed: int = 3) -> np.ndarray:
    """(H, W, 3) uint8: smooth random colour blobs, which flow can follow."""
    noise = np.random.default_rng(seed).random((size, size, 3))
    smooth = cv2.GaussianBlur(noise, (0, 0), 3)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).astype(np.uint8)


def _shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The content of ``image`` moved right by ``dx`` and down by ``dy`` (wrapping around)."""
    return np.roll(np.roll(image, dy, axis=0), dx, axis=1)


def _moving_clip(folder: Path, frames: int = 4, size: int = 48, step: int = 2) -> Path:
    """A folder of frames of a texture panning right by ``step`` pixels a frame."""
    folder.mkdir(parents=True, exist_ok=True)
    texture = _texture(size + frames * step + 8)
    for index in range(frames):
        x = frames * step - index * step
        Image.fromarray(texture[4:4 + size, x:x + size]).save(folder / f"frame{index:03d}.png")
    return folder


def _stopped_after_frame_2(pipeline, config, out: Path) -> Path:
    """The run folder of ``config`` stopped once frame 2 is made (as Ctrl-C does)."""
    events = drive(animate_pipeline.Animator(pipeline).run(config), out)
    for event in events:
        if isinstance(event, Preview) and event.step == 2:
            break
    events.close()
    (stopped,) = out.iterdir()
    return stopped


def test_the_flow_warp_maps_a_translated_frame_onto_the_next_within_a_pixel() -> None:
    first = _texture()
    second = _shifted(first, 3, 2)  # content moved right 3, down 2
    for method in ("dis", "farneback"):
        backward = optical_flow(second, first, method)  # second(p) ≈ first(p + backward(p))
        inner = (slice(12, -12), slice(12, -12))
        assert np.abs(np.median(backward[inner].reshape(-1, 2), axis=0) - (-3, -2)).max() < 0.5, method
        assert np.abs(backward[inner] - (-3, -2)).max(axis=-1).mean() < 1.0, method
        warped = warp(torch.from_numpy(first).permute(2, 0, 1)[None].float(), backward)[0].permute(1, 2, 0).numpy()
        difference = np.abs(warped - second.astype(np.float32))[inner].mean()
        assert difference < 2.0, (method, difference)  # of 255: the warp lands within a pixel
        # no warp at all is far off, so the figure above measures the flow
        assert np.abs(first.astype(np.float32) - second)[inner].mean() > 5 * difference


def test_occlusions_are_empty_for_a_translation_and_cover_a_disoccluded_square() -> None:
    first = _texture()
    pair = pair_flow(Image.fromarray(first), Image.fromarray(_shifted(first, 3, 2)))
    assert pair.consistent[12:-12, 12:-12].mean() == 1.0
    assert pair.consistent[:, :2].mean() < 0.5  # what came in from outside the frame has no past
    # a square moves 12 pixels right over a still background: where it was is uncovered
    background = _texture(seed=5)
    square = _texture(seed=9)[:24, :24]
    before, after = background.copy(), background.copy()
    before[36:60, 30:54] = square
    after[36:60, 42:66] = square
    pair = pair_flow(Image.fromarray(before), Image.fromarray(after))
    uncovered = pair.consistent[40:56, 32:40]  # background again, hidden in the frame before
    far = pair.consistent[4:20, 4:90]
    assert uncovered.mean() < 0.3 and far.mean() > 0.95
    # the check itself: flows that agree are consistent, flows that disagree are not
    flow = np.tile(np.array([-3.0, -2.0], np.float32), (32, 32, 1))
    assert consistent_pixels(-flow, flow)[8:-8, 8:-8].all()
    assert not consistent_pixels(flow, flow)[8:-8, 8:-8].any()


def test_the_consistency_loss_is_zero_for_a_perfect_warp_and_grows_with_noise() -> None:
    target = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, 1, 16, 16)
    anchor = PixelAnchor(target, mask, weight=2.0)
    assert float(anchor.loss(target)) == 0.0
    losses = [float(anchor.loss(target + scale * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))))
              for scale in (0.01, 0.05, 0.2)]
    assert 0 < losses[0] < losses[1] < losses[2]
    assert losses[1] == pytest.approx(2.0 * 0.05 ** 2, rel=0.3)  # weight times the MSE
    # occluded pixels are free: noise there costs nothing
    free = mask.clone()
    free[..., :8] = 0
    noisy = target.clone()
    noisy[..., :8] += 0.5
    assert float(PixelAnchor(target, free, 1.0).loss(noisy)) == 0.0
    # the warping error is the same measure, unweighted and absolute
    same = pair_flow(Image.new("RGB", (16, 16), (90, 90, 90)), Image.new("RGB", (16, 16), (90, 90, 90)))
    assert warping_error(target, target, same) == pytest.approx(0.0, abs=1e-6)
    assert warping_error(target + 0.1, target, same) == pytest.approx(0.1, abs=1e-4)


def _restyle(tiny_files, clip: Path, **overrides):
    restyle = {"video_init": str(clip), **overrides.pop("restyle", {})}
    return animation_config(tiny_files, **{"frames": None, "steps_per_frame": 2, "size": [32, 32],
                                           "restyle": restyle, **overrides})


def test_a_flow_restyle_caches_its_flows_measures_flicker_and_resumes_where_it_stopped(
        tiny_pipeline, tiny_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = _moving_clip(tmp_path / "clip", frames=5)
    config = _restyle(tiny_files, clip)
    scratch = sorted(Path(tempfile.gettempdir()).glob("vqgan-studio-flows-*"))
    whole = animate(tiny_pipeline, config, tmp_path / "whole").folder
    assert sorted(Path(tempfile.gettempdir()).glob("vqgan-studio-flows-*")) == scratch  # moved, not copied
    assert sorted(p.name for p in (whole / "flows").iterdir()) == ["000001.npz", "000002.npz", "000003.npz",
                                                                    "000004.npz", "flows.json"]
    records = [json.loads(line) for line in (whole / "frames.jsonl").read_text().splitlines()]
    errors = [record["warping_error"] for record in records[1:]]
    assert "warping_error" not in records[0] and all(0 < error < 1 for error in errors)
    metrics = json.loads((whole / "run.json").read_text())["metrics"]
    assert metrics["warping_error"] == pytest.approx(sum(errors) / len(errors), abs=1e-5)

    # stopped after 3 frames (as Ctrl-C does), then resumed: no flow is computed again, and the
    # resumed run continues at input frame 3 with the frames of the uninterrupted run
    stopped = _stopped_after_frame_2(tiny_pipeline, config, tmp_path / "stopped")
    assert len(frames_of(stopped)) == 3 and (stopped / "flows" / "000004.npz").is_file()
    computed = []
    monkeypatch.setattr(animate_pipeline, "pair_flow", lambda *args: computed.append(args))
    recorded, resume = read_resume(stopped)
    resumed = animate(tiny_pipeline, recorded, tmp_path / "resumed", resume).folder
    assert computed == []
    assert (resumed / "flows" / "000004.npz").is_file()  # the new run folder keeps them too
    resumed_records = [json.loads(line) for line in (resumed / "frames.jsonl").read_text().splitlines()]
    assert [r["input_frame"] for r in resumed_records] == [0, 1, 2, 3, 4]
    for made, expected in zip(frames_of(resumed), frames_of(whole), strict=True):
        assert np.array_equal(made, expected)


def test_flow_steadies_a_restyle_and_off_restores_the_plain_start(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    clip = _moving_clip(tmp_path / "clip", frames=4)
    inputs = sorted(clip.iterdir())
    steady = frames_of(animate(tiny_pipeline, _restyle(tiny_files, clip, steps_per_frame=4), tmp_path / "flow").folder)
    off = animate(tiny_pipeline, _restyle(tiny_files, clip, steps_per_frame=4, restyle={"flow": "off"}),
                  tmp_path / "off").folder
    assert not (off / "flows").exists() and "metrics" not in json.loads((off / "run.json").read_text())
    plain = frames_of(off)

    def flicker(frames: list[np.ndarray]) -> float:
        errors = []
        for index in range(1, len(frames)):
            pair = pair_flow(Image.open(inputs[index - 1]).resize((32, 32)), Image.open(inputs[index]).resize((32, 32)))
            errors.append(warping_error(pil_to_tensor(Image.fromarray(frames[index])),
                                        pil_to_tensor(Image.fromarray(frames[index - 1])), pair))
        return float(np.mean(errors))

    assert flicker(steady) < 0.85 * flicker(plain)  # the bound for the tiny models


def test_flow_refuses_frames_of_mixed_sizes_and_says_when_a_video_does_not_move(tiny_pipeline, tiny_files,
                                                                                 tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(mixed / "a.png")
    Image.new("RGB", (40, 32), (10, 200, 10)).save(mixed / "b.png")
    with pytest.raises(InputError) as refused:
        animate(tiny_pipeline, _restyle(tiny_files, mixed), tmp_path / "out")
    assert str(refused.value).count(". ") == 0 and "not all one size (a.png is 32x32, b.png is 40x32)" in \
        str(refused.value) and "--flow off" in str(refused.value)
    assert not (tmp_path / "out").exists()
    animate(tiny_pipeline, _restyle(tiny_files, mixed, restyle={"flow": "off"}), tmp_path / "off")  # fine without
    still = tmp_path / "still"
    still.mkdir()
    for index in range(3):
        Image.fromarray(_texture(32)).save(still / f"{index}.png")
    notices = [event.message for event in animate_pipeline.Animator(tiny_pipeline).run(
        _restyle(tiny_files, still, steps_per_frame=0)) if isinstance(event, Notice)]
    assert any("barely moves" in notice and "--flow off" in notice for notice in notices)


def test_a_resumed_restyle_continues_at_its_input_frame_with_its_sound_aligned(
        tiny_pipeline, tiny_files, clip_with_sound, tmp_path: Path) -> None:
    from generator.io.video_input import count_frames, probe_video
    from tests.animate.conftest import ffmpeg

    config = _restyle(tiny_files, clip_with_sound, steps_per_frame=1, restyle={"flow": "off"})  # frames from inputs
    whole = animate(tiny_pipeline, config, tmp_path / "whole").folder
    stopped = _stopped_after_frame_2(tiny_pipeline, config, tmp_path / "stopped")
    recorded, resume = read_resume(stopped)
    resumed = animate(tiny_pipeline, recorded, tmp_path / "resumed", resume).folder
    records = [json.loads(line) for line in (resumed / "frames.jsonl").read_text().splitlines()]
    assert [r["input_frame"] for r in records] == list(range(6))  # input frame 3 follows frame 2, not frame 0
    for made, expected in zip(frames_of(resumed), frames_of(whole), strict=True):
        assert np.array_equal(made, expected)

    def sound(folder: Path) -> np.ndarray:
        """The video's sound, decoded to 8 kHz mono 16-bit samples."""
        wav = folder / "sound.wav"
        assert ffmpeg("-i", str(folder / "video.mp4"), "-vn", "-ac", "1", "-ar", "8000", "-y", str(wav)).returncode == 0
        with wave.open(str(wav), "rb") as file:
            return np.frombuffer(file.readframes(file.getnframes()), dtype="<i2")

    assert probe_video(resumed / "video.mp4").has_audio and count_frames(resumed / "video.mp4") == 6
    assert probe_video(resumed / "video.mp4").fps == probe_video(whole / "video.mp4").fps
    whole_sound, resumed_sound = sound(whole), sound(resumed)
    assert len(whole_sound) > 1000 and np.array_equal(resumed_sound, whole_sound)  # the same sound, from the start


def test_an_animation_holds_each_frame_to_the_moved_previous_one_except_the_revealed_border(tiny_files) -> None:
    from generator.animate.keyframes import Motion
    from generator.animate.motion import revealed

    previous = Image.fromarray(_texture(32))
    zoom_out = Motion(zoom=0.8)
    config = animation_config(tiny_files, flow_weight=4.0)
    pixels, anchor = animate_pipeline.Animator._start(previous, zoom_out, None, config, None)
    border = revealed(zoom_out, 32, 32)
    assert anchor is not None and anchor.weight == 4.0 and torch.equal(anchor.target, pixels)
    assert torch.equal(anchor.mask[0, 0], 1 - border) and 0 < float(border.mean()) < 0.5
    assert float(anchor.loss(pixels)) == 0.0 and float(anchor.loss(pixels + 0.1)) > 0
    # the revealed border is free: changing only it costs nothing
    moved_border = pixels + 0.3 * border[None, None]
    assert float(anchor.loss(moved_border)) == pytest.approx(0.0, abs=1e-9)
    assert animate_pipeline.Animator._start(previous, zoom_out, None, config.replace(flow_weight=0.0), None)[1] is None


def _panning_landscape(folder: Path, frames: int, size: int, step: int) -> Path:
    """Frames of a drawn landscape (the studio model's kind of image) panning right."""
    from generator.train.studio import draw_landscape

    folder.mkdir(parents=True, exist_ok=True)
    wide = np.asarray(draw_landscape(random.Random(77), side=size + frames * step))
    for index in range(frames):
        x = frames * step - index * step
        Image.fromarray(wide[:size, x:x + size]).save(folder / f"frame{index:03d}.png")
    return folder


def test_with_a_decoder_that_reproduces_images_a_restyle_follows_the_video_and_flow_steadies_it(
        studio_decoder, tiny_files, tmp_path: Path) -> None:
    """On the studio VQGAN (tests/studio_decoder.py) instead of a random one, the frames look
    like the video's, and flow makes them flicker less than restyling each frame afresh."""
    from generator.text_to_image.pipeline import TextToImage

    clip = _panning_landscape(tmp_path / "clip", frames=5, size=48, step=2)
    inputs = [np.asarray(Image.open(path).convert("RGB"), float) for path in sorted(clip.iterdir())]
    files = replace(tiny_files, vqgan=studio_decoder.checkpoint, vqgan_config=studio_decoder.config)
    pipeline = TextToImage.from_pretrained(files.models(), device="cpu")
    made = {}
    for flow in ("dis", "off"):
        config = _restyle(files, clip, steps_per_frame=3, size=[48, 48], restyle={"flow": flow})
        made[flow] = frames_of(animate(pipeline, config, tmp_path / flow).folder)

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(float) - b) ** 2)))

    def flicker(frames: list[np.ndarray]) -> float:
        errors = []
        for index in range(1, len(frames)):
            pair = pair_flow(Image.fromarray(inputs[index - 1].astype(np.uint8)),
                             Image.fromarray(inputs[index].astype(np.uint8)))
            errors.append(warping_error(pil_to_tensor(Image.fromarray(frames[index])),
                                        pil_to_tensor(Image.fromarray(frames[index - 1])), pair))
        return float(np.mean(errors))

    likeness = {flow: [psnr(frame, source) for frame, source in zip(frames, inputs, strict=True)]
                for flow, frames in made.items()}
    # measured: 12.4-14.4 dB from their input frames; flicker 0.036 with flow, 0.072 without
    assert min(likeness["off"]) > 12.5 and min(likeness["dis"]) > 11.5, likeness
    assert flicker(made["dis"]) < 0.7 * flicker(made["off"])
