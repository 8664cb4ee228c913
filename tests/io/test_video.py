"""generator.io.video: mp4 through the bundled ffmpeg (padded, never rescaled) and GIF."""

from __future__ import annotations

import logging
from pathlib import Path

import imageio.v2 as imageio_v2
import numpy as np
import pytest
from PIL import Image

from generator.errors import InputError, OutputError
from generator.io import video
from generator.io.outputs import RunWriter

RED, BLUE = (220, 30, 30), (30, 30, 220)


def _split_frame(shade: int, size: tuple[int, int] = (33, 17)) -> Image.Image:
    """Left part red, right part blue from x=16, brightened by ``shade``."""
    width, height = size
    array = np.empty((height, width, 3), np.uint8)
    array[:, :16] = np.clip(np.array(RED) + shade, 0, 255)
    array[:, 16:] = np.clip(np.array(BLUE) + shade, 0, 255)
    return Image.fromarray(array)


def _read_mp4(path: Path) -> tuple[list[np.ndarray], dict]:
    reader = imageio_v2.get_reader(path, format="FFMPEG")
    try:
        return [np.asarray(frame) for frame in reader], reader.get_meta_data()
    finally:
        reader.close()


def _entries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_pad_to_multiple_replicates_edges_without_rescaling():
    image = Image.fromarray(np.arange(17 * 33 * 3, dtype=np.uint32).reshape(17, 33, 3)
                            .astype(np.uint8))
    padded = video.pad_to_multiple(image, 16)
    original = np.asarray(image)
    assert padded.shape == (32, 48, 3) and padded.dtype == np.uint8
    assert np.array_equal(padded[:17, :33], original)
    assert np.array_equal(padded[:17, 33:], np.repeat(original[:, -1:], 15, axis=1))
    assert np.array_equal(padded[17:, :33], np.repeat(original[-1:], 15, axis=0))
    assert video.pad_to_multiple(Image.new("RGB", (32, 16))).shape == (16, 32, 3)


def test_mp4_from_odd_sized_frames_is_padded_not_rescaled(tmp_path):
    frames = [_split_frame(shade) for shade in (0, 10, 20, 30)]
    path = video.write_mp4(frames, tmp_path / "video.mp4", fps=10)
    decoded, meta = _read_mp4(path)
    assert len(decoded) == 4
    assert all(frame.shape == (32, 48, 3) for frame in decoded)
    assert meta["codec"] == "h264" and "yuv420p" in meta["pix_fmt"]
    for shade, frame in zip((0, 10, 20, 30), decoded, strict=True):
        red = np.clip(np.array(RED) + shade, 0, 255)
        blue = np.clip(np.array(BLUE) + shade, 0, 255)
        # Far from edges and from the red/blue boundary at x=16 of the original pixels:
        # a 33 -> 48 rescale would move the boundary to x=23 and turn x=20 red.
        assert np.abs(frame[4:12, 4:12].mean(axis=(0, 1)) - red).max() < 8
        assert np.abs(frame[4:12, 19:22].mean(axis=(0, 1)) - blue).max() < 8
        assert np.abs(frame[4:12, 24:30].mean(axis=(0, 1)) - blue).max() < 8
        # The padding replicates the last column and row.
        assert np.abs(frame[4:12, 40:46].mean(axis=(0, 1)) - blue).max() < 8
        assert np.abs(frame[24:30, 4:12].mean(axis=(0, 1)) - red).max() < 8
    assert _entries(tmp_path) == ["video.mp4"]


def test_mp4_from_frame_files_resizes_a_mismatched_frame_and_logs_it(tmp_path, caplog):
    paths = []
    for index, size in enumerate([(40, 24), (40, 24), (80, 48)]):
        paths.append(tmp_path / f"{index}.png")
        Image.new("RGB", size, (0, 200, 0)).save(paths[-1])
    with caplog.at_level(logging.WARNING, logger="generator.io.video"):
        path = video.write_mp4(paths, tmp_path / "out.mp4")
    decoded, _ = _read_mp4(path)
    assert [frame.shape for frame in decoded] == [(32, 48, 3)] * 3
    assert "frame 2 is 80x48" in caplog.text
    assert np.abs(decoded[2][8:16, 8:32].mean(axis=(0, 1)) - (0, 200, 0)).max() < 8


def test_a_single_frame_gives_a_valid_video(tmp_path):
    path = video.write_mp4([_split_frame(0)], tmp_path / "one.mp4")
    decoded, _ = _read_mp4(path)
    assert len(decoded) == 1 and decoded[0].shape == (32, 48, 3)


def test_gif_has_every_frame_and_loops(tmp_path):
    frames = [_split_frame(shade) for shade in (0, 25, 50)]
    path = video.write_gif(frames, tmp_path / "video.gif", fps=5)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 3 and gif.size == (33, 17)
        assert gif.info["loop"] == 0 and gif.info["duration"] == 200
    assert _entries(tmp_path) == ["video.gif"]


def test_existing_videos_are_never_overwritten_nor_encoded(tmp_path, monkeypatch):
    def no_encoding(*args, **kwargs):
        raise AssertionError("the encoder must not start when the video exists")

    monkeypatch.setattr(video, "_open_writer", no_encoding)
    monkeypatch.setattr(Image.Image, "save", no_encoding)
    for name, write in [("video.mp4", video.write_mp4), ("video.gif", video.write_gif)]:
        (tmp_path / name).write_bytes(b"older video")
        with pytest.raises(OutputError, match="never overwritten"):
            write([_split_frame(0)], tmp_path / name)
        assert (tmp_path / name).read_bytes() == b"older video"


def test_bad_requests_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no frames"):
        video.write_mp4([], tmp_path / "v.mp4")
    with pytest.raises(InputError, match="frame rate"):
        video.write_gif([_split_frame(0)], tmp_path / "v.gif", fps=0)
    broken = tmp_path / "000001.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(InputError, match="000001.png"):
        video.write_mp4([broken], tmp_path / "v.mp4")
    assert _entries(tmp_path) == ["000001.png"]  # no video, no temporary file


def test_encoder_failure_is_an_output_error_and_the_frames_remain(tmp_path, monkeypatch):
    monkeypatch.setattr(video, "MP4_CODEC", "no-such-encoder")
    writer = RunWriter(tmp_path / "run")
    for step in (1, 2, 3):
        writer.write_frame(step, _split_frame(step))
    before = {p: p.read_bytes() for p in writer.frames()}
    with pytest.raises(OutputError) as caught:
        writer.write_video(fps=10, gif=True)
    message = str(caught.value)
    assert message.startswith("ffmpeg could not encode video.mp4")
    assert f"already written in {writer.folder}, frames included, are kept" in message
    assert {p: p.read_bytes() for p in writer.frames()} == before
    assert _entries(writer.folder) == ["frames", "frames/000001.png", "frames/000002.png",
                                       "frames/000003.png"]


def test_an_encoder_that_stops_midway_is_reported(tmp_path, monkeypatch):
    real = video._open_writer

    class Failing:
        def __init__(self, tmp, fps):
            self.inner, self.count = real(tmp, fps), 0

        def append_data(self, array):
            self.count += 1
            if self.count == 2:
                raise OSError("[Errno 32] Broken pipe\n\nFFMPEG COMMAND: ...")
            self.inner.append_data(array)

        def close(self):
            self.inner.close()

    monkeypatch.setattr(video, "_open_writer", Failing)
    with pytest.raises(OutputError, match=r"ffmpeg could not encode v.mp4 \(\[Errno 32\] Broken"):
        video.write_mp4([_split_frame(0)] * 3, tmp_path / "v.mp4")
    assert _entries(tmp_path) == []


def test_run_writer_writes_mp4_and_gif_from_its_frames(tmp_path):
    writer = RunWriter(tmp_path / "run")
    for step in (10, 5, 20):
        writer.write_frame(step, _split_frame(step))
    videos = writer.write_video(fps=8, gif=True)
    assert videos == [writer.folder / "video.mp4", writer.folder / "video.gif"]
    assert writer.written[-2:] == videos
    decoded, _ = _read_mp4(videos[0])
    assert len(decoded) == 3
    # Frames are taken in step order: 5, 10, 20.
    shades = [frame[4:12, 4:12, 1].mean() for frame in decoded]
    assert shades == sorted(shades) and shades[-1] - shades[0] > 10
