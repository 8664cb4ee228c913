"""The Train tab: a VQGAN, or a transformer prior over a VQGAN's codes, trained on uploaded
images, with a live loss plot, the latest reconstruction (or sample) grid, Stop and Resume.

The uploads are copied into a private folder of the outputs area (``.train-uploads/``, which
no gallery lists and no visitor may read back), the run folder is the training's own
(``train-vqgan-...`` or ``train-prior-...``, owned by the visitor), and the trained model is
registered in the weights folder, where the model menus list it.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

from generator.drive import RunRecord
from generator.errors import ConfigError, GeneratorError, InputError, summary
from generator.events import Event, Notice, Preview, Progress
from generator.io.images import is_url
from generator.io.outputs import slugify
from generator.train.live import LossCurves, loss_frame, vqgan_events
from generator.train.mode import TRAIN
from generator.train.prior_settings import FOLDER_PREFIX, PriorTrainingConfig, resume_config
from generator.train.prior_settings import RUN_FILE as PRIOR_RUN_FILE
from generator.train.prior_training import PriorTraining
from generator.train.uploads import check_uploads, copy_uploads, sweep_uploads
from generator.train.vqgan_losses import discriminator_min_size
from generator.train.vqgan_settings import SIZES, VQGANTrainSettings, check_settings
from generator.train.vqgan_train import RUN_PREFIX, VQGANTraining
from generator.webui.catalogue import model_choices
from generator.webui.gallery import record_owner
from generator.webui.handlers import guarded, named, stream
from generator.webui.jobs import Update
from generator.webui.status import for_the_page, message_html
from generator.webui.studio import Session, Studio
from generator.webui.tabs.page import CLAIMING, QUICK, Page, TabParts

WHAT = (("VQGAN", "vqgan"), ("Prior over a VQGAN", "prior"))
"""What the tab trains: (label, value)."""
PRIOR_SIZES = {"tiny": (4, 4, 128), "small": (6, 8, 256), "base": (8, 8, 512)}
"""The prior's named sizes: (layers, heads, width); ``base`` is ``train prior``'s default GPT."""
DEFAULTS = {"vqgan": {"batch_size": 4, "lr": 1e-4}, "prior": {"batch_size": 16, "lr": 3e-4}}
"""The form's batch size and learning rate for each kind (the command line's defaults)."""
PLOT_SECONDS = 0.5  # the plot is redrawn at most this often (and at the end)
PREVIEW_WIDTH = 512  # grids are shown enlarged (nearest neighbour) to about this width
STOP_WAIT = 600  # seconds a Stop waits for the checkpoint to be written
_NAMES = ["what", "images", "name", "model", "vqgan", "size", "steps", "batch_size", "lr"]
_OUTPUTS = ["status", "plot", "preview", "files"]
_NONE = {"vqgan": "none: train from scratch", "prior": "choose a VQGAN"}  # the menu's empty entry
_FLAG = re.compile(r"--[a-z][a-z-]*")
_FORM_WORDS = {"--size": "size", "--steps": "steps", "--batch-size": "batch size", "--lr": "learning rate",
               "--name": "name", "--model": "model size", "--from": "fine-tune from", "--vqgan": "VQGAN",
               "--resume": "Resume"}
_LABELS = {
    "vqgan": ("Model size (from scratch)", "Fine-tune from (or none: from scratch)", "Crop size (px)",
              "Latest reconstructions: held-out crops (top), the model's (below)"),
    "prior": ("Prior size", "VQGAN whose codes the prior learns", "Image size (px)", "Latest samples"),
}


@dataclass(frozen=True)
class TrainForm:
    """What to train, as the tab's form says it (its paths checked).

    Attributes:
        what: ``vqgan`` or ``prior``.
        images: the training images (files this visitor may read).
        name: the model's name in the weights folder (empty: ``my-vqgan``, ``my-vqgan-2``... or
            ``my-prior``).
        model: a named size (a VQGAN's, :data:`SIZES`, or a prior's, :data:`PRIOR_SIZES`), or a
            VQGAN ``.yaml`` to train from scratch.
        vqgan: the VQGAN to fine-tune (empty: from scratch), or whose codes the prior learns.
        size: the side of the VQGAN's random crops, or of the prior's images.
        steps, batch_size, lr: the training's (None: the kind's default).
        seed, precision: the training's (the tab leaves a random seed, recorded, and ``auto``).
    """

    what: str = "vqgan"
    images: tuple[str, ...] = ()
    name: str = ""
    model: str = "tiny"
    vqgan: str = ""
    size: int = 128
    steps: int = 1000
    batch_size: int | None = None
    lr: float | None = None
    seed: int | None = None
    precision: str = "auto"


def build(page: Page, preset: str) -> TabParts:
    """Lay out the tab (inside a ``gr.Tab``) and wire its events (``preset`` does not apply)."""
    studio = page.studio
    model_label, vqgan_label, size_label, _ = _LABELS["vqgan"]
    with gr.Row():
        what = gr.Radio(list(WHAT), value="vqgan", label="Train", elem_id="train-what")
        model = gr.Radio(list(SIZES), value="tiny", label=model_label, elem_id="train-model")
        vqgan = gr.Dropdown(_vqgan_choices(studio), value="", label=vqgan_label, allow_custom_value=True,
                            elem_id="train-vqgan")
    with gr.Row():
        images = gr.File(label="Training images (any size; a few dozen or more)", file_count="multiple",
                         file_types=["image"], type="filepath", elem_id="train-images", height=200, scale=2)
        with gr.Column(scale=3):
            with gr.Row():
                name = gr.Textbox(label="Name in the model menus", placeholder="empty: my-vqgan (my-prior)",
                                  max_lines=1, elem_id="train-name")
                size = gr.Number(128, label=size_label, precision=0, elem_id="train-size")
                steps = gr.Number(1000, label="Steps", precision=0, elem_id="train-steps")
            with gr.Row():
                batch_size = gr.Number(DEFAULTS["vqgan"]["batch_size"], label="Batch size", precision=0,
                                       elem_id="train-batch-size")
                lr = gr.Number(DEFAULTS["vqgan"]["lr"], label="Learning rate", elem_id="train-lr")
    with gr.Row():
        run_button = gr.Button(TRAIN.title, variant="primary", elem_id=TRAIN.api)
        resume_button = gr.Button("Resume my latest run", elem_id=f"{TRAIN.api}-resume")
        stop_button = gr.Button("Stop", variant="stop", elem_id=f"{TRAIN.api}-stop")
    hint = gr.HTML(elem_id=f"{TRAIN.api}-hint")
    status = gr.HTML(elem_id=f"{TRAIN.api}-status")
    with gr.Row():
        plot = gr.LinePlot(None, x="step", y="loss", color="kind", color_title="", label="Loss", show_label=False,
                           x_title="step", y_title="loss", height=400, elem_id="train-loss", scale=3)
        samples = gr.Image(label=_LABELS["vqgan"][3], type="pil", format="png", interactive=False, height=400,
                           elem_id="train-samples", scale=2)
    downloads = gr.File(label="The trained model, for this studio or any VQGAN+CLIP tool (official .ckpt and .yaml)",
                        file_count="multiple", interactive=False, elem_id="train-files")
    claim = gr.State(None)

    def train(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
        session = studio.session(request)
        yield from _redrawn(stream(lambda: train_job(studio, checked_form(page, form, request), session), _OUTPUTS,
                                   session))

    def resumed(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
        session = studio.session(request)
        yield from _redrawn(stream(lambda: resume_job(studio, _whole(form["steps"], "steps"), session), _OUTPUTS,
                                   session))

    def stopped(request: gr.Request) -> tuple[str]:
        session = studio.session(request)
        session.finished.wait(timeout=STOP_WAIT)
        session.release()
        return (message_html(stop_message(session.record), "done"),)

    def switched(kind: str) -> tuple:
        kind = kind if kind in DEFAULTS else "vqgan"
        model_label, vqgan_label, size_label, samples_label = _LABELS[kind]
        return (gr.update(label=model_label), gr.update(label=vqgan_label, choices=_vqgan_choices(studio, kind)),
                gr.update(label=size_label), gr.update(label=samples_label), DEFAULTS[kind]["batch_size"],
                DEFAULTS[kind]["lr"])

    def menu(kind: str) -> tuple:
        return (gr.update(choices=_vqgan_choices(studio, kind if kind in DEFAULTS else "vqgan")),)

    outputs = [status, plot, samples, downloads]
    claimed = [status, claim, gr.State()]
    runs = [run_button.click(page.claimed, None, claimed, **CLAIMING).success(
                named(train, _NAMES), [claim, what, images, name, model, vqgan, size, steps, batch_size, lr], outputs,
                api_name=TRAIN.api, **page.heavy),
            resume_button.click(page.claimed, None, claimed, **CLAIMING).success(
                named(resumed, ["steps"]), [claim, steps], outputs, api_name=f"{TRAIN.api}_resume", **page.heavy)]
    for event in runs:  # a model trained (or stopped) is in the weights folder: this tab's menu lists it now
        event.then(guarded(menu, None, 1), what, vqgan, **QUICK)
    stop_button.click(lambda: message_html("Stopping after this step…"), None, status, cancels=runs, **QUICK).then(
        guarded(stopped, 0, 1), None, status, **QUICK).then(guarded(menu, None, 1), what, vqgan, **QUICK)
    vqgan.focus(guarded(menu, None, 1), what, vqgan, **QUICK)  # opened: lists what the weights folder has now
    what.change(guarded(switched, None, 6), what, [model, vqgan, size, samples, batch_size, lr], **QUICK)
    page.hint_menus((("vqgan", vqgan),), hint)
    return TabParts({}, [], {}, runs)


def _redrawn(updates: Iterator[tuple]) -> Iterator[tuple]:
    """``updates`` (of :data:`_OUTPUTS`), each new plot drawn afresh: after its first drawing,
    Gradio's line plot only swaps the data of the chart it drew, keeping that chart's curves
    (an empty chart keeps none) and losing the data that comes while it is still drawing. A
    legend given with the data (a new list each time) makes it draw the chart again."""
    at = _OUTPUTS.index("plot")
    with contextlib.closing(updates):  # a Stop closes this generator: close the job's at once
        for values in updates:
            plot = values[at]
            if hasattr(plot, "columns"):  # a DataFrame (the job sends one at most every PLOT_SECONDS)
                legend = list(dict.fromkeys(plot["kind"]))
                values = (*values[:at], gr.update(value=plot, colors_in_legend=legend), *values[at + 1:])
            yield values


def checked_form(page: Page, form: dict[str, Any], request: Any) -> TrainForm:
    """The :class:`TrainForm` of the tab's widget values (named as in ``_NAMES``), every path
    checked: uploads this visitor may read, a VQGAN from the menu (or the weights folder).

    Raises:
        InputError: a value the form cannot take (one sentence).
    """
    may_read = page.studio.may_read(request)
    images = []
    for item in form.get("images") or []:
        path = str(getattr(item, "path", item) or "")
        try:
            if is_url(path):
                raise InputError("an address")
            images.append(page.paths.check_image(path, "training images", may_read))
        except InputError:  # the same sentence for every refused value, whether the path exists or not
            raise InputError("the training images field takes your uploads only; upload the images.") from None
    what = form.get("what") or "vqgan"
    if what not in DEFAULTS:
        raise InputError(f"choose what to train: {' or '.join(label for label, _ in WHAT)}.")
    model = str(form.get("model") or "tiny")
    if model not in SIZES:  # never a yaml path from a page: the server would read what it names
        raise InputError(f"choose the model size: {', '.join(SIZES)}.")
    lr = form.get("lr")
    if lr is not None and (not isinstance(lr, int | float) or not math.isfinite(lr)):
        raise InputError("give the learning rate as a number, such as 0.0001.")
    batch = form.get("batch_size")
    return TrainForm(what=what, images=tuple(images), name=str(form.get("name") or "").strip(),
                     model=model, vqgan=page.paths.check(form.get("vqgan"), "VQGAN"),
                     size=_whole(form.get("size"), "size"), steps=_whole(form.get("steps"), "steps"),
                     batch_size=None if batch is None else _whole(batch, "batch size"),
                     lr=None if lr is None else float(lr))


# --------------------------------------------------------------------------------------------
# the jobs


def train_job(studio: Studio, form: TrainForm, session: Session) -> Iterator[Update]:
    """Train what ``form`` says on a copy of its images: a new run folder in the outputs folder,
    the model registered in the weights folder. Yields the loss plot's points (at most every
    :data:`PLOT_SECONDS`), the grids as they are written and the progress; closing it (Stop)
    stops after the step under way, with the run saved for :func:`resume_job`. Every mistake
    is one sentence, said before the run starts."""
    with _form_words():
        check_uploads(form.images)
        _plan(studio, form, "uploads")  # the settings' own checks, before waiting for the device
        with session.running():
            _make_room(studio)
            sweep_uploads(studio.outputs_dir)
            data, skipped = copy_uploads(studio.outputs_dir, form.images,
                                         slugify(form.name) if form.name else f"my-{form.what}")
            try:
                if skipped:
                    shown = ", ".join(skipped[:5]) + ("…" if len(skipped) > 5 else "")
                    yield Update(notice=f"{len(skipped)} of {len(form.images)} uploads cannot be read as images "
                                        f"and were left out: {shown}.")
                yield Update(status="starting the training…", plot=loss_frame(LossCurves()), files=[])
                training = _start(studio, _plan(studio, form, str(data)))
            except BaseException:  # refused or stopped before it began: nothing was trained on them
                shutil.rmtree(data.parent, ignore_errors=True)
                raise
            yield from _follow(studio, session, training)


def resume_job(studio: Studio, steps: int, session: Session, folder: Path | None = None) -> Iterator[Update]:
    """Go on with a training run up to step ``steps``: ``folder``, else the visitor's latest
    run (:func:`latest_run`), with the same updates as :func:`train_job`."""
    with _form_words():
        folder = folder or latest_run(studio, session)
        if folder is None:
            raise InputError("there is no training run of yours to resume; train a model first.")
        if steps < 1:
            raise InputError(f"steps must be 1 or more, not {steps}.")
        with session.running():
            _make_room(studio)
            yield Update(status=f"resuming {folder.name}…", files=[])
            training = _resumed(studio, folder, steps)
            training.curves.read(folder)
            yield from _follow(studio, session, training)


def latest_run(studio: Studio, session: Session) -> Path | None:
    """The training run this visitor worked on last (its own runs in the owners index, and the
    latest run of this page), or None."""
    candidates = []
    if session.owner:
        candidates += [studio.outputs_dir / name for name, owner in studio.owners.read().items()
                       if owner == session.owner and _is_training_run(name)]
    record = session.record
    if record is not None and record.mode == TRAIN.name and record.folder is not None:
        candidates.append(record.folder)
    found = [folder for folder in candidates if (folder / "config.json").is_file()]
    return max(found, key=_last_active, default=None)


def stop_message(record: RunRecord | None) -> str:
    """What a Stop left: the step reached, where the run is kept and the model so far."""
    if record is None or record.mode != TRAIN.name or record.folder is None or record.status != "stopped":
        return "Stopped."
    model = f", and the VQGAN so far is in the weights folder as {record.files[0].stem}" if record.files else ""
    return (f"Stopped at step {record.step} of {record.total}: {record.folder.name} keeps it{model}. "
            "Resume goes on from there.")


@dataclass
class _Training:
    """A started (or resumed) training, as the tab follows it.

    Attributes:
        events: its events (a generator; its return value the run's result); closing it stops
            the run after the step under way, saved for resuming.
        folder: its run folder.
        curves: the loss plot's points so far.
        total: the step it trains to.
        vqgan: a VQGAN's training (None: a prior's): a stopped one tells the step it saved and
            has its model so far in the weights folder (a prior is registered when it is done).
    """

    events: Generator[Event, None, Any]
    folder: Path
    curves: LossCurves
    total: int
    vqgan: VQGANTraining | None = None


def _follow(studio: Studio, session: Session, training: _Training) -> Iterator[Update]:
    """The updates of a started training (its record and owner first); closing them (Stop)
    stops the run after the step under way, saved, and the record says where."""
    record = session.record = RunRecord(TRAIN.name, folder=training.folder, total=training.total,
                                        step=training.curves.offset)
    if session.owner:
        record_owner(studio.owners, training.folder, session.owner)
    with contextlib.closing(training.events):
        try:
            result = yield from _updates(training, record)
        except GeneratorExit:
            training.events.close()  # the run stops and saves its last step
            record.status = "stopped"
            if training.vqgan is not None:
                record.step = training.vqgan.step
                kept = training.vqgan.registered
                record.files = [kept] if kept.is_file() else []
            else:
                record.step = _saved_step(training.folder, record.step)
            raise
        except BaseException as error:
            record.status, record.error = "failed", summary(error)
            raise
    record.status, record.step, record.files = "done", result.step, [Path(result.registered)]


def _updates(training: _Training, record: RunRecord) -> Generator[Update, None, Any]:
    """The updates of a training's events, the last one saying what it made; returns its result."""
    events, folder, curves, total = training.events, training.folder, training.curves, training.total
    yield Update(status=f"training {folder.name}…", plot=loss_frame(curves))
    plotted, started, first = 0.0, time.monotonic(), None
    while True:
        try:
            event = next(events)
        except StopIteration as end:
            result = end.value
            break
        if isinstance(event, Preview):
            yield Update(preview=_enlarged(event.image))
        elif isinstance(event, Notice):
            yield Update(notice=for_the_page(said_for_the_form(event.message)))
        elif isinstance(event, Progress) and event.loss is None:  # the prior encodes its images
            yield Update(progress=(event.step, event.total, f"encoding the images {event.step}/{event.total}"))
        elif isinstance(event, Progress):
            curves.add(event)
            record.step = step = event.step + curves.offset
            first = first or (step - 1, time.monotonic())
            plot = None
            if time.monotonic() - plotted >= PLOT_SECONDS:
                plot, plotted = loss_frame(curves), time.monotonic()
            yield Update(progress=(step, total, _progress_text(step, total, event.loss, first)), plot=plot)
    registered = Path(result.registered)
    kind, seconds = "prior" if curves.prior else "VQGAN", time.monotonic() - started
    began = first[0] if first is not None else result.step
    trained = f"trained on to step {result.step} ({result.step - began} more steps in {seconds:.0f} s)" if began \
        else f"trained to step {result.step} in {seconds:.0f} s"
    menus = "every prior menu lists it" if curves.prior else "every VQGAN menu lists it"
    model_files = [str(result.checkpoint), str(getattr(result, "config_file", None) or result.config)]  # run folder's
    yield Update(status=f"Done: the {kind} {registered.stem} {trained}. It is in the weights folder "
                        f"({registered.name}): {menus}.", result=str(registered), plot=loss_frame(curves),
                 files=model_files)
    return result


def _saved_step(folder: Path, default: int) -> int:
    """The step a stopped prior's run saved (its ``run.json``), else ``default``."""
    try:
        return int(json.loads((folder / PRIOR_RUN_FILE).read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return default


def _plan(studio: Studio, form: TrainForm, data: str) -> VQGANTrainSettings | PriorTrainingConfig:
    """The training's settings of ``form`` on the images in ``data``, checked (one sentence each)."""
    given: dict[str, Any] = {key: value for key, value in (("batch_size", form.batch_size), ("lr", form.lr))
                             if value is not None}
    if form.what == "prior":
        if not form.vqgan:
            raise InputError("choose the VQGAN whose codes the prior learns in the menu (train one first if you "
                             "have none).")
        if form.model not in PRIOR_SIZES:
            raise ConfigError(f"the prior's size must be one of {', '.join(PRIOR_SIZES)}, not {form.model!r}.")
        layers, heads, width = PRIOR_SIZES[form.model]
        return PriorTrainingConfig(vqgan=form.vqgan, data=data, size=form.size, steps=form.steps, n_layer=layers,
                                   n_head=heads, n_embd=width, val_every=_every(form.steps, 20),
                                   sample_every=_every(form.steps, 10), sample_count=4, seed=form.seed,
                                   precision=form.precision, name=form.name or None, **given)
    settings = VQGANTrainSettings(data=data, name=form.name or None, model=form.model, from_model=form.vqgan or None,
                                  size=form.size, steps=form.steps, seed=form.seed, precision=form.precision,
                                  device=str(studio.device), out=str(studio.outputs_dir),
                                  weights_dir=_weights(studio), offline=studio.offline,
                                  sample_every=_grids(form.steps), **given)
    check_settings(settings)
    smallest = discriminator_min_size(settings.disc_layers)
    if settings.size < smallest:
        raise ConfigError(f"the crop size must be {smallest} pixels or more (the discriminator needs it), not "
                          f"{settings.size}.")
    return settings


def _start(studio: Studio, plan: VQGANTrainSettings | PriorTrainingConfig) -> _Training:
    """A new run of ``plan`` (its checks done and its folder made)."""
    if isinstance(plan, VQGANTrainSettings):
        training = VQGANTraining.start(plan)
        return _Training(vqgan_events(training), training.run_folder, LossCurves(offset=training.step), plan.steps,
                         training)
    return _prior(PriorTraining(plan, out_dir=studio.outputs_dir, device=studio.device,
                                weights_dir=studio.weights_dir, offline=studio.offline))


def _resumed(studio: Studio, folder: Path, steps: int) -> _Training:
    """The run in ``folder`` resumed, to train up to step ``steps``."""
    if folder.name.startswith(f"{RUN_PREFIX}-"):
        training = VQGANTraining.resume(folder, {"steps": steps, "sample_every": _grids(steps),
                                                 "device": str(studio.device), "weights_dir": _weights(studio),
                                                 "offline": studio.offline})
        if training.step >= steps:
            raise InputError(f"{folder.name} is already at step {training.step}; give more steps than that to "
                             "train on.")
        return _Training(vqgan_events(training), folder, LossCurves(offset=training.step), steps, training)
    config = resume_config(folder, steps=steps, val_every=_every(steps, 20), sample_every=_every(steps, 10))
    return _prior(PriorTraining(config, out_dir=studio.outputs_dir, device=studio.device,
                                weights_dir=studio.weights_dir, offline=studio.offline, resume=folder))


def _prior(prior: PriorTraining) -> _Training:
    """A prior's run with its first event (the notice naming its folder) taken: its checks
    have run (mistakes are said here) and its folder exists."""
    events = prior.run()
    next(events)
    assert prior.folder is not None
    return _Training(events, prior.folder, LossCurves(prior=True), prior.config.steps)


def _make_room(studio: Studio) -> None:
    """On a GPU, move the studio's loaded models to the computer's memory (still loaded: the
    next job that needs them brings them back), so the training has the GPU's memory."""
    if studio.device.type != "cuda":
        return
    for models in (studio.text_to_image, studio.sampler.prior if studio.sampler is not None else None):
        if models is not None:
            models.to("cpu")
    torch.cuda.empty_cache()


def said_for_the_form(text: str) -> str:
    """A training sentence written for the command line, its flags named as this tab names its
    fields (``--size 20 is not a multiple ...``: ``size 20 is not a multiple ...``)."""
    return _FLAG.sub(lambda flag: _FORM_WORDS.get(flag[0], flag[0]), text)


@contextlib.contextmanager
def _form_words() -> Iterator[None]:
    """Say the training's errors in the form's words (:func:`said_for_the_form`)."""
    try:
        yield
    except GeneratorError as error:
        error.args = (said_for_the_form(str(error)),)
        raise


def _progress_text(step: int, total: int, loss: float | None, first: tuple[int, float]) -> str:
    text = f"step {step}/{total}" + (f" · loss {loss:.4f}" if loss is not None else "")
    done = step - first[0]
    if 0 < done and step < total:
        left = (time.monotonic() - first[1]) / done * (total - step)
        minutes, seconds = divmod(int(left + 0.5), 60)
        text += f" · {minutes}:{seconds:02d} left"
    return text


def _enlarged(image: Image.Image) -> Image.Image:
    """A small grid scaled up by a whole factor (crisp pixels) to about :data:`PREVIEW_WIDTH`."""
    factor = max(1, PREVIEW_WIDTH // max(image.width, 1))
    return image if factor == 1 else image.resize((image.width * factor, image.height * factor),
                                                  Image.Resampling.NEAREST)


def _vqgan_choices(studio: Studio, kind: str = "vqgan") -> list[tuple[str, str]]:
    """The VQGAN menu: its empty entry (what it means for ``kind``), then the VQGANs."""
    return [(_NONE[kind], ""), *model_choices("vqgan", studio.weights_dir)]


def _whole(value: Any, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value):
        raise InputError(f"give the {label} as a whole number.")
    return int(value)


def _grids(steps: int) -> int:
    """Steps between a VQGAN's reconstruction grids: about 20 in a run, at least one every 100 steps."""
    return min(_every(steps, 20), 100)


def _every(steps: int, times: int) -> int:
    """Steps between grids (or validations) so that a run of ``steps`` has about ``times``."""
    return max(1, math.ceil(max(steps, 1) / times))


def _weights(studio: Studio) -> str | None:
    return str(studio.weights_dir) if studio.weights_dir is not None else None


def _is_training_run(name: str) -> bool:
    return name.startswith((f"{RUN_PREFIX}-", FOLDER_PREFIX))


def _last_active(folder: Path) -> float:
    times = [path.stat().st_mtime for path in (folder / "config.json", folder / "metrics.jsonl") if path.is_file()]
    return max(times, default=0.0)
