"""The edit mode: text to image that changes only part of an image (a mask, an outpaint)."""

from generator.config import GenerationConfig
from generator.mode import Mode
from generator.text_to_image.outputs import TextToImageOutputs

EDIT = Mode(
    name="edit", title="Edit", summary="change part of an image: a painted mask, region prompts, outpainting",
    config=GenerationConfig, outputs=TextToImageOutputs, command="edit", cli="generator.edit.cli",
    tab="generator.edit.tab", api="edit", loadable=True,
    job="generator.edit.tab:edit_job", checks="generator.text_to_image.checks:check_settings")
