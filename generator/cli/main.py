"""Command-line entry point: ``python -m generator [SUBCOMMAND] ...``.

Without a subcommand the arguments are a text-to-image run (``python -m generator "city at
night"``; ``generate`` may also be named explicitly). Each subcommand lives in its own module
exposing ``build_parser(prog)`` and ``run(args) -> int``; this module dispatches and turns
errors into one ``error:`` line and a non-zero exit code.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

from generator.cli.common import configure_logging
from generator.errors import GeneratorError

SUBCOMMANDS = {
    "generate": ("generator.cli.text_to_image", "text to image (the default when no subcommand is named)"),
    "animate": ("generator.cli.animate", "zoom/pan/rotate videos with keyframes, changing prompts, video restyle"),
    "sample": ("generator.cli.sample", "sample images from a Taming transformer prior"),
    "upscale": ("generator.cli.upscale", "upscale any image with an ESRGAN-family model"),
    "batch": ("generator.cli.batch", "many images: a prompts/JSONL/CSV file of jobs, seeds, batches, Ray"),
    "download": ("generator.cli.download", "fetch registry weights, or list them with --list"),
    "presets": ("generator.cli.presets", "list the presets and their settings"),
}

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _usage() -> str:
    lines = ['usage: python -m generator "PROMPT" [options]', "       python -m generator SUBCOMMAND [options]",
             "", "subcommands:"]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines += ["", "Run `python -m generator --help` for the text-to-image options and",
              "`python -m generator SUBCOMMAND --help` for a subcommand's."]
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
    name = args[0] if args[0] in SUBCOMMANDS else "generate"
    rest = args[1:] if args[0] in SUBCOMMANDS else args
    module = importlib.import_module(SUBCOMMANDS[name][0])
    prog = "python -m generator" if name == "generate" else f"python -m generator {name}"
    parsed = module.build_parser(prog).parse_args(rest)
    try:
        if name in ("generate", "animate", "batch"):
            return module.run(parsed, make_pipeline=make_pipeline)
        return module.run(parsed)
    except GeneratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
