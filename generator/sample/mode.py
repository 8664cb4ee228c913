"""The sample mode: images sampled from a Taming transformer prior."""

from generator.config import SampleConfig
from generator.mode import Mode
from generator.sample.outputs import SampleOutputs

SAMPLE = Mode(
    name="sample", title="Sample", summary="sample images from a Taming transformer prior",
    config=SampleConfig, outputs=SampleOutputs, command="sample", cli="generator.sample.cli",
    tab="generator.sample.tab", api="sample", presets=True, loadable=True,
    job="generator.webui.jobs:sample_job")
