"""``python -m generator train prior``: a transformer prior on your own images.

    python -m generator train prior --vqgan vqgan_imagenet_f16_16384 --data my-images/ --steps 5000
    python -m generator train prior --vqgan my.ckpt --data faces-by-person/ --conditioning class --size 128
    python -m generator train prior --resume outputs/train-prior-my-images-20260101-120000 --steps 8000

The ``train`` command's module adds these flags to its ``prior`` subcommand with
:func:`add_prior_arguments` and runs it with :func:`run_prior`. The training itself is
:class:`generator.train.prior_training.PriorTraining`; this module is its console: a tqdm bar
with the training loss, the last validation loss and an ETA, notices above it, and a first
Ctrl-C that stops after the current step with the training state saved (a second stops at once).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from generator.devices import pick_device
from generator.errors import ConfigError
from generator.events import Event, Notice, Progress, drain
from generator.train.prior_settings import CONDITIONINGS, PRECISIONS, PriorTrainingConfig, resume_config
from generator.train.prior_training import PriorTraining

_DEFAULTS = PriorTrainingConfig(vqgan="-", data="-")
_CONFIG_FLAGS = ("vqgan", "data", "vqgan_config", "conditioning", "size", "steps", "batch_size", "lr", "weight_decay",
                 "grad_clip", "n_layer", "n_head", "n_embd", "val_fraction", "val_every", "sample_every",
                 "sample_count", "save_every", "seed", "precision", "name")


def add_prior_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the prior's flags (named after :class:`PriorTrainingConfig`'s fields) to ``parser``, and
    ``--out``, ``--device``, ``--weights-dir``, ``--offline`` and ``--threads`` unless it has them."""
    d = _DEFAULTS
    data = parser.add_argument_group("data and model")
    data.add_argument("--vqgan", metavar="NAME|PATH", help="the VQGAN whose codes the prior learns: a registry name "
                      "or checkpoint file (required unless --resume)")
    data.add_argument("--vqgan-config", metavar="YAML", help="the VQGAN's yaml (default: beside the checkpoint)")
    data.add_argument("--data", metavar="FOLDER", help="the training images; one sub-folder per class for "
                      "--conditioning class (required unless --resume)")
    data.add_argument("--conditioning", choices=CONDITIONINGS, help=f"sos: unconditional (one start token); class: "
                      f"one class per sub-folder, as ImageNet cIN (default: {d.conditioning})")
    data.add_argument("--size", type=int, metavar="PX", help="images are centre-cropped and resized to PX x PX, a "
                      f"multiple of the VQGAN's factor; the prior's window is PX/f codes square (default: {d.size})")
    data.add_argument("--n-layer", type=int, metavar="N", help=f"transformer layers (default: {d.n_layer})")
    data.add_argument("--n-head", type=int, metavar="N", help=f"attention heads (default: {d.n_head})")
    data.add_argument("--n-embd", type=int, metavar="N", help=f"embedding width (default: {d.n_embd})")
    data.add_argument("--name", metavar="NAME", help="the run's and the checkpoint's name (default: the data "
                      "folder's name)")
    train = parser.add_argument_group("training")
    train.add_argument("--steps", type=int, metavar="N", help=f"optimisation steps in all; with --resume, train on to "
                       f"N (default: {d.steps})")
    train.add_argument("--batch-size", type=int, metavar="N", help=f"sequences per step (default: {d.batch_size})")
    train.add_argument("--lr", type=float, metavar="LR", help=f"AdamW learning rate (default: {d.lr})")
    train.add_argument("--weight-decay", type=float, metavar="W",
                       help=f"AdamW weight decay of the linear layers (default: {d.weight_decay})")
    train.add_argument("--grad-clip", type=float, metavar="NORM",
                       help=f"largest gradient norm, 0: off (default: {d.grad_clip})")
    train.add_argument("--val-fraction", type=float, metavar="F",
                       help=f"share of the images held out for the validation loss (default: {d.val_fraction})")
    train.add_argument("--val-every", type=int, metavar="N", help=f"steps between validation losses (default: "
                       f"{d.val_every})")
    train.add_argument("--sample-every", type=int, metavar="N", help=f"steps between sample grids, "
                       f"samples-<step>.png (default: {d.sample_every})")
    train.add_argument("--sample-count", type=int, metavar="N", help=f"images per sample grid, per class for a "
                       f"class prior (default: {d.sample_count})")
    train.add_argument("--save-every", type=int, metavar="N", help=f"steps between saved training states "
                       f"(default: {d.save_every})")
    train.add_argument("--seed", type=int, metavar="N", help="seed of every random draw (default: random, recorded)")
    train.add_argument("--precision", choices=PRECISIONS, help="auto: bf16 autocast on GPUs that have it, else "
                       "float32 (default: auto)")
    train.add_argument("--resume", metavar="RUN_FOLDER", help="continue a stopped run (its recorded settings; "
                       "only --steps and the --*-every flags may change)")
    _add_if_missing(parser, "--out", default="outputs", metavar="DIR",
                    help="the parent of the run folder train-prior-<name>-<time>/ (default: outputs)")
    _add_if_missing(parser, "--device", default="auto", metavar="DEVICE", help="auto, cpu, cuda or cuda:N")
    _add_if_missing(parser, "--weights-dir", default=None, metavar="DIR",
                    help="where registry weights are kept (default: $GENERATOR_WEIGHTS_DIR, else weights/)")
    _add_if_missing(parser, "--offline", action="store_true", default=None, help="never use the network")
    _add_if_missing(parser, "--threads", type=int, default=None, metavar="N",
                    help="CPU threads for torch (default: the cores other processes leave free)")


def _add_if_missing(parser: argparse.ArgumentParser, flag: str, **options: Any) -> None:
    """Add a flag the ``train`` command may already give every subcommand."""
    with contextlib.suppress(argparse.ArgumentError):
        parser.add_argument(flag, **options)


def config_from_args(args: argparse.Namespace) -> tuple[PriorTrainingConfig, str | None]:
    """(the training settings, the run folder to resume or None) from parsed flags.

    Raises:
        ConfigError: neither ``--resume`` nor both ``--vqgan`` and ``--data``; an invalid value.
    """
    given = {name: getattr(args, name, None) for name in _CONFIG_FLAGS}
    resume = getattr(args, "resume", None)
    if resume:
        return resume_config(resume, **given), resume
    if not given["vqgan"] or not given["data"]:
        raise ConfigError("train prior needs --vqgan MODEL and --data FOLDER (or --resume RUN_FOLDER).")
    return PriorTrainingConfig(**{name: value for name, value in given.items() if value is not None}), None


def run_prior(args: argparse.Namespace) -> int:
    """Train a prior as ``args`` say, drawing a progress bar on stderr; 0 when it finished.

    Raises:
        GeneratorError: a bad input (one sentence), before any folder is made where possible.
        KeyboardInterrupt: Ctrl-C; the training state of the last finished step is saved.
    """
    config, resume = config_from_args(args)
    training = PriorTraining(config, out_dir=getattr(args, "out", None) or "outputs",
                             device=pick_device(getattr(args, "device", None)),
                             weights_dir=getattr(args, "weights_dir", None), offline=getattr(args, "offline", None),
                             resume=resume)
    bars: dict[str, tqdm] = {}
    run = training.run()
    try:
        with logging_redirect_tqdm(), _stop_requests() as stop:

            def show(event: Event) -> None:
                if isinstance(event, Progress):
                    _show(bars, event)
                elif isinstance(event, Notice):
                    tqdm.write(f"note: {event.message}", file=sys.stderr)
                if stop.is_set():  # Ctrl-C waits for the step under way: the run is closed below
                    raise KeyboardInterrupt

            result = drain(run, show)
    except KeyboardInterrupt:
        run.close()  # saves the training state of the step just finished
        for bar in bars.values():
            bar.close()
        if training.folder is not None:
            tqdm.write(f"stopped; continue with: python -m generator train prior --resume {training.folder}",
                       file=sys.stderr)
        raise
    finally:
        for bar in bars.values():
            bar.close()
    training.place.close()
    if not training.place.main:  # under torchrun the first process says what was made
        return 0
    classes = ", ".join(f"{index} {name}" for index, name in enumerate(result.classes))
    lines = [f"trained prior: {result.checkpoint} (with {result.config_file.name})",
             f"  in the weights folder as {result.registered.name}, where the menus list it",
             f"  validation loss {result.val_loss:.4f}" if result.val_loss is not None else "",
             f"  sample it: python -m generator sample --model {result.registered}"
             + (f" --class N   (classes: {classes})" if config.conditioning == "class" else "")]
    tqdm.write("\n".join(line for line in lines if line), file=sys.stderr)
    return 0


def _show(bars: dict[str, tqdm], event: Progress) -> None:
    """One bar per stage (encoding, training), with the losses beside it."""
    bar = bars.get(event.stage)
    if bar is None:
        for other in bars.values():
            other.close()
        description = {"encode": "encoding images", "train": "training"}.get(event.stage, event.stage)
        bar = bars[event.stage] = tqdm(total=event.total, initial=0 if event.stage == "encode" else event.step - 1,
                                       desc=description, unit="image" if event.stage == "encode" else "step",
                                       file=sys.stderr, dynamic_ncols=True)
    bar.update(event.step - bar.n)
    if event.loss is not None:
        postfix = {"loss": f"{event.loss:.4f}"}
        if "val_loss" in event.losses:
            postfix["val"] = f"{event.losses['val_loss']:.4f}"
        bar.set_postfix(postfix, refresh=False)


@contextlib.contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C (the run stops after its current step); a second Ctrl-C
    raises KeyboardInterrupt at once. Outside the main thread: never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        tqdm.write("stopping after this step (Ctrl-C again to stop at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)

