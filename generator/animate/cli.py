"""``python -m generator animate "prompt" [flags]``: zoom, pan and rotate videos, prompts that
change at frames, video restyle.

    python -m generator animate "a fractal forest" --frames 120 --zoom "0:1.0, 60:1.04, 120:1.0" --angle 0.5
    python -m generator animate "a forest ^ a burning forest ^ ashes" --frames 90 --zoom 1.02
    python -m generator animate "oil painting" --video-init input.mp4 --every 2
    python -m generator animate "oil painting" --video-init input.mp4 --flow off --blend 0.3
    python -m generator animate "a pulsing nebula" --audio song.wav --zoom "1 + 0.04*bass" --angle "2*onset"
    python -m generator animate --resume outputs/20240101-120000-a-fractal-forest-7

A subcommand rather than flags on the main command: an animation has settings of its own
(frames, motion, restyle, video), its own outputs (every frame, ``frames.jsonl``, a video) and
``--resume``, and ``--steps`` means something else in it (the first frame's steps). Every
text-to-image flag works here too, with the same name. Motion flags take a number or
keyframes ``"FRAME:VALUE, ..."``, and a value may be an expression over the time and the
features of the ``--audio`` sound (``"1 + 0.04*bass"``); ``--prompt-at FRAME=PROMPT``
(repeatable) changes the prompts at a frame (see generator/animate/keyframes.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from generator.animate.config import BORDERS, FLOW_WEIGHT, AnimationConfig
from generator.animate.flow import FLOW_METHODS, OFF
from generator.animate.mode import ANIMATE
from generator.animate.pipeline import Animator, check_animation
from generator.animate.resume import read_resume
from generator.animate.state import Resume
from generator.cli.common import base_settings, workbench_from_args
from generator.cli.console import EXIT_INTERRUPTED, Interrupted, present
from generator.config_schema import field_paths, merge
from generator.errors import ConfigError
from generator.presets import DEFAULT_PRESET
from generator.text_to_image.cli import DEFAULT_OUT, add_settings_arguments, overrides_from_args
from generator.text_to_image.mode import TEXT_TO_IMAGE
from generator.text_to_image.pipeline import TextToImage

_S = argparse.SUPPRESS


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The text-to-image parser plus the animation's flags (named after AnimationConfig fields)."""
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1],
        description="Make an animation (zoom, pan, rotate, changing prompts) or restyle a video with VQGAN+CLIP.")
    parser.add_argument("prompts", nargs="?", default=_S, metavar="PROMPT",
                        help="'text:weight:stop | more text' ; '^' separates story phrases (advancing every "
                             "--change-prompt-every frames)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="folder for run folders (default: outputs)")
    add_settings_arguments(parser, helps={  # every text-to-image flag; in an animation a phrase lasts frames
        "--change-prompt-every": "frames per ^-separated story phrase (0: the phrases split the frames evenly)",
        "--steps": "optimisation steps of the first frame (the later ones take --steps-per-frame)"})
    frames = parser.add_argument_group("animation")
    add = frames.add_argument
    add("--frames", type=int, default=_S, metavar="N", help="frames to make (default 60; a restyle: every input frame)")
    add("--steps-per-frame", type=int, default=_S, metavar="N", help="optimisation steps of each frame after the first")
    add("--first-frame-steps", type=int, default=_S, metavar="N",
        help="steps of the first frame (default: --steps; a restyle: --steps-per-frame)")
    add("--zoom", default=_S, metavar="Z|KEYFRAMES", help="scale per frame, e.g. 1.02 or '0:1.0, 60:1.04'")
    add("--angle", default=_S, metavar="DEG|KEYFRAMES", help="counter-clockwise rotation per frame in degrees")
    add("--translate-x", default=_S, metavar="PX|KEYFRAMES", help="shift to the right per frame in pixels")
    add("--translate-y", default=_S, metavar="PX|KEYFRAMES", help="shift downward per frame in pixels")
    add("--smooth", action="store_true", default=_S, help="ease in and out of keyframes instead of straight lines")
    add("--audio", default=_S, metavar="FILE",
        help="a sound file (or video with sound) for the video; motion values may follow it as expressions of "
             "t, frame, loudness, bass, mid, treble, onset (each 0..1), e.g. --zoom '1 + 0.04*bass'")
    add("--border", choices=BORDERS, default=_S,
        help="pixels a motion brings in (zooming out, turning, shifting): reflect the frame (default) or outpaint "
             "them, keeping the frame as it is (an endless zoom out)")
    add("--prompt-at", action="append", default=_S, metavar="FRAME=PROMPT",
        help="from FRAME on, PROMPT replaces the prompts (repeat for more); or use '^' stories with "
             "--change-prompt-every N frames")
    add("--frame-init-weight", type=float, default=_S, metavar="W",
        help="MSE weight holding each frame near the moved previous frame (coherence)")
    add("--video-init", default=_S, metavar="VIDEO|FOLDER", help="restyle this video (or folder of frames)")
    add("--every", type=int, default=_S, metavar="K", help="restyle every K-th input frame")
    add("--blend", type=float, default=_S, metavar="B",
        help="with --flow off: mix this much of the previous output into each input frame (0..1)")
    add("--flow", choices=(*FLOW_METHODS, OFF), default=_S,
        help="follow the input video's motion with optical flow (OpenCV's dis, the default, or farneback; raft: "
             "the RAFT network of --flow-model): each frame starts from the previous output warped onto it, so "
             "textures stay put instead of flickering; off: each frame starts from its input frame")
    add("--flow-model", default=_S, metavar="NAME|PATH",
        help="RAFT weights for --flow raft: raft_small (default), raft_large or a torchvision RAFT file")
    add("--flow-weight", type=float, default=_S, metavar="W",
        help=f"weight of the temporal consistency loss toward the previous frame moved onto this one, where it "
             f"is not occluded (default {FLOW_WEIGHT:g}; 0: off)")
    add("--interpolate", type=int, default=_S, metavar="N",
        help="N times the frames by motion interpolation (n frames become n*N)")
    add("--video-length", type=float, default=_S, metavar="SECONDS", help="choose the frame rate so the video lasts "
                                                                         "this long")
    add("--resume", metavar="RUN_FOLDER", help="continue a stopped animation with its recorded settings")
    return parser


def config_from_args(args: argparse.Namespace) -> AnimationConfig:
    """defaults < preset (a text-to-image one) or --from (an animation's) < flags."""
    if args.from_output:
        base = base_settings(args.from_output, args.preset, kind=ANIMATE.name)
    else:
        base = base_settings(None, args.preset, kind=TEXT_TO_IMAGE.name, default_preset=DEFAULT_PRESET)
    return AnimationConfig.from_dict(merge(base, overrides_from_args(args, AnimationConfig)))


def check_plan(config: AnimationConfig) -> None:
    """Everything an animation can be told before any model is loaded (see :func:`check_animation`)."""
    check_animation(config)


def run(args: argparse.Namespace, make_pipeline: Callable[..., TextToImage] | None = None) -> int:
    """Animate from parsed arguments; return the exit code."""
    resume: Resume | None = None
    if args.resume:
        settings = [name for name in vars(args) if name in field_paths(AnimationConfig)]
        if settings or args.from_output or args.preset:
            flag = "--" + settings[0].replace("_", "-") if settings else ("--from" if args.from_output else "--preset")
            raise ConfigError(f"--resume continues with the recorded settings, so {flag} cannot be given with it; "
                              "leave it out.")
        config, resume = read_resume(args.resume)
    else:
        config = config_from_args(args)
    check_plan(config)
    make_pipeline = make_pipeline or TextToImage.from_workbench
    pipeline = make_pipeline(config.models, bench=workbench_from_args(args))
    try:
        record = present(Animator(pipeline).run(config, resume), Path(args.out), unit="frame",
                         parent=resume.parent if resume else None)
    except Interrupted:
        return EXIT_INTERRUPTED
    assert record.done is not None
    videos = ", ".join(str(path) for path in record.videos)
    print(f"done in {record.done.timings.get('total', 0):.1f}s: {record.result} ({videos})", file=sys.stderr)
    print(record.result)
    return 0
