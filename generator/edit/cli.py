"""``python -m generator edit IMAGE "PROMPT" --mask MASK`` (or ``--outpaint SIDES``): change
part of an image. Every text-to-image flag works; the run folder holds the result, the image,
its mask and the region masks, so ``--from final.png`` repeats it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from generator.cli.common import base_settings, workbench_from_args
from generator.cli.console import EXIT_INTERRUPTED, Interrupted, present
from generator.config import GenerationConfig
from generator.config_schema import merge
from generator.edit.mode import EDIT
from generator.edit.pipeline import Editor
from generator.presets import DEFAULT_PRESET
from generator.text_to_image.checks import check_settings
from generator.text_to_image.cli import DEFAULT_OUT, add_settings_arguments, overrides_from_args
from generator.text_to_image.mode import TEXT_TO_IMAGE
from generator.text_to_image.pipeline import TextToImage

_S = argparse.SUPPRESS
EXAMPLES = """examples:
  python -m generator edit photo.jpg "a red sky" --mask sky.png          # repaint the white part of sky.png
  python -m generator edit erased.png "a bird" --mask alpha               # repaint where the image is transparent
  python -m generator edit photo.jpg "a beach" --outpaint left=128,right=128
  python -m generator edit photo.jpg "a red sky @ sky.png | a calm sea @ sea.png" --mask both.png"""


def build_parser(prog: str) -> argparse.ArgumentParser:
    """Parser of the ``edit`` command."""
    parser = argparse.ArgumentParser(prog=prog, description="Change part of an image: only the mask's white part "
                                                            "(or the outpainted border) changes; the rest is kept "
                                                            "exactly.", epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", nargs="?", default=_S, metavar="IMAGE", help="the image to edit (not with --from)")
    parser.add_argument("prompts", nargs="?", default=_S, metavar="PROMPT",
                        help="what the changed part should show; 'text @ mask.png' gives a region its own prompt")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="folder for run folders (default: outputs)")
    add_settings_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> GenerationConfig:
    """defaults < text-to-image preset (or the edit ``--from`` repeats) < flags, with IMAGE as
    the image to edit."""
    if getattr(args, "image", None) is not None:
        args.init_image = args.image
    if args.from_output:
        base = base_settings(args.from_output, args.preset, kind=EDIT.name)
    else:
        base = base_settings(None, args.preset, kind=TEXT_TO_IMAGE.name, default_preset=DEFAULT_PRESET)
    return GenerationConfig.from_dict(merge(base, overrides_from_args(args)))


def run(args: argparse.Namespace, make_pipeline: Callable[..., TextToImage] | None = None) -> int:
    """Edit from parsed arguments; return the exit code. ``make_pipeline(models, bench=...)``
    builds the text-to-image pipeline (tests pass tiny models)."""
    config = config_from_args(args)
    check_settings(config)  # before any model is loaded or downloaded
    make_pipeline = make_pipeline or TextToImage.from_workbench
    editor = Editor(make_pipeline(config.models, bench=workbench_from_args(args)))
    try:
        record = present(editor.run(config), Path(args.out), unit="step")
    except Interrupted:
        return EXIT_INTERRUPTED
    assert record.done is not None
    print(f"done in {record.done.timings.get('total', 0):.1f}s: {record.result}", file=sys.stderr)
    print(record.result)
    return 0
