"""The web UI's jobs: each runs a pipeline, writes its outputs, and yields :class:`Update`
objects that ``app.py`` turns into widget updates.

A job is a plain generator, so it is tested without a browser. Closing it (the Stop button:
Gradio closes a cancelled handler at its next ``yield``, and every progress step yields)
closes the run and keeps what it produced, exactly like Ctrl-C on the command line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from generator.config import GenerationConfig, OutputConfig, UpscaleConfig
from generator.devices import random_seed
from generator.errors import GeneratorError
from generator.events import Done, Event, Notice, Preview, Progress, relay
from generator.io.image_data import read_image_data
from generator.io.outputs import RunWriter, create_run_folder, zip_frames
from generator.runs import GenerationRun
from generator.sample_config import SampleConfig
from generator.sinks import (
    keep_samples,
    keep_text_to_image,
    sample_label,
    write_samples,
    write_text_to_image,
    write_upscaled,
)
from generator.upscale.tiles import upscale_with
from generator.webui.studio import Session, Studio

logger = logging.getLogger(__name__)


@dataclass
class Update:
    """What a job tells the UI; fields left None leave their widget as it is."""

    progress: tuple[int, int, str] | None = None
    preview: Image.Image | None = None
    notice: str | None = None
    status: str | None = None
    result: str | None = None
    results: list[str] | None = None
    video: str | None = None
    files: list[str] | None = None


def _as_update(event: Event) -> Update:
    if isinstance(event, Progress):
        return Update(progress=(event.step, event.total, describe(event)))
    return Update(notice=getattr(event, "message", None))


def describe(event: Progress) -> str:
    """``optimise 12/300 · 0:41 left``."""
    text = f"{event.stage} {event.step}/{event.total}"
    if event.eta is not None and event.step < event.total:
        minutes, seconds = divmod(int(event.eta + 0.5), 60)
        text += f" · {minutes}:{seconds:02d} left"
    return text


def _drive(run: GenerationRun, writer: RunWriter, output: OutputConfig, session: Session,
           finish: Callable[[Done], Path], keep: Callable[[GenerationRun], Path | None]) -> Iterator[Update]:
    session.folder = writer.folder
    done: Done | None = None
    try:
        for event in run:
            if isinstance(event, Progress):
                yield Update(progress=(event.step, event.total, describe(event)))
            elif isinstance(event, Preview):
                writer.write_frame(event.step, event.image)
                yield Update(preview=event.image)
            elif isinstance(event, Notice):
                yield Update(notice=event.message)
            elif isinstance(event, Done):
                done = event
        assert done is not None, "a run ended without a Done event"
        session.result = finish(done)
        yield _final_update(writer, output, session.result, done)
    except (GeneratorExit, GeneratorError):  # Stop, or an error with one sentence for the user
        run.close()
        try:
            session.result = keep(run)
            writer.write_video(fps=output.fps, mp4=output.video, gif=output.gif)
        except GeneratorError as second:
            logger.error("%s", second)
        raise


def _final_update(writer: RunWriter, output: OutputConfig, result: Path, done: Done) -> Update:
    videos = writer.write_video(fps=output.fps, mp4=output.video, gif=output.gif)
    files = [result] + [p for p in writer.folder.glob("*.png") if p != result] + videos
    if writer.frames():
        files.append(zip_frames(writer.folder, writer.folder / "frames.zip"))
    seconds = sum(v for k, v in done.timings.items() if k in ("total", "upscale", "load"))
    return Update(status=f"done in {seconds:.1f}s · {writer.folder.name}", result=str(result),
                  video=str(next((v for v in videos if v.suffix == ".mp4"), "")) or None,
                  files=[str(p) for p in sorted(set(files), key=files.index)])


def text_to_image_job(studio: Studio, config: GenerationConfig, session: Session) -> Iterator[Update]:
    """Generate from text, writing ``final.png``, frames, video and a frames zip."""
    if config.seed is None:
        config = config.replace(seed=random_seed())
    with session.running():
        yield Update(status="loading models…")
        generator = studio.generator_for(config.models)
        writer = RunWriter(create_run_folder(studio.outputs_dir, prompt=config.prompts or "image", seed=config.seed))
        yield from _drive(generator.run(config), writer, config.output, session,
                          finish=lambda done: write_text_to_image(writer, done, config),
                          keep=lambda run: keep_text_to_image(writer, run, config))


def sample_job(studio: Studio, config: SampleConfig, session: Session) -> Iterator[Update]:
    """Sample from a prior, writing ``sample-NNN.png``, a contact sheet, frames and video."""
    if config.seed is None:
        config = config.replace(seed=random_seed())
    samples: list[str] = []
    with session.running():
        yield Update(status="loading the prior…")
        sampler = studio.sampler_for(config.model, config.transformer_config)
        writer = RunWriter(create_run_folder(studio.outputs_dir, prompt=sample_label(sampler.model), seed=config.seed))

        def finish(done: Done) -> Path:
            final = write_samples(writer, done.images, done.config, config, upscaled=done.upscaled)
            samples.extend(str(p) for p in sorted(writer.folder.glob("sample-*.png")))
            return final

        for update in _drive(sampler.run(config), writer, config.output, session, finish=finish,
                             keep=lambda run: keep_samples(writer, run, config)):
            if update.result is not None:
                update.results = samples
            yield update


def upscale_job(studio: Studio, image_path: str, config: UpscaleConfig, session: Session) -> Iterator[Update]:
    """Upscale an uploaded (or sent) image into ``<outputs>/upscaled/<name>_x4.png``."""
    with session.running():
        image = read_image_data(image_path)
        yield Update(status="loading the upscaler…")
        upscaler = studio.upscalers.get(config.upscale_model, config.upscale_denoise)
        result = yield from relay(upscale_with(upscaler, image, config), _as_update)
        path = write_upscaled(studio.outputs_dir / "upscaled", Path(image_path), image, result, config,
                              upscaler.name, config.upscale or upscaler.scale)
        session.result = path
        yield Update(status=f"{image.size[0]}x{image.size[1]} → {result.size[0]}x{result.size[1]} · {path.name}",
                     result=str(path), files=[str(path)])
