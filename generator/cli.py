"""Command-line entry point: ``python -m generator [SUBCOMMAND] ...``.

Without a subcommand the arguments are a text-to-image run (``python -m generator "city at
night"``). Each subcommand lives in its own module exposing ``build_parser(prog)`` and
``run(args) -> int``; this module dispatches and turns errors into one line and an exit code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from generator.cli_common import configure_logging
from generator.errors import GeneratorError

SUBCOMMANDS = {
    "download": ("generator.cli_download", "fetch registry weights, or list them with --list"),
}

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _usage() -> str:
    lines = ["usage: python -m generator SUBCOMMAND [options]", "", "subcommands:"]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines.append("")
    lines.append("Run `python -m generator SUBCOMMAND --help` for a subcommand's options.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 on success)."""
    args = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else EXIT_ERROR
    name = args[0]
    if name not in SUBCOMMANDS:
        print(f"error: unknown subcommand {name!r}; choose one of {', '.join(SUBCOMMANDS)}.",
              file=sys.stderr)
        return EXIT_ERROR
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parsed = module.build_parser(f"python -m generator {name}").parse_args(args[1:])
    try:
        return module.run(parsed)
    except GeneratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
