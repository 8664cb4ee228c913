"""Inputs a run keeps beside its result: the images and masks it was given, copied into its run
folder and named there by file name in the recorded config, so the run repeats from its PNG
(``--from``, the gallery) after the originals are moved or deleted."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from generator.errors import InputError
from generator.io.images import open_image
from generator.io.outputs import RunWriter

logger = logging.getLogger(__name__)

Field = tuple[tuple[str, ...], str]
"""Where an input is in a plain config (the keys down to it) and the name of its copy."""


def keep_file(writer: RunWriter, source: str, name: str) -> str:
    """Copy the image ``source`` into the run folder as ``name`` (a PNG) and return ``name``; an
    input that can no longer be read keeps its original name, with a warning (the result
    matters more than the copy)."""
    try:
        writer.write_image(open_image(source, what="input"), name)
    except InputError as error:
        logger.warning("could not keep %s beside the result: %s", source, error)
        return source
    return name


def keep_inputs(writer: RunWriter, config: dict[str, Any], fields: list[Field]) -> dict[str, Any]:
    """Keep the inputs at ``fields`` of ``config`` (changed in place, and returned)."""
    for keys, name in fields:
        section = _section(config, keys)
        if section is not None and isinstance(section.get(keys[-1]), str):
            section[keys[-1]] = keep_file(writer, section[keys[-1]], name)
    return config


def find_inputs(settings: dict[str, Any], folder: Path, fields: list[Field]) -> dict[str, Any]:
    """Name the inputs at ``fields`` that ``folder`` kept by their full paths (changed in
    place, and returned); a value that is not a kept file's name is left as it is."""
    for keys, name in fields:
        section = _section(settings, keys)
        if section is not None and section.get(keys[-1]) == name and (folder / name).is_file():
            section[keys[-1]] = str(folder / name)
    return settings


def _section(config: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """The mapping that holds the last of ``keys``, or None."""
    section: Any = config
    for key in keys[:-1]:
        section = section.get(key) if isinstance(section, Mapping) else None
    return section if isinstance(section, dict) else None
