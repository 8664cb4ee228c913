"""Pieces shared by every ``python -m generator`` subcommand."""

from __future__ import annotations

import argparse
import logging
import sys


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


class _Formatter(logging.Formatter):
    """Plain information lines; ``warning: ...`` and ``error: ...`` for the rest."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


def configure_logging(verbose: bool = False) -> None:
    """Diagnostics go to stderr through ``logging``: this package's at INFO (DEBUG when
    verbose), other libraries' only from WARNING up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("generator").setLevel(logging.DEBUG if verbose else logging.INFO)
