"""The one driver of a run's events, shared by the command line and the web UI.

:func:`drive` iterates a :class:`GenerationRun` and forwards every event to the front end,
which only presents them (a tqdm bar, widget updates). The driver does the rest the same
way for everyone: frames as previews arrive, the final files when the run is done, and,
when it is stopped (Ctrl-C, the Stop button) or fails, the work so far: the latest image,
the video of the frames so far, and a config that records the step reached. Every run
folder ends with ``run.json``: the mode, how the run ended, the step reached, timings.

The run folder is created by the first file written, so a run that fails its checks leaves
nothing behind.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from generator.animate.config import AnimationConfig
from generator.animate.state import FRAME_RECORDS, MODE, AnimationState
from generator.config import OutputConfig, SampleConfig, UpscaleConfig
from generator.config_schema import build_config
from generator.errors import GeneratorError
from generator.events import Done, Event, Preview
from generator.io import video as video_io
from generator.io.atomic_files import output_error
from generator.io.image_data import ImageData
from generator.io.images import contact_sheet
from generator.io.outputs import (
    CONFIG_KEY,
    MODE_KEY,
    SOFTWARE,
    RunWriter,
    free_path,
    png_text,
    save_png,
    write_bytes_atomic,
)
from generator.runs import GenerationRun, RunState
from generator.text_to_image.prompts import parse_story

logger = logging.getLogger(__name__)

RUN_RECORD = "run.json"


@dataclass
class RunRecord:
    """What became of a run; filled in as the driver goes, so it is readable after a stop.

    Attributes:
        mode: ``text-to-image``, ``sample``, ...
        status: ``running``, then ``done``, ``stopped`` or ``failed``.
        folder: the run folder (None until the first file is written).
        result: the main image (``final.png``), also after a stop.
        files: every file written, in order.
        step, total: work done and planned (steps, rows).
        error: the one-sentence error of a failed run.
        done: the :class:`Done` event of a finished run.
    """

    mode: str
    status: str = "running"
    folder: Path | None = None
    result: Path | None = None
    files: list[Path] = field(default_factory=list)
    step: int = 0
    total: int = 0
    error: str | None = None
    done: Done | None = None

    @property
    def videos(self) -> list[Path]:
        """The videos written for this run."""
        return [path for path in self.files if path.suffix in (".mp4", ".gif")]


def drive(run: GenerationRun, out_dir: Path, *, record: RunRecord | None = None,
          parent: Path | None = None) -> Generator[Event, None, RunRecord]:
    """Iterate ``run`` to its end, yielding its events for the front end to present.

    Frames are written as previews arrive; at the end the mode's files, the video and
    ``run.json``. On a stop (``close()`` of this generator, Ctrl-C) or a
    :class:`GeneratorError` the run is closed, its work so far is kept, and the exception
    goes on. ``record`` (returned too) tells what happened; ``parent`` is recorded in
    ``run.json`` for a run continued from another.
    """
    state = run.state
    record = record if record is not None else RunRecord(state.mode)
    writer = RunWriter.new(out_dir, prompt=state.label, seed=state.seed)
    outputs = OUTPUTS[state.mode]
    try:
        for event in run:
            record.step, record.total = state.step, state.total
            if isinstance(event, Preview):
                preview = getattr(outputs, "preview", None)  # a mode may file its previews itself
                if preview is not None:
                    preview(writer, event, state)
                else:
                    writer.write_frame(event.step, event.image)
                record.folder = writer.folder
            elif isinstance(event, Done):
                record.done = event
            yield event
    except (GeneratorExit, KeyboardInterrupt, GeneratorError) as error:
        run.close()
        record.step = state.step
        failed = isinstance(error, GeneratorError)
        record.error = str(error) if failed else None
        try:
            record.result = outputs.keep(writer, run)
            if writer.written:
                _conclude(writer, record, state, "failed" if failed else "stopped", parent)
        except GeneratorError as second:
            logger.error("%s", second)
        record.status = "failed" if failed else "stopped"
        record.folder, record.files = writer.folder, writer.written
        raise
    assert record.done is not None, "a run ended without a Done event"
    record.result = outputs.finish(writer, record.done, state)
    _conclude(writer, record, state, "done", parent)
    return record


def _conclude(writer: RunWriter, record: RunRecord, state: RunState, status: str, parent: Path | None) -> None:
    """The video of the frames (as the run's output config asks) and ``run.json``."""
    record.status = status
    output = build_config(OutputConfig, state.config.get("output", {}))
    video = getattr(OUTPUTS[state.mode], "video", None)  # a mode may make its video itself
    try:
        if video is not None:
            video(writer, state)
        else:
            writer.write_video(fps=output.fps, mp4=output.video, gif=output.gif)
    finally:
        done = record.done
        summary = {"mode": state.mode, "label": state.label, "status": status, "step": state.step,
                   "total": state.total, "seed": state.seed, "error": record.error,
                   "parent": str(parent) if parent else None,
                   "timings": dict(done.timings) if done is not None else {}}
        writer.write_json(summary, RUN_RECORD)
        record.folder, record.files = writer.folder, writer.written + list(getattr(state, "files", ()))


class TextToImageOutputs:
    """``final.png`` (config embedded) + ``config.json`` + ``latent.safetensors`` (+ ``final_x4.png``)."""

    @staticmethod
    def finish(writer: RunWriter, done: Done, state: RunState) -> Path:
        final = writer.write_final(done.images[0], config=done.config, prompt=state.label, seed=done.seed)
        _write_latent(writer, state)
        suffix = build_config(UpscaleConfig, done.config.get("upscale", {})).suffix
        for image in done.upscaled:
            writer.write_image(image, f"final{suffix}.png",
                               text=png_text(done.config, prompt=state.label, seed=done.seed, mode=state.mode))
        return final

    @staticmethod
    def keep(writer: RunWriter, run: GenerationRun) -> Path | None:
        """The latest image of a stopped run as ``final.png``, with a config that repeats it."""
        image = run.latest_image()
        if image is None:
            return None
        config = config_at_step(run.state.config, run.state.step)
        final = writer.write_final(image, config=config, prompt=run.state.label, seed=run.state.seed)
        _write_latent(writer, run.state)
        return final


def _write_latent(writer: RunWriter, state: RunState) -> None:
    """``latent.safetensors``, for "continue"; a run whose latent cannot be read keeps its image."""
    if state.latent is None:
        return
    try:
        latent = state.latent()
    except Exception as error:  # best effort: the image is what matters
        logger.warning("could not save the latent to continue from: %s", error)
        return
    writer.write_latent(latent)


def config_at_step(config: Mapping[str, Any], step: int) -> dict[str, Any]:
    """The text-to-image config that reproduces a run stopped after ``step`` steps: ``steps``
    becomes ``step``, and a story split evenly over the planned steps keeps its phrase length."""
    config = dict(config)
    planned = int(config.get("steps", step))
    if not 0 < step < planned:
        return config
    phrases = len(parse_story(config["prompts"])) if str(config.get("prompts", "")).strip() else 1
    if phrases > 1 and not config.get("change_prompt_every"):
        config["change_prompt_every"] = math.ceil(planned / phrases)
    config["steps"] = step
    return config


class SampleOutputs:
    """``sample-NNN.png`` (+ upscaled copies), ``final.png`` (a contact sheet) + ``config.json``."""

    @staticmethod
    def finish(writer: RunWriter, done: Done, state: RunState) -> Path:
        return write_samples(writer, done.images, done.config, state.label, upscaled=done.upscaled)

    @staticmethod
    def keep(writer: RunWriter, run: GenerationRun) -> Path | None:
        """The finished samples of a stopped run, or the partial sheet of the first batch."""
        state = run.state
        partial = run.latest_image()
        if not state.images and partial is None:
            return None
        config = dict(state.config)
        if state.images:
            config["n"] = len(state.images)
        return write_samples(writer, state.images, config, state.label, sheet=partial if not state.images else None)


def write_samples(writer: RunWriter, images: Sequence[Image.Image], resolved: Mapping[str, Any], label: str, *,
                  upscaled: Sequence[Image.Image] = (), sheet: Image.Image | None = None) -> Path:
    """``sample-NNN.png`` (+ upscaled copies) and ``final.png`` (a contact sheet, or ``sheet``)."""
    seed = int(resolved["seed"])
    suffix = build_config(SampleConfig, resolved).upscale.suffix
    for ending, series in (("", images), (suffix, upscaled)):
        for index, image in enumerate(series):
            text = {**png_text(resolved, prompt=label, seed=seed, mode="sample"), "index": str(index)}
            writer.write_image(image, f"sample-{index:03d}{ending}.png", text=text)
    return writer.write_final(sheet or contact_sheet(list(images)), config=resolved, prompt=label, seed=seed,
                              mode="sample")


class AnimationOutputs:
    """``frames/NNNNNN.png`` (every frame, as it is finished), ``frames.jsonl`` (one record per
    frame), ``final.png`` (the last frame, config embedded), ``config.json`` and ``video.mp4``
    (always; ``video.gif`` too with ``--gif``); with ``--upscale``, ``frames_x4/`` and a video
    made of those. A stopped run keeps the same files for the frames it finished, and its
    ``config.json`` holds every setting, so ``--resume`` continues it."""

    @staticmethod
    def preview(writer: RunWriter, event: Preview, state: AnimationState) -> None:
        """A finished frame into ``frames/``, its upscaled copy into ``frames_x4/``."""
        if event.stage != "upscaled":
            writer.write_frame(event.step, event.image)
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


OUTPUTS: dict[str, Any] = {"text-to-image": TextToImageOutputs, "sample": SampleOutputs, MODE: AnimationOutputs}
"""How each mode's finished and stopped runs are written."""


def write_upscaled(folder: Path, source: Path, image: ImageData, result: ImageData, config: UpscaleConfig,
                   model: str, factor: float) -> Path:
    """``<folder>/<source stem>_x4.png`` (never overwriting), with the settings embedded."""
    record = {"upscale": {**vars(config), "upscale": factor}, "source": str(source), "model": model,
              "input_size": list(image.size), "output_size": list(result.size)}
    text = {MODE_KEY: "upscale", CONFIG_KEY: json.dumps(record, sort_keys=True), "Software": SOFTWARE}
    folder.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(free_path(folder, source.stem, f"_x{factor:g}"), result.png_bytes(text))
