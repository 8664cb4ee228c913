"""The text-to-image mode: a VQGAN latent optimised until CLIP sees the prompts."""

from generator.config import GenerationConfig
from generator.mode import Mode
from generator.text_to_image.outputs import TextToImageOutputs

TEXT_TO_IMAGE = Mode(
    name="text-to-image", title="Text to image", summary="text to image (the default when no command is named)",
    config=GenerationConfig, outputs=TextToImageOutputs, command="text-to-image", aliases=("generate",),
    cli="generator.text_to_image.cli", tab="generator.text_to_image.tab", api="generate", presets=True,
    loadable=True, default=True, job="generator.webui.jobs:text_to_image_job",
    checks="generator.text_to_image.checks:check_settings")
