"""Pieces shared by every ``python -m generator`` subcommand."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generator import modes
from generator.errors import ConfigError
from generator.io.outputs import config_from_png, mode_of_output
from generator.presets import load_preset

if TYPE_CHECKING:
    from generator.workbench import Workbench


def workbench_from_args(args: argparse.Namespace) -> Workbench:
    """The run's one owner of models, with the ``--device``, ``--weights-dir`` and ``--offline`` given."""
    from generator.workbench import Workbench  # the models' code, imported once a run needs it

    return Workbench(getattr(args, "device", "auto"), weights_dir=args.weights_dir, offline=args.offline)


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """``--weights-dir`` and ``--offline``, accepted by every command that may need weights."""
    group = parser.add_argument_group("weights")
    group.add_argument(
        "--weights-dir",
        metavar="DIR",
        default=None,
        help="where registry weights are kept and downloaded "
        "(default: $GENERATOR_WEIGHTS_DIR, else weights/ in the checkout)",
    )
    group.add_argument(
        "--offline",
        action="store_true",
        default=None,
        help="never use the network; a missing file is an error that names the command "
        "fetching it (also: GENERATOR_OFFLINE=1)",
    )


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads in this process (applied by the CLI's ``main``)."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default or 0: the cores this process may use that other "
                             "processes leave free)")


class _Formatter(logging.Formatter):
    """Plain information lines; ``warning: ...`` and ``error: ...`` for the rest."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


def _not_open_clip_random_init(record: logging.LogRecord) -> bool:
    """open_clip warns that a model "initialized randomly" (or found "no CLIP weights") every
    time the CLIP loader builds one; the loader loads the weights itself right after, so the
    lines only mislead."""
    message = record.getMessage()
    return not message.startswith(("No pretrained weights loaded for model", "Local config loaded, but no CLIP"))


def configure_logging(verbose: bool = False) -> None:
    """Diagnostics go to stderr through ``logging``: this package's at INFO (DEBUG when
    verbose), other libraries' only from WARNING up. Front ends call this; the library
    never touches the logging configuration."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(message)s"))
    handler.addFilter(_not_open_clip_random_init)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("generator").setLevel(logging.DEBUG if verbose else logging.INFO)


def add_upscale_arguments(parser: argparse.ArgumentParser, default: object) -> None:
    """``--upscale FACTOR`` and its companions, for commands whose results can be upscaled."""
    group = parser.add_argument_group("upscaling (ESRGAN)")
    group.add_argument("--upscale", type=float, default=default, metavar="FACTOR",
                       help="also save a copy upscaled by FACTOR (e.g. 4) beside each result")
    group.add_argument("--upscale-model", default=default, metavar="NAME|PATH",
                       help="registry upscaler (default realesrgan_x4plus) or an ESRGAN-family file")
    group.add_argument("--upscale-tile", type=int, default=default, metavar="PX", help="tile size (0: whole image)")
    group.add_argument("--upscale-tile-pad", type=int, default=default, metavar="PX", help="context around each tile")
    group.add_argument("--upscale-denoise", type=float, default=default, metavar="S",
                       help="denoise strength 0..1 (realesr_general_x4v3 only)")
    group.add_argument("--upscale-seamless", default=default, metavar="x|y|xy",
                       help="the result wraps around along these axes: upscale it so copies tile without a seam")


def base_settings(from_output: str | None, preset: str | None, *, kind: str,
                  default_preset: str | None = None) -> dict[str, Any]:
    """The settings flags are laid over: the config embedded in ``--from``, else ``--preset``
    (or ``default_preset``), else nothing.

    Raises:
        ConfigError: both given, or ``--from`` names an output another command made (the
            message gives the command that repeats it).
    """
    if from_output and preset:
        raise ConfigError("give --from or --preset, not both: --from already holds every setting.")
    if from_output:
        recorded = mode_of_output(Path(from_output))
        mode = modes.recorded(recorded)
        if mode is None or mode.name != kind:
            if mode is None or mode.cli is None or not mode.loadable and mode.outputs is None:
                raise ConfigError(f"{from_output} was made by {recorded}, which --from cannot repeat.")
            command = "python -m generator" + ("" if mode.default else f" {mode.command}")
            raise ConfigError(f"{from_output} was made by `{command}`; repeat it with "
                              f"`{command} --from {from_output}`.")
        return mode.recorded_settings(config_from_png(Path(from_output)), Path(from_output).parent)
    name = preset or default_preset
    return dict(load_preset(name, kind=kind).settings) if name else {}
