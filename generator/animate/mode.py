"""The animate mode: zoom, pan and rotate videos with keyframes, changing prompts, and video restyle."""

from generator.animate.config import AnimationConfig
from generator.animate.outputs import AnimationOutputs
from generator.mode import Mode

ANIMATE = Mode(
    name="animate", title="Animate",
    summary="zoom/pan/rotate videos with keyframes, changing prompts, video restyle",
    config=AnimationConfig, outputs=AnimationOutputs, command="animate", cli="generator.animate.cli",
    tab="generator.animate.tab", api="animate", job="generator.webui.jobs:animation_job",
    checks="generator.animate.pipeline:check_animation")
