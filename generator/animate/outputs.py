"""The files of an animation run: every frame as it is finished, their records, the last
frame as ``final.png`` and the video (upscaled, interpolated, with the input's sound)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from generator.animate.config import AnimationConfig
from generator.animate.state import FRAME_RECORDS, AnimationState
from generator.config import UpscaleConfig
from generator.config_schema import build_config
from generator.events import Done, Preview
from generator.io import video as video_io
from generator.io.atomic_files import output_error
from generator.io.outputs import RunWriter, save_png, write_bytes_atomic
from generator.runs import GenerationRun


class AnimationOutputs:
    """``frames/NNNNNN.png`` (every frame, as it is finished), ``frames.jsonl`` (one record per
    frame), ``final.png`` (the last frame, config embedded), ``config.json`` and ``video.mp4``
    (always; ``video.gif`` too with ``--gif``); with ``--upscale``, ``frames_x4/`` and a video
    made of those. A stopped run keeps the same files for the frames it finished, and its
    ``config.json`` holds every setting, so ``--resume`` continues it."""

    @staticmethod
    def preview(writer: RunWriter, event: Preview, state: AnimationState) -> None:
        """A finished frame into ``frames/``, its upscaled copy into ``frames_x4/``; with the first
        frame, the input's flows into ``flows/`` (so ``--resume`` reads them back)."""
        if event.stage != "upscaled":
            writer.write_frame(event.step, event.image)
            if state.flows is not None and writer.folder is not None:
                try:
                    state.flows.settle_in(writer.folder)
                except OSError as error:
                    raise output_error(error, writer.folder / "flows", writer.folder) from error
            return
        assert writer.folder is not None, "an upscaled copy comes after its frame"
        folder = writer.folder / f"frames{build_config(UpscaleConfig, state.config.get('upscale', {})).suffix}"
        try:
            folder.mkdir(exist_ok=True)
        except OSError as error:
            raise output_error(error, folder, writer.folder) from error
        state.files.append(save_png(event.image, folder / f"{event.step:06d}.png", folder=writer.folder))

    @staticmethod
    def finish(writer: RunWriter, done: Done, state: AnimationState) -> Path:
        _write_frame_records(writer, state)
        return writer.write_final(done.images[0], config=done.config, prompt=state.label, seed=done.seed,
                                  mode=state.mode)

    @staticmethod
    def keep(writer: RunWriter, run: GenerationRun) -> Path | None:
        """The frames finished so far: their records, and the last as ``final.png`` with the
        whole config (not cut to the frames reached: ``--resume`` continues from it)."""
        state = run.state
        if not isinstance(state, AnimationState) or state.last_frame is None:
            return None
        _write_frame_records(writer, state)
        return writer.write_final(state.last_frame, config=state.config, prompt=state.label, seed=state.seed,
                                  mode=state.mode)

    @staticmethod
    def video(writer: RunWriter, state: AnimationState) -> None:
        """``video.mp4`` of the frames (upscaled ones when every frame has one): at the
        input's or ``fps`` frame rate, or fitted to ``video_length``; interpolated ``interpolate``
        times (n frames become n * interpolate); with the restyled video's sound."""
        frames = writer.frames()
        if not frames or writer.folder is None:
            return
        folder = writer.folder
        config = build_config(AnimationConfig, state.config)
        if config.upscale.upscale:
            upscaled = sorted((folder / f"frames{config.upscale.suffix}").glob("*.png"))
            if len(upscaled) == len(frames):
                frames = upscaled
        factor = config.interpolate
        fps = len(frames) * factor / config.video_length if config.video_length else state.fps * factor
        final = folder / "video.mp4"
        with tempfile.TemporaryDirectory(dir=folder, prefix=".video-") as work:
            steps = factor > 1, state.audio is not None
            current = video_io.write_mp4(frames, final if not any(steps) else Path(work) / "frames.mp4",
                                         fps=fps / factor)
            if factor > 1:
                current = video_io.interpolate_mp4(current, Path(work) / "smooth.mp4" if state.audio else final,
                                                   factor=factor, fps=fps / factor)
            if state.audio is not None:
                video_io.add_audio(current, state.audio, final)
        state.files.append(final)
        if config.output.gif:
            state.files.append(video_io.write_gif(frames, folder / "video.gif", fps=fps / factor))


def _write_frame_records(writer: RunWriter, state: AnimationState) -> None:
    """``frames.jsonl``: one JSON object per finished frame."""
    assert writer.folder is not None, "records come after their frames"
    lines = "".join(json.dumps(record, sort_keys=True) + "\n" for record in state.records)
    state.files.append(write_bytes_atomic(writer.folder / FRAME_RECORDS, lines.encode("utf-8"), folder=writer.folder))
