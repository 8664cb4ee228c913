"""The files of a reconstruction: ``final.png`` (the reconstruction, its config embedded),
``input.png`` (the image as it went in) and ``compare.png`` (the two side by side)."""

from __future__ import annotations

from pathlib import Path

from generator.events import Done
from generator.io.images import contact_sheet
from generator.io.outputs import RunWriter
from generator.runs import GenerationRun, RunState


class ReconstructOutputs:
    """How the driver writes a reconstruction."""

    @staticmethod
    def finish(writer: RunWriter, done: Done, state: RunState) -> Path:
        reconstruction, original = done.images
        writer.write_image(original, "input.png")
        writer.write_image(contact_sheet([original, reconstruction], columns=2), "compare.png")
        return writer.write_final(reconstruction, config=done.config, prompt=state.label, seed=done.seed,
                                  mode=state.mode)

    @staticmethod
    def keep(writer: RunWriter, run: GenerationRun) -> Path | None:
        """A reconstruction stops before it has an image, or not at all: nothing to keep."""
        return None
