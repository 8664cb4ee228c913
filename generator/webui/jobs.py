"""The web UI's jobs: each runs a pipeline, writes its outputs, and yields :class:`Update`
objects that ``app.py`` turns into widget updates.

A job is a plain generator, so it is tested without a browser. Closing it (the Stop button:
Gradio closes a cancelled handler at its next ``yield``, and every progress step yields)
closes the run and keeps what it produced, exactly like Ctrl-C on the command line.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from generator import modes
from generator.animate.config import AnimationConfig
from generator.animate.mode import ANIMATE
from generator.animate.pipeline import Animator, check_animation
from generator.config import GenerationConfig, SampleConfig, UpscaleConfig
from generator.drive import RunRecord, drive
from generator.errors import InputError
from generator.events import Event, Preview, Progress, relay
from generator.io.image_data import read_image_data
from generator.io.images import image_size
from generator.io.outputs import FRAMES_DIR, zip_frames
from generator.io.video import write_mp4
from generator.runs import GenerationRun
from generator.sample.mode import SAMPLE
from generator.text_to_image.checks import check_settings
from generator.text_to_image.mode import TEXT_TO_IMAGE
from generator.upscale.mode import UPSCALE
from generator.upscale.outputs import write_upscaled
from generator.upscale.tiles import upscale_with
from generator.webui.gallery import record_session_owner
from generator.webui.limits import DEFAULT_MAX_MEGAPIXELS, check_upscale_size
from generator.webui.studio import Session, Studio

logger = logging.getLogger(__name__)
JobFunction = Callable[..., Iterator["Update"]]
"""A served job: ``job(studio, config, session, **options)`` yielding updates."""


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
    info: str | None = None
    seed: int | None = None
    plot: Any = None  # a chart's points (a pandas DataFrame for a gr.LinePlot)


def pooled(mode: str) -> Callable[[JobFunction], JobFunction]:
    """Make a served job (``job(studio, config, session, **options)``) go to the studio's pool
    when it has one (``app.py --ray``: :attr:`Studio.pool` relays it to a Ray worker, which runs
    this same function there), and run here otherwise."""
    def wrap(job: JobFunction) -> JobFunction:
        @functools.wraps(job)
        def wrapper(studio: Studio, config: Any, session: Session, **options: Any) -> Iterator[Update]:
            if studio.pool is None:
                return job(studio, config, session, **options)
            checks = modes.get(mode).function("checks")
            if checks is not None:  # a mistake is said at once, not after a trip to a worker
                checks(config)
            return studio.pool.relay(session, mode, config, options)
        return wrapper
    return wrap


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


def present_run(run: GenerationRun, studio: Studio, session: Session, parent: Path | None = None) -> Iterator[Update]:
    """The web UI's presentation of the one driver (:func:`generator.drive.drive`): it writes
    the files, this turns events into updates. A Stop closes this generator at a ``yield``,
    which closes the driver, which keeps the work."""
    record = session.record = RunRecord(run.state.mode)
    try:
        with contextlib.closing(drive(run, studio.outputs_dir, record=record, parent=parent)) as events:
            for event in events:
                if isinstance(event, Preview):
                    yield Update(preview=event.image)
                else:
                    yield _as_update(event)
    finally:  # done, stopped or failed: the run folder is this browser's, in its gallery
        record_session_owner(studio.owners, record, session.owner)
    yield _final_update(record)


def _final_update(record: RunRecord) -> Update:
    assert record.folder is not None and record.result is not None and record.done is not None
    seconds = sum(v for k, v in record.done.timings.items() if k in ("total", "upscale", "load"))
    update = kept_update(record)
    update.status = f"done in {seconds:.1f}s · {record.folder.name}"
    update.info = generation_info(record.done.config, seconds, record.step, record.total)
    update.seed = record.done.seed
    return update


def kept_update(record: RunRecord) -> Update:
    """What a run folder offers (its result, images, video, frames as a zip), finished or stopped."""
    assert record.folder is not None
    images = [p for p in record.files if p.suffix == ".png" and p.parent == record.folder and p != record.result]
    files = ([record.result] if record.result else []) + images + record.videos
    if sorted((record.folder / FRAMES_DIR).glob("*.png")):
        files.append(frames_download(record.folder))
    mp4 = next((v for v in record.videos if v.suffix == ".mp4"), None)
    return Update(result=str(record.result) if record.result else None, video=str(mp4) if mp4 else None,
                  files=[str(p) for p in files])


def generation_info(config: dict, seconds: float | None, step: int, total: int) -> str:
    """``city at night · seed 7 · 256x256 · 300 steps · 41.2 s`` (steps reached when stopped)."""
    size = config.get("size") or []
    parts = [str(config.get("prompts") or config.get("model") or ""), f"seed {config.get('seed')}"]
    if len(size) == 2:
        parts.append(f"{size[0]}x{size[1]}")
    parts.append(f"{step} of {total} steps" if 0 < step < total else f"{total or step} steps")
    if seconds is not None:
        parts.append(f"{seconds:.1f} s")
    return " · ".join(p for p in parts if p)


def frames_download(folder: Path) -> Path:
    """The frames of a run folder as a zip in a temporary folder (the run folder itself
    holds the same files as a command-line run)."""
    destination = Path(tempfile.mkdtemp(prefix="vqgan-studio-")) / f"{folder.name}-frames.zip"
    return zip_frames(folder, destination)


@pooled(TEXT_TO_IMAGE.name)
def text_to_image_job(studio: Studio, config: GenerationConfig, session: Session,
                      parent: Path | None = None, count: int = 1) -> Iterator[Update]:
    """Generate from text, writing ``final.png``, frames and video; frames also as a zip.
    ``parent``: the run folder this one continues (recorded in its ``run.json``). ``count``
    (the batch count): that many images in a row, each its own run folder, with the seeds
    the command line's ``-n`` gives (seed, seed + 1, ..., or fresh random ones; with a
    variation seed, variations of one seed: :meth:`GenerationConfig.series`)."""
    if count < 1:
        raise InputError(f"the number of images must be 1 or more, not {count}.")
    check_settings(config)  # a mistake in the form is said before any model is loaded or downloaded
    with session.running():
        yield Update(status="loading models…")
        pipeline = studio.text_to_image_for(config.models)
        finals: list[str] = []
        for index, image in enumerate(config.series(count)):
            image = image.with_seed()
            yield Update(status="starting…" if count == 1 else f"image {index + 1} of {count}…")
            last = None
            for update in present_run(pipeline.run(image), studio, session, parent):
                if update.progress is not None and count > 1:
                    step, total, text = update.progress
                    update.progress = (step, total, f"image {index + 1} of {count} · {text}")
                if update.result is not None:
                    last = update
                    continue
                yield update
            assert last is not None
            finals.append(last.result)
            if count > 1:
                last.status = f"{index + 1} of {count} done · {last.status}"
                last.results = list(finals)
                last.files = list(dict.fromkeys(finals + (last.files or [])))
            yield last


@pooled(SAMPLE.name)
def sample_job(studio: Studio, config: SampleConfig, session: Session) -> Iterator[Update]:
    """Sample from a prior, writing ``sample-NNN.png``, a contact sheet, frames and video."""
    with session.running():
        yield Update(status="loading the prior…")
        sampler = studio.sampler_for(config.model, config.transformer_config)
        for update in present_run(sampler.run(config), studio, session):
            if update.result is not None and session.record is not None:
                update.results = [str(p) for p in session.record.files if p.name.startswith("sample-")]
            yield update


def upscale_job(studio: Studio, image_path: str, config: UpscaleConfig, session: Session,
                max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> Iterator[Update]:
    """Upscale an uploaded (or sent) image into ``<outputs>/upscaled/<name>_x4.png``; the final
    update's ``results`` is the pair (before, after). Outputs over ``max_megapixels`` are refused."""
    with session.running():
        size = image_size(image_path, what="the image to upscale")  # its header only: nothing decoded yet
        if config.upscale:
            check_upscale_size(size, config.upscale, max_megapixels)
        yield Update(status="loading the upscaler…")
        upscaler = studio.upscaler(config.upscale_model, config.upscale_denoise)
        check_upscale_size(size, config.upscale or upscaler.scale, max_megapixels, network_scale=upscaler.scale)
        image = read_image_data(image_path)
        result = yield from relay(upscale_with(upscaler, image, config), _as_update)
        path = write_upscaled(studio.outputs_dir / "upscaled", Path(image_path), image, result, config,
                              upscaler.name, config.upscale or upscaler.scale)
        session.record = RunRecord(UPSCALE.name, status="done", folder=path.parent, result=path, files=[path])
        yield Update(status=f"{image.size[0]}x{image.size[1]} → {result.size[0]}x{result.size[1]} · {path.name}",
                     result=str(path), results=[image_path, str(path)], files=[str(path)])


@pooled(UPSCALE.name)
def upscale_input_job(studio: Studio, config: UpscaleConfig, session: Session, *, image: str,
                      max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> Iterator[Update]:
    """:func:`upscale_job` with its image as a named input (the upscale mode's served job)."""
    return upscale_job(studio, image, config, session, max_megapixels)


@pooled(ANIMATE.name)
def animation_job(studio: Studio, config: AnimationConfig, session: Session) -> Iterator[Update]:
    """Make an animation (zoom, pan, rotate, prompts at frames, or a restyle), writing its run
    folder like ``python -m generator animate``; a video preview of the frames so far grows as
    frames arrive (re-encoded less often as it gets long), then the final video."""
    check_animation(config)  # before any model is loaded or downloaded
    with session.running():
        yield Update(status="loading models…")
        pipeline = studio.text_to_image_for(config.models)
        frames: list[Image.Image] = []
        preview_dir = Path(tempfile.mkdtemp(prefix="vqgan-studio-animation-"))
        for update in present_run(Animator(pipeline).run(config), studio, session):
            if update.preview is not None and (not frames or update.preview.size == frames[0].size):
                frames.append(update.preview)  # frames, not their upscaled copies
                if len(frames) >= 2 and len(frames) % max(1, len(frames) // 20) == 0:
                    update.video = str(write_mp4(frames, preview_dir / f"frames-{len(frames):05d}.mp4",
                                                 fps=config.output.fps))
            yield update
