"""What a mode of the studio is: one descriptor per mode, registered in :mod:`generator.modes`.

A mode (text to image, animate, sample, upscale, ...) is one folder: its config, pipeline,
the files its runs write (``outputs``), its command-line command (``cli``) and its web UI tab
(``tab``). The descriptor tells the front ends, presets, ``--from`` and batch everything they
need to know of it, so none of them names a mode: the command line lists its commands, the web
UI lays out its tabs, the gallery loads settings into the right tab and ``--from`` finds the
command that repeats an output, all from the registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Mode:
    """One mode.

    Attributes:
        name: what runs of this mode record (``run.json``, the PNG text); never changes.
        title: for people: the web UI tab, listings.
        summary: one line for ``python -m generator --help``.
        config: its config dataclass (``from_dict``/``to_dict``), which presets, ``--from`` and
            the gallery build; None for a mode without one.
        outputs: how the driver writes its runs (``finish``, ``keep`` and optionally
            ``preview``, ``video`` and ``inputs(settings, folder)``, which finds the inputs a
            run kept in its folder); None for a mode that writes its files itself.
        command: its command-line command (``python -m generator COMMAND``).
        aliases: other commands that run it (kept for scripts written for older names).
        cli: the module of its command: ``build_parser(prog)`` and ``run(args, **hooks)``.
        tab: the module of its web UI tab: ``build(page, preset) -> TabParts``.
        api: the name of its main web UI endpoint (``/generate``: kept stable for API clients).
        presets: presets may be written for it (``"kind": name`` in a preset file).
        loadable: its settings can be loaded into its tab from the gallery or PNG info.
        default: ``python -m generator "PROMPT"`` (no command) runs it.
        run_folders: each run has a folder of its own (the gallery's unit, owned by who made
            it); False for a mode whose results go into a shared folder.
        job: ``"module:function"`` of its served job, ``job(studio, config, session, **inputs)``
            yielding :class:`~generator.webui.jobs.Update` s (the web UI's and the HTTP API's);
            None: not served.
        inputs: the files its job takes besides its config (``("image",)`` for upscale), which
            API clients upload.
        checks: ``"module:function"`` of ``checks(config)``, which raises the sentence of a
            mistake before anything loads (an empty prompt); None: its config's own checks.
    """

    name: str
    title: str
    summary: str
    config: type | None
    outputs: Any
    command: str
    cli: str | None = None
    tab: str | None = None
    api: str | None = None
    aliases: tuple[str, ...] = ()
    presets: bool = False
    loadable: bool = False
    default: bool = False
    run_folders: bool = True
    job: str | None = None
    inputs: tuple[str, ...] = ()
    checks: str | None = None

    def module(self, part: str) -> Any:
        """The imported module of ``part`` (``"cli"`` or ``"tab"``); front ends call this."""
        path = getattr(self, part)
        if path is None:
            raise LookupError(f"the {self.name} mode has no {part}")
        return importlib.import_module(path)

    def recorded_settings(self, settings: dict[str, Any], folder: Any) -> dict[str, Any]:
        """``settings`` an output in ``folder`` recorded, with the inputs its run kept there found
        again (unchanged for a mode that keeps none)."""
        inputs = getattr(self.outputs, "inputs", None)
        return inputs(settings, folder) if inputs is not None else settings

    def function(self, part: str) -> Any:
        """The function ``part`` (``"job"`` or ``"checks"``) names, imported; None when unset."""
        path = getattr(self, part)
        if path is None:
            return None
        module, _, name = path.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def commands(self) -> tuple[str, ...]:
        """Its command and aliases."""
        return (self.command, *self.aliases)
