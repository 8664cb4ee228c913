"""The web UI's jobs: each runs a pipeline, writes its outputs, and yields :class:`Update`
objects that ``app.py`` turns into widget updates.

A job is a plain generator, so it is tested without a browser. Closing it (the Stop button:
Gradio closes a cancelled handler at its next ``yield``, and every progress step yields)
closes the run and keeps what it produced, exactly like Ctrl-C on the command line.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from generator.config import GenerationConfig, SampleConfig, UpscaleConfig
from generator.events import Event, Preview, Progress, relay
from generator.io.image_data import read_image_data
from generator.io.outputs import FRAMES_DIR, zip_frames
from generator.runs import GenerationRun
from generator.sinks import RunRecord, drive, write_upscaled
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


def _present(run: GenerationRun, studio: Studio, session: Session) -> Iterator[Update]:
    """The web UI's presentation of the one driver (:func:`generator.sinks.drive`): it writes
    the files, this turns events into updates. A Stop closes this generator at a ``yield``,
    which closes the driver, which keeps the work."""
    record = session.record = RunRecord(run.state.mode)
    with contextlib.closing(drive(run, studio.outputs_dir, record=record)) as events:
        for event in events:
            if isinstance(event, Preview):
                yield Update(preview=event.image)
            else:
                yield _as_update(event)
    yield _final_update(record)


def _final_update(record: RunRecord) -> Update:
    assert record.folder is not None and record.result is not None and record.done is not None
    images = [record.result] + [p for p in record.files if p.suffix == ".png" and p.parent == record.folder
                                and p != record.result]
    files = images + record.videos
    frames = sorted((record.folder / FRAMES_DIR).glob("*.png"))
    if frames:
        files.append(frames_download(record.folder))
    seconds = sum(v for k, v in record.done.timings.items() if k in ("total", "upscale", "load"))
    mp4 = next((v for v in record.videos if v.suffix == ".mp4"), None)
    return Update(status=f"done in {seconds:.1f}s · {record.folder.name}", result=str(record.result),
                  video=str(mp4) if mp4 else None, files=[str(p) for p in files])


def frames_download(folder: Path) -> Path:
    """The frames of a run folder as a zip in a temporary folder (the run folder itself
    holds the same files as a command-line run)."""
    destination = Path(tempfile.mkdtemp(prefix="vqgan-studio-")) / f"{folder.name}-frames.zip"
    return zip_frames(folder, destination)


def text_to_image_job(studio: Studio, config: GenerationConfig, session: Session) -> Iterator[Update]:
    """Generate from text, writing ``final.png``, frames and video; frames also as a zip."""
    with session.running():
        yield Update(status="loading models…")
        pipeline = studio.text_to_image_for(config.models)
        yield from _present(pipeline.run(config), studio, session)


def sample_job(studio: Studio, config: SampleConfig, session: Session) -> Iterator[Update]:
    """Sample from a prior, writing ``sample-NNN.png``, a contact sheet, frames and video."""
    with session.running():
        yield Update(status="loading the prior…")
        sampler = studio.sampler_for(config.model, config.transformer_config)
        for update in _present(sampler.run(config), studio, session):
            if update.result is not None and session.record is not None:
                update.results = [str(p) for p in session.record.files if p.name.startswith("sample-")]
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
        session.record = RunRecord("upscale", status="done", folder=path.parent, result=path, files=[path])
        yield Update(status=f"{image.size[0]}x{image.size[1]} → {result.size[0]}x{result.size[1]} · {path.name}",
                     result=str(path), files=[str(path)])
