"""``python -m generator download``: prefetch registry weights, or list them with ``--list``.

Without names it fetches the files the default pipeline needs; ``--all`` fetches every file
that can be downloaded automatically; names fetch those files (and their companions).
``--list`` prints the registry with each file's state on disk and never uses the network.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from generator.cli.common import add_weights_arguments
from generator.errors import WeightsError
from generator.weights import store
from generator.weights.download import tqdm_progress

EXIT_OK = 0
EXIT_MANUAL = 1


def build_parser(prog: str) -> argparse.ArgumentParser:
    """Parser of the ``download`` subcommand.

    Args:
        prog: Program name shown in usage lines.

    Returns:
        The argument parser.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Download registry weights into the weights directory, checking their "
        "sha256, or list the registry with --list.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME",
        help="registry names to fetch (default: the files the default pipeline uses)",
    )
    parser.add_argument("--list", action="store_true",
                        help="list every registry file with its state on disk; no network")
    parser.add_argument("--markdown", action="store_true",
                        help="with --list: print the registry as the Markdown table of weights/README.md")
    parser.add_argument("--all", action="store_true",
                        help="fetch every file that can be downloaded automatically")
    parser.add_argument("--kind", choices=store.KINDS, default=None,
                        help="only files of this kind (with --list, --all or no names)")
    add_weights_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``download`` with parsed arguments.

    Args:
        args: The namespace from :func:`build_parser`.

    Returns:
        0 when every requested file is present, 1 when a requested file must be fetched by hand.

    Raises:
        WeightsError: An unknown name, conflicting options, or a failed download.
    """
    root = store.weights_dir(args.weights_dir)
    if args.list:
        names = _filtered(list(store.REGISTRY), args.kind)
        print(markdown_table(names) if args.markdown else "", end="")
        if not args.markdown:
            _print_table(names, root)
        return EXIT_OK
    if args.names and args.all:
        raise WeightsError("give registry names or --all, not both; run the command with one.")
    requested = [store.get(name).name for name in args.names]
    if requested:
        selection = requested
    elif args.all:
        selection = [n for n, e in store.REGISTRY.items() if not e.manual]
    else:
        selection = [n for n, e in store.REGISTRY.items() if e.default]
    selection = _filtered(selection, args.kind)
    if not selection:
        print(f"nothing to download (no {args.kind} files in this selection).")
        return EXIT_OK
    offline = store.offline_mode(args.offline)
    exit_code = EXIT_OK
    for name in _with_companions(selection):
        entry = store.get(name)
        path = store.locate(entry, root)
        if entry.manual and store.status(name, root) not in ("verified", "unverified"):
            print(store.manual_instructions(entry, path))
            exit_code = EXIT_MANUAL
            continue
        callback, close = tqdm_progress(entry.filename)
        try:
            path = store.ensure(name, weights_dir=root, offline=offline, progress=callback)
        finally:
            close()
        print(f"{name}: {store.status(name, root)} at {path}")
    return exit_code


def _filtered(names: list[str], kind: str | None) -> list[str]:
    """Names of the given kind (all of them when kind is None)."""
    return [n for n in names if kind is None or store.REGISTRY[n].kind == kind]


def _with_companions(names: list[str]) -> list[str]:
    """Each name preceded by its companions (so every file gets its own bar), without repeats."""
    ordered: list[str] = []

    def add(name: str) -> None:
        for companion in store.get(name).companions:
            add(companion)
        if name not in ordered:
            ordered.append(name)

    for name in names:
        add(name)
    return ordered


def _print_table(names: list[str], root: Path) -> None:
    """The registry as an aligned table, with each file's state in ``root``."""
    rows = [("NAME", "KIND", "SIZE", "SHA256", "STATUS", "FILE")]
    for name in names:
        entry = store.REGISTRY[name]
        state = store.status(name, root)
        if entry.manual:
            state += " (manual)"
        if entry.default:
            state += " (default)"
        found = store.locate(entry, root)
        rows.append((name, entry.kind, store.format_size(entry.size), (entry.sha256 or "-")[:12], state,
                     found.name if found.is_file() else entry.filename))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    print(f"weights directory: {root}")
    for row in rows:
        # the last column is not padded
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]))
    print(f"fetch with `{store.DOWNLOAD_COMMAND} NAME`; files marked manual must be "
          "downloaded by hand (run the command with their name for instructions); where each hash "
          "comes from: `--list --markdown` or weights/README.md.")


def markdown_table(names: list[str]) -> str:
    """The registry as the Markdown table in weights/README.md (kept equal by a test)."""
    lines = ["| name | kind | size | sha256 | where the hash comes from | licence | source |",
             "| --- | --- | ---: | --- | --- | --- | --- |"]
    for name in names:
        entry = store.REGISTRY[name]
        marks = " (default)" * entry.default + " (by hand)" * entry.manual
        also = f" (also as {', '.join(f'`{a}`' for a in entry.aliases)})" if entry.aliases else ""
        digest = f"`{entry.sha256[:16]}…`" if entry.sha256 and len(entry.sha256) > 16 else \
            f"`{entry.sha256}` (prefix)" if entry.sha256 else "—"
        sources = ", ".join(f"[{url.split('/')[2]}]({url})" for url in entry.urls)
        lines.append(f"| `{name}`{marks}{also} | {entry.kind} | {store.format_size(entry.size)} | {digest} | "
                     f"{entry.sha256_source or '—'} | {entry.licence or '—'} | {sources} |")
    return "\n".join(lines) + "\n"
