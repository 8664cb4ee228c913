"""``python -m generator presets [NAME]``: the presets, their descriptions and settings."""

from __future__ import annotations

import argparse
import json

from generator import modes
from generator.presets import list_presets, load_preset


def build_parser(prog: str) -> argparse.ArgumentParser:
    """Parser of the ``presets`` subcommand."""
    parser = argparse.ArgumentParser(prog=prog, description="List the presets with their settings.")
    parser.add_argument("name", nargs="?", help="show this preset's complete resolved config as JSON")
    return parser


def _flatten(settings: dict, prefix: str = "") -> list[str]:
    items = []
    for key, value in settings.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={json.dumps(value)}")
    return items


def run(args: argparse.Namespace) -> int:
    """Print every preset (or one preset's full config)."""
    if args.name:
        print(json.dumps(load_preset(args.name).config().to_dict(), indent=2))
        return 0
    for name in list_presets():
        preset = load_preset(name)
        where = "" if preset.kind == modes.DEFAULT.name else f" [{preset.kind}]"
        print(f"{name}{where}: {preset.description}")
        settings = _flatten(dict(preset.settings))
        print("    " + ("; ".join(settings) if settings else "(the defaults)"))
    print("\nUse one with --preset NAME (sample presets with `sample --preset NAME`); flags override it.\n"
          "`presets NAME` shows every setting.")
    return 0
