"""The upscale mode: any image through an ESRGAN-family network, in seamless tiles."""

from generator.config import UpscaleConfig
from generator.mode import Mode

UPSCALE = Mode(
    name="upscale", title="Upscale", summary="upscale any image with an ESRGAN-family model",
    config=UpscaleConfig, outputs=None, command="upscale", cli="generator.upscale.cli",
    tab="generator.upscale.tab", api="upscale", run_folders=False,
    job="generator.webui.jobs:upscale_input_job", inputs=("image",))
