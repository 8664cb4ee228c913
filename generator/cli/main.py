"""Command-line entry point: ``python -m generator [COMMAND] ...``.

Each mode of the registry (:mod:`generator.modes`) brings its command (its ``cli.py``); a few
more commands serve them all (``batch``, ``download``, ``presets``). Without a command the
arguments go to the default mode (``python -m generator "city at night"`` is text to image).
A command's module exposes ``build_parser(prog)`` and ``run(args)`` (``run`` may take
``make_pipeline``, which tests pass); this module dispatches and turns errors into one
``error:`` line and a non-zero exit code.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence

from generator import modes
from generator.cli.common import configure_logging
from generator.devices import use_threads
from generator.errors import GeneratorError

TOOLS = {
    "batch": ("generator.cli.batch", "many images: a prompts/JSONL/CSV file of jobs, seeds, batches, Ray"),
    "grid": ("generator.cli.grid", "an X/Y grid: every combination of two settings' values, one labelled image"),
    "download": ("generator.cli.download", "fetch registry weights, or list them with --list"),
    "presets": ("generator.cli.presets", "list the presets and their settings"),
}
"""The commands that are no mode of their own: (module, summary)."""

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def commands() -> dict[str, tuple[str, str]]:
    """Every command: the modes' (and their aliases), then the tools: (module, summary)."""
    found: dict[str, tuple[str, str]] = {}
    for mode in modes.MODES.values():
        if mode.cli is not None:
            for command in mode.commands:
                found[command] = (mode.cli, mode.summary)
    return {**found, **TOOLS}


def listing() -> list[str]:
    """``  COMMAND    summary`` lines of every command (aliases left out)."""
    shown = [(mode.command, mode.summary) for mode in modes.MODES.values() if mode.cli is not None]
    shown += [(name, summary) for name, (_, summary) in TOOLS.items()]
    return [f"  {name:<14} {summary}" for name, summary in shown]


def _usage() -> str:
    lines = ['usage: python -m generator "PROMPT" [options]', "       python -m generator COMMAND [options]",
             "", "commands:", *listing(),
             "", f"Run `python -m generator --help` for the {modes.DEFAULT.title.lower()} options and",
             "`python -m generator COMMAND --help` for a command's."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, *, make_pipeline: Callable | None = None) -> int:
    """Run the CLI and return its exit code (0 on success).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        make_pipeline: builds the TextToImage pipeline (tests pass tiny models).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    if not args:
        print(_usage(), file=sys.stderr)
        return EXIT_ERROR
    known = commands()
    name = args[0] if args[0] in known else modes.DEFAULT.command
    rest = args[1:] if args[0] in known else args
    module = importlib.import_module(known[name][0])
    mode = modes.for_command(name)
    prog = "python -m generator" if mode is modes.DEFAULT and name not in args[:1] else f"python -m generator {name}"
    parsed = module.build_parser(prog).parse_args(rest)
    hooks = {"make_pipeline": make_pipeline} if "make_pipeline" in inspect.signature(module.run).parameters else {}
    try:
        if hasattr(parsed, "threads"):  # the commands that compute (batch's Ray workers choose their own)
            use_threads(parsed.threads)
        return module.run(parsed, **hooks)
    except GeneratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
