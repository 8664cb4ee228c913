"""Edits are text-to-image runs of an image with a mask or an outpaint (see
:mod:`generator.text_to_image.edit`), recorded as edits so they repeat in the Edit tab and with
``python -m generator edit --from``."""

from __future__ import annotations

from generator.config import GenerationConfig, ModelsConfig
from generator.edit.mode import EDIT
from generator.errors import InputError
from generator.runs import GenerationRun
from generator.text_to_image.pipeline import TextToImage
from generator.workbench import Workbench


class Editor:
    """Edits made with the models of a :class:`TextToImage`."""

    def __init__(self, pipeline: TextToImage):
        self.pipeline = pipeline

    @classmethod
    def from_workbench(cls, models: ModelsConfig | None, bench: Workbench) -> Editor:
        """The editor of the models ``models`` names, from ``bench``."""
        return cls(TextToImage.from_workbench(models, bench))

    def run(self, config: GenerationConfig) -> GenerationRun:
        """Start an edit of ``config.init.init_image``; nothing happens until it is iterated.

        Raises:
            InputError: the config asks for no edit (neither a mask nor an outpaint).
        """
        if not config.edit.edits:
            raise InputError("an edit needs a mask (--mask FILE, or alpha for the image's transparency) or an outpaint "
                             "(--outpaint SIDES); give one, or make a new image without the edit command.")
        run = self.pipeline.run(config)
        run.state.mode = EDIT.name
        return run
