"""Video restyle: the input frames of ``--video-init`` (a video file or a folder of frames).

Every ``every``-th input frame is taken; each is resized to cover the run's size and
centre-cropped. The output keeps the input's frame rate divided by ``every`` (a folder of
frames has none, so ``--fps`` gives it), and, when the input has a sound track, its sound.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from generator.errors import InputError
from generator.io.images import cover, is_url, open_image
from generator.io.video_input import count_frames, frame_files, probe_video, read_video_frames


@dataclass(frozen=True)
class VideoSource:
    """The frames a restyle stylises.

    Attributes:
        path: the video file or folder of frames.
        count: input frames taken (every ``every``-th).
        fps: the output's frame rate (the input's divided by ``every``).
        size: (width, height) of the input frames.
        audio: the file whose sound the output gets, or None.
        every: the step between taken input frames.
    """

    path: Path
    count: int
    fps: float
    size: tuple[int, int]
    audio: Path | None
    every: int

    def frames(self, size: tuple[int, int], start: int = 0) -> Iterator[Image.Image]:
        """The taken frames from the ``start``-th on, each covering ``size`` (W, H)."""
        if self.path.is_dir():
            chosen = frame_files(self.path)[start * self.every::self.every]
            images: Iterator[Image.Image] = (open_image(path, what="input frame") for path in chosen)
        else:
            images = itertools.islice(read_video_frames(self.path), start * self.every, None, self.every)
        for image in images:
            yield cover(image, size)


def open_source(video_init: str, *, every: int, folder_fps: float) -> VideoSource:
    """Describe ``video_init`` (its frames are read later, one at a time).

    Raises:
        InputError: an http(s) address, missing, unreadable, or without any frame.
    """
    if is_url(video_init):
        raise InputError(f"the video to restyle must be a file or a folder of frames, not an address "
                         f"({video_init.strip()}); download it and give its path or upload it.")
    path = Path(video_init).expanduser()
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise InputError(f"the folder {path} holds no image frames; give a video file or a folder of PNG or "
                             "JPEG frames to --video-init.")
        first = open_image(files[0], what="input frame")
        count, fps, size, audio = len(files), float(folder_fps), first.size, None
    else:
        info = probe_video(path)
        count = count_frames(path)
        if count == 0:
            raise InputError(f"the video {path} has no frames; give a video with at least one frame to --video-init.")
        fps, size, audio = info.fps, info.size, path if info.has_audio else None
    return VideoSource(path, -(-count // every), fps / every, size, audio, every)


def check_one_size(source: VideoSource) -> None:
    """Flow follows pixels from frame to frame, so every frame of a folder must have one size
    (a video file's frames always do).

    Raises:
        InputError: a frame of another size than the first.
    """
    if not source.path.is_dir():
        return
    files = frame_files(source.path)
    for path in files[1:]:
        try:
            with Image.open(path) as image:  # reads the header only
                size = image.size
        except OSError:
            continue  # reading the frame later says what is wrong with it
        if size != source.size:
            raise InputError(f"the frames in {source.path} are not all one size ({files[0].name} is "
                             f"{source.size[0]}x{source.size[1]}, {path.name} is {size[0]}x{size[1]}), and flow "
                             "follows pixels from frame to frame; resize them to one size, or use --flow off.")


def default_size(source: VideoSource, longest: int, factor: int) -> tuple[int, int]:
    """The input's aspect with its longer side ``longest``, rounded down to ``factor``."""
    width, height = source.size
    scale = longest / max(width, height)
    return (max(factor, int(width * scale) // factor * factor), max(factor, int(height * scale) // factor * factor))
