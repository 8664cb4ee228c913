"""Animations on the tiny models: motion through the VQGAN, prompts at frames, frames.jsonl,
restyle with sound, interpolation, and keeping the work when a run fails."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.animate import pipeline as animation_pipeline
from generator.animate.keyframes import Motion
from generator.animate.motion import move, revealed
from generator.animate.pipeline import Animator, frame_seed
from generator.drive import drive
from generator.errors import InputError, NonFiniteError
from generator.events import Done
from generator.io.images import pil_to_tensor, tensor_to_pil
from generator.io.video_input import count_frames, probe_video
from generator.text_to_image.latents import encode_pixels
from tests.animate.conftest import animate, animation_config, ffmpeg, frames_of
from tests.factories import tiny_run_config


def _reencoded(pipeline, frame: np.ndarray | torch.Tensor) -> np.ndarray:
    """A frame (uint8, or (1, 3, H, W) in [0, 1]) as the VQGAN gives it back after encoding it."""
    vqgan = pipeline.vqgan
    pixels = frame if isinstance(frame, torch.Tensor) else pil_to_tensor(Image.fromarray(frame))
    with torch.no_grad():
        latent = encode_pixels(vqgan, pixels)
        pixels = vqgan.decode(vqgan.quantize(latent).z_q).add(1).div(2).clamp(0, 1)
    return np.asarray(tensor_to_pil(pixels[0]))


def test_identity_motion_without_steps_changes_frames_only_by_the_vqgan_reencoding(tiny_pipeline, tiny_files,
                                                                                   tmp_path: Path) -> None:
    config = animation_config(tiny_files, frames=4, steps_per_frame=0)
    record = animate(tiny_pipeline, config, tmp_path)
    frames = frames_of(record.folder)
    assert len(frames) == 4
    for previous, frame in zip(frames, frames[1:], strict=False):
        assert np.abs(frame.astype(int) - _reencoded(tiny_pipeline, previous)).max() <= 1


def test_each_frame_starts_from_the_moved_previous_frame(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    zoomed = animate(tiny_pipeline, animation_config(tiny_files, frames=2, steps_per_frame=0,
                                                     motion={"zoom": "2"}), tmp_path / "zoom")
    first, second = frames_of(zoomed.folder)
    moved = move(pil_to_tensor(Image.fromarray(first)), Motion(zoom=2.0))  # (1, 3, 32, 32)
    assert np.abs(second.astype(int) - _reencoded(tiny_pipeline, moved)).max() <= 1
    assert np.abs(second.astype(int) - _reencoded(tiny_pipeline, first)).max() > 20  # it did move


def test_frames_jsonl_records_every_frame_and_prompts_change_at_their_frames(tiny_pipeline, tiny_files,
                                                                              tmp_path: Path) -> None:
    config = animation_config(tiny_files, frames=4, prompts="city at night", prompt_at=["2=a forest:2 | smoke:-0.5"],
                              motion={"zoom": "0:1.0, 3:1.3", "angle": "2", "translate_x": "1", "translate_y": "-1"},
                              steps=2, seed=5)
    record = animate(tiny_pipeline, config, tmp_path)
    folder = record.folder
    lines = [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 2, 3]
    assert [line["prompt"] for line in lines] == ["city at night", "city at night", "a forest:2 | smoke:-0.5",
                                                  "a forest:2 | smoke:-0.5"]
    assert [line["zoom"] for line in lines] == pytest.approx([1.0, 1.1, 1.2, 1.3])  # frame 0 is not moved
    assert [line["angle"] for line in lines] == [0.0, 2.0, 2.0, 2.0]
    assert [(line["translate_x"], line["translate_y"]) for line in lines[1:]] == [(1.0, -1.0)] * 3
    assert [line["steps"] for line in lines] == [2, 1, 1, 1]
    assert [line["seed"] for line in lines] == [5, frame_seed(5, 1), frame_seed(5, 2), frame_seed(5, 3)]
    assert all(isinstance(line["loss"], float) and line["seconds"] > 0 for line in lines)
    assert len(set(line["seed"] for line in lines)) == 4
    # the run folder: every frame, the last as final.png with the config, the video, run.json
    assert np.array_equal(np.asarray(Image.open(folder / "final.png").convert("RGB")), frames_of(folder)[-1])
    saved = json.loads((folder / "config.json").read_text())
    assert saved["frames"] == 4 and saved["prompt_at"] == ["2=a forest:2 | smoke:-0.5"] and saved["seed"] == 5
    assert json.loads((folder / "run.json").read_text())["mode"] == "animate"
    assert record.videos == [folder / "video.mp4"] and count_frames(folder / "video.mp4") == 4
    assert folder / "frames.jsonl" in record.files


def test_a_story_changes_phrase_every_n_frames(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    config = animation_config(tiny_files, frames=5, prompts="a forest ^ a burning forest ^ ashes",
                              change_prompt_every=2, steps_per_frame=0)
    folder = animate(tiny_pipeline, config, tmp_path).folder
    prompts = [json.loads(line)["prompt"] for line in (folder / "frames.jsonl").read_text().splitlines()]
    assert prompts == ["a forest", "a forest", "a burning forest", "a burning forest", "ashes"]


def test_restyling_a_video_with_sound_keeps_its_frame_rate_and_sound(tiny_pipeline, tiny_files, clip_with_sound,
                                                                     tmp_path: Path) -> None:
    config = animation_config(tiny_files, frames=None, restyle={"video_init": str(clip_with_sound), "blend": 0.3})
    record = animate(tiny_pipeline, config, tmp_path)
    folder = record.folder
    assert len(frames_of(folder)) == 6
    info = probe_video(folder / "video.mp4")
    assert info.fps == 12.0 and info.has_audio and count_frames(folder / "video.mp4") == 6
    described = ffmpeg("-i", str(folder / "video.mp4")).stderr
    assert re.search(r"Stream #0:1.*Audio: aac", described), described
    records = [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]
    assert [r["input_frame"] for r in records] == [0, 1, 2, 3, 4, 5]
    # every other input frame: 3 frames at half the frame rate, still with the sound
    halved = animate(tiny_pipeline, config.replace(restyle=config.restyle.__class__(str(clip_with_sound), every=2)),
                     tmp_path / "every2")
    assert len(frames_of(halved.folder)) == 3
    info = probe_video(halved.folder / "video.mp4")
    assert info.fps == 6.0 and info.has_audio


def test_restyle_frames_start_from_the_input_frames(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    colours = [(250, 20, 20), (20, 20, 250)]
    for index, colour in enumerate(colours):
        Image.new("RGB", (48, 32), colour).save(inputs / f"frame{index + 1}.png")  # covers 32x32, centre-cropped
    config = animation_config(tiny_files, frames=None, steps_per_frame=0,  # with flow: tests/animate/test_flow.py
                              restyle={"video_init": str(inputs), "flow": "off"})
    frames = frames_of(animate(tiny_pipeline, config, tmp_path / "out").folder)
    assert len(frames) == 2
    for frame, colour in zip(frames, colours, strict=True):
        assert np.abs(frame.astype(int) - _reencoded(tiny_pipeline, np.full((32, 32, 3), colour, np.uint8))).max() <= 1


def test_interpolate_2_doubles_the_frames_and_video_length_sets_the_rate(tiny_pipeline, tiny_files,
                                                                         tmp_path: Path) -> None:
    config = animation_config(tiny_files, frames=3, steps_per_frame=0, interpolate=2, video_length=2.0,
                              motion={"translate_x": "2"})
    folder = animate(tiny_pipeline, config, tmp_path).folder
    assert count_frames(folder / "video.mp4") == 6  # documented: n frames become n * interpolate
    assert probe_video(folder / "video.mp4").fps == 3.0  # 6 frames in 2 seconds
    assert len(frames_of(folder)) == 3 and not list(folder.glob(".video-*"))


def test_upscale_upscales_every_frame_and_the_video_is_made_of_them(tiny_pipeline, tiny_files, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def doubled(images, config, cache):  # a stand-in upscaler: the real ones have their own tests
        yield from ()
        return tuple(image.resize((image.width * 2, image.height * 2)) for image in images)

    monkeypatch.setattr(animation_pipeline, "upscale_results", doubled)
    config = animation_config(tiny_files, frames=2, steps_per_frame=0, upscale={"upscale": 2.0})
    folder = animate(tiny_pipeline, config, tmp_path).folder
    upscaled = sorted((folder / "frames_x2").glob("*.png"))
    assert [p.name for p in upscaled] == ["000000.png", "000001.png"]
    assert Image.open(upscaled[0]).size == (64, 64) and probe_video(folder / "video.mp4").size == (64, 64)


def test_a_failing_frame_keeps_the_finished_frames_and_writes_their_video(tiny_pipeline, tiny_files, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(previous, motion, source, blend):
        calls.append(1)
        if len(calls) == 2:
            raise NonFiniteError("the optimisation stopped giving numbers at frame 2.")
        return pil_to_tensor(previous)

    monkeypatch.setattr(Animator, "_start_pixels", staticmethod(failing))
    events = drive(Animator(tiny_pipeline).run(animation_config(tiny_files, frames=5)), tmp_path)
    with pytest.raises(NonFiniteError):
        for _ in events:
            pass
    (folder,) = tmp_path.iterdir()
    assert len(frames_of(folder)) == 2
    assert count_frames(folder / "video.mp4") == 2
    assert len((folder / "frames.jsonl").read_text().splitlines()) == 2
    assert json.loads((folder / "run.json").read_text())["status"] == "failed"
    assert json.loads((folder / "config.json").read_text())["frames"] == 5  # whole, so --resume can continue


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"motion": {"zoom": "0:1, 10:-1"}}, "--zoom must be more than 0 at every frame"),
        ({"motion": {"angle": "0:1, 5"}}, "has the part '5', which is not FRAME:VALUE"),
        ({"restyle": {"video_init": "/nonexistent/in.mp4"}}, "the video /nonexistent/in.mp4 does not exist"),
        ({"restyle": {"video_init": "https://example.com/clip.mp4"}},
         "the video to restyle must be a file or a folder of frames, not an address (https://example.com/clip.mp4)"),
    ],
)
def test_bad_settings_are_refused_before_any_file_is_written(tiny_pipeline, tiny_files, tmp_path: Path,
                                                             overrides: dict, message: str) -> None:
    with pytest.raises(InputError) as raised:
        animate(tiny_pipeline, animation_config(tiny_files, **overrides), tmp_path)
    assert message in str(raised.value)
    assert not list(tmp_path.iterdir())


def test_unreadable_and_empty_inputs_are_refused(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    empty = tmp_path / "empty"
    empty.mkdir()
    for source, message in ((broken, "cannot be read as a video"), (empty, "holds no image frames")):
        config = animation_config(tiny_files, restyle={"video_init": str(source)})
        with pytest.raises(InputError, match=message):
            animate(tiny_pipeline, config, tmp_path / "out")


def test_frame_0_is_the_text_to_image_result_with_the_same_seed(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    folder = animate(tiny_pipeline, animation_config(tiny_files, frames=1, steps=2, seed=11), tmp_path).folder
    done = [e for e in tiny_pipeline.run(tiny_run_config(tiny_files, steps=2, seed=11)) if isinstance(e, Done)][0]
    assert np.array_equal(frames_of(folder)[0], np.asarray(done.images[0]))


def test_a_zoom_out_with_outpaint_keeps_the_moved_frame_and_makes_only_the_new_border(tiny_pipeline, tiny_files,
                                                                                      tmp_path: Path) -> None:
    config = animation_config(tiny_files, frames=3, steps_per_frame=3, motion={"zoom": "0.75", "border": "outpaint"})
    frames = frames_of(animate(tiny_pipeline, config, tmp_path / "outpaint").folder)
    brought = revealed(Motion(zoom=0.75), 32, 32).numpy().astype(bool)  # (H, W): the border the zoom brings in
    assert 0.3 < brought.mean() < 0.6
    for previous, frame in zip(frames, frames[1:], strict=False):
        moved = move(pil_to_tensor(Image.fromarray(previous)), Motion(zoom=0.75))[0]  # (3, H, W)
        expected = np.asarray(tensor_to_pil(moved)).astype(int)
        assert np.array_equal(frame[~brought], expected[~brought])  # the moved frame, exactly
        assert np.abs(frame[brought].astype(int) - expected[brought]).mean() > 5  # the border was made anew
    reflected = frames_of(animate(tiny_pipeline, config.replace(motion=config.motion.__class__(zoom="0.75")),
                                  tmp_path / "reflect").folder)
    moved = np.asarray(tensor_to_pil(move(pil_to_tensor(Image.fromarray(reflected[0])), Motion(zoom=0.75))[0]))
    assert not np.array_equal(reflected[1][~brought], moved[~brought])  # reflect optimises the whole frame
