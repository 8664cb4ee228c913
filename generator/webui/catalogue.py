"""Model lists for the web UI's dropdowns: what is installed first, and how to get the rest.

Registry entries are listed in registry order, each marked installed or not; files of the
weights folder that are not registry files are listed too (the user's own checkpoints).
Nothing here touches the network or hashes a file: "installed" means the file and its
companions (a VQGAN's yaml) are present; their checksums are verified when they load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from generator.errors import WeightsError
from generator.sample.loader import transformer_registry_name
from generator.weights import store
from generator.weights.download import PART_SUFFIX

KINDS = ("vqgan", "transformer", "upscaler", "clip")
"""The kinds :func:`model_choices` lists (the store's kinds that a model field can take)."""

CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt", ".safetensors")
_YAML_SUFFIXES = (".yaml", ".yml")
# Which local (non-registry) files can serve as each kind, from their suffix and their yaml
# (a .yaml of the same stem beside them): VQGANs and priors come with one, upscalers do not,
# and a prior's project yaml names its transformer_config.
_LOCAL_RULES = {
    "vqgan": lambda path, yaml: path.suffix in (".ckpt", ".safetensors") or yaml is not None,
    "transformer": lambda path, yaml: path.suffix == ".ckpt" and yaml is not None and "transformer_config" in yaml,
    "upscaler": lambda path, yaml: path.suffix in (".pth", ".pt", ".safetensors") and yaml is None,
    "clip": lambda path, yaml: False,  # a CLIP file needs its architecture name: registry only
}
_YAML_PEEK = 65_536  # bytes of a yaml read to tell a prior's project yaml from a VQGAN's
INSTALLED = "installed"
SEPARATOR = " · "


@dataclass(frozen=True)
class Choice:
    """One dropdown entry.

    Attributes:
        value: a registry name, or the absolute path of a file in the weights folder.
        label: what the dropdown shows (the name and whether it is installed).
        installed: whether it can be used without a download.
    """

    value: str
    label: str
    installed: bool


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")


def _missing_parts(entry: store.WeightFile, root: Path) -> list[store.WeightFile]:
    """``entry`` and its companions whose files are not in ``root``."""
    parts = [entry, *(store.REGISTRY[name] for name in entry.companions)]
    return [part for part in parts if not store.locate(part, root).is_file()]


def _download_size(parts: list[store.WeightFile]) -> str | None:
    """The total size of ``parts`` (None when a size is not published)."""
    sizes = [part.size for part in parts]
    return store.format_size(sum(sizes)) if all(size is not None for size in sizes) else None


def _registry_files() -> set[str]:
    """Every file name (and alias) a registry entry is saved under."""
    return {name for entry in store.REGISTRY.values() for name in (entry.filename, *entry.aliases)}


def local_files(kind: str, weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Files directly in the weights folder that can serve as ``kind`` but are no registry
    file, sorted by name (hidden files, partial downloads and sidecars are skipped).

    Args:
        kind: one of :data:`KINDS`.
        weights_dir: the weights folder override (``--weights-dir``).

    Returns:
        Absolute paths.
    """
    _check_kind(kind)
    root = store.weights_dir(weights_dir)
    if not root.is_dir():
        return []
    known = _registry_files()
    found = []
    for path in sorted(root.iterdir(), key=lambda p: p.name):
        if (path.name.startswith(".") or path.name in known or path.suffix not in CHECKPOINT_SUFFIXES
                or path.name.endswith(PART_SUFFIX) or not path.is_file()):
            continue
        if _LOCAL_RULES[kind](path, _yaml_beside(path)):
            found.append(path)
    return found


def _yaml_beside(path: Path) -> str | None:
    """The start of the ``<stem>.yaml`` beside ``path`` (None when there is none)."""
    for suffix in _YAML_SUFFIXES:
        try:
            with open(path.with_suffix(suffix), encoding="utf-8", errors="replace") as handle:
                return handle.read(_YAML_PEEK)
        except OSError:
            continue
    return None


def _not_installed_note(entry: store.WeightFile, root: Path) -> str:
    missing = _missing_parts(entry, root)
    if any(part.manual for part in missing):
        return "not installed (download by hand)"
    size = _download_size(missing)
    return f"not installed ({size} download)" if size else "not installed (downloads on first use)"


def choices(kind: str, weights_dir: str | os.PathLike[str] | None = None) -> list[Choice]:
    """Every model that can serve as ``kind``: installed ones first (registry entries in
    registry order, then the weights folder's own files by name), then the registry entries
    that are not installed, in registry order.

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`.
    """
    _check_kind(kind)
    root = store.weights_dir(weights_dir)
    installed, missing = [], []
    for name in store.names_of_kind(kind):
        entry = store.REGISTRY[name]
        if not _missing_parts(entry, root):
            installed.append(Choice(name, f"{name}{SEPARATOR}{INSTALLED}", True))
        else:
            missing.append(Choice(name, f"{name}{SEPARATOR}{_not_installed_note(entry, root)}", False))
    own = [Choice(str(path), f"{path.name}{SEPARATOR}in the weights folder", True)
           for path in local_files(kind, root)]
    return installed + own + missing


def model_choices(kind: str, weights_dir: str | os.PathLike[str] | None = None) -> list[tuple[str, str]]:
    """``(label, value)`` pairs for a ``gr.Dropdown(choices=...)`` of ``kind`` models, installed
    first (see :func:`choices`); e.g. ``("realesr_general_x4v3 · installed", "realesr_general_x4v3")``,
    ``("realesrgan_x4plus · not installed (67.0 MB download)", "realesrgan_x4plus")`` or
    ``("mine.ckpt · in the weights folder", "/srv/weights/mine.ckpt")``.

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`.
    """
    return [(choice.label, choice.value) for choice in choices(kind, weights_dir)]


def model_hint(kind: str, value: str | None, weights_dir: str | os.PathLike[str] | None = None,
               offline: bool | None = None) -> str:
    """What the user must know about a chosen model before pressing a button.

    Args:
        kind: one of :data:`KINDS`.
        value: the field's value: a registry name (or another tool's name for it) or a path.
            Check a typed path with :class:`generator.webui.paths.PathPolicy` first on a
            server reachable by others: this function says whether a path is a file.
        weights_dir: the weights folder override (``--weights-dir``).
        offline: the server's ``--offline`` (None: ``$GENERATOR_OFFLINE``).

    Returns:
        ``""`` when the value is installed or an existing file (or empty: the default is
        used), else one sentence on how to get it.

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`.
    """
    _check_kind(kind)
    text = str(value or "").strip()
    if not text:
        return ""
    root = store.weights_dir(weights_dir)
    try:
        entry = store.get(transformer_registry_name(text) if kind == "transformer" else text)
    except WeightsError:  # not a registry name: a path
        entry = None
    if entry is None:
        if Path(text).expanduser().is_file():
            return ""
        return (f"{_show(text)} is neither a registry {kind} name nor a file on this server; choose one from "
                "the list.")
    if entry.kind not in store.SERVES[kind]:
        return f"{entry.name} is {entry.kind} weights, not {kind} weights; choose a {kind} from the list."
    missing = _missing_parts(entry, root)
    if not missing:
        return ""
    manual = next((part for part in missing if part.manual), None)
    if manual is not None:
        return store.manual_instructions(manual, store.locate(manual, root))
    command = f"`{store.DOWNLOAD_COMMAND} {entry.name}`"
    if store.offline_mode(offline):
        return (f"{entry.name} is not in the weights folder and --offline is set; download it with {command} on "
                "a machine with internet into the server's weights folder, or choose an installed model.")
    size = _download_size(missing)
    return (f"{entry.name} is not downloaded yet; it downloads on first use{f' ({size})' if size else ''}, "
            f"or run {command} on the server.")


def _show(text: str) -> str:
    """``text`` quoted for a message, shortened when long."""
    return repr(text if len(text) <= 60 else text[:57] + "...")
