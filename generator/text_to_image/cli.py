"""``python -m generator "prompt" [flags]``: text to image, written into a new run folder.

Flags are named after the config fields (``--cutn`` sets ``cutouts.cutn``). Precedence:
defaults < ``--preset`` (or the config embedded in ``--from``) < flags. Each run writes
``<out>/<date>-<time>-<slug>-<seed>/`` with ``final.png`` (config embedded), ``config.json``,
``frames/`` and ``video.mp4``. Ctrl-C or an error still writes the latest image and the
video of the frames so far.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generator.cli.common import (
    add_threads_argument,
    add_upscale_arguments,
    add_weights_arguments,
    base_settings,
    workbench_from_args,
)
from generator.cli.console import EXIT_INTERRUPTED, Interrupted, present
from generator.cli.main import listing as main_listing
from generator.config import (
    AUGMENTATION_NAMES,
    INIT_MODES,
    MASK_FILLS,
    OPTIMISERS,
    PRECISIONS,
    RECOMPUTE,
    SEAMLESS,
    GenerationConfig,
    clip_model_spec,
)
from generator.config_schema import field_paths, merge, nest
from generator.errors import ConfigError
from generator.presets import DEFAULT_PRESET
from generator.text_to_image.checks import check_settings
from generator.text_to_image.mode import TEXT_TO_IMAGE

if TYPE_CHECKING:
    from generator.text_to_image.pipeline import TextToImage

logger = logging.getLogger(__name__)
DEFAULT_OUT = "outputs"

# Flags that set config fields: dest -> (argparse kwargs). The dest is the field name.
_S = argparse.SUPPRESS


def _config_flags() -> list[tuple[list[str], dict[str, Any]]]:
    return [
        (["--image-prompts"], dict(metavar="PATHS", help="image prompts: 'a.png:weight | b.png'")),
        (["--noise-prompts"], dict(metavar="SEEDS", help="noise prompts: 'seed:weight | seed'")),
        (["--change-prompt-every"], dict(type=int, metavar="N",
                                         help="steps per ^-separated story phrase (0: split evenly)")),
        (["--size"], dict(type=int, nargs=2, metavar=("WIDTH", "HEIGHT"),
                          help="image size in pixels (rounded down to the VQGAN factor)")),
        (["--steps"], dict(type=int, metavar="N", help="optimisation steps")),
        (["--seed"], dict(type=int, metavar="N", help="seed of every random draw (default: a random one, recorded)")),
        (["--precision"], dict(choices=PRECISIONS,
                               help="autocast precision (auto: each GPU's native half precision; on the CPU bf16 "
                                    "for the VQGAN where the CPU has bf16 units)")),
        (["--recompute"], dict(choices=RECOMPUTE, help="recompute decoder activations in the backward pass instead "
                                                       "of keeping them: less memory, a little more time (auto: the "
                                                       "finest levels)")),
        (["--deterministic"], dict(action="store_true",
                                   help="bitwise-reproducible GPU runs (slower; refuses affine, perspective and the "
                                        "other warping augmentations, which have no deterministic CUDA backward). "
                                        "CPU runs are always reproducible")),
        (["--compile"], dict(action="store_true",
                             help="torch.compile the VQGAN decoder and CLIP, for GPUs: faster steps after a slow "
                                  "first one (on the CPU it measured slower); continues without it, with a notice, "
                                  "where compiling fails")),
        (["--vqgan"], dict(metavar="NAME|PATH", help="VQGAN registry name or checkpoint (.ckpt/.pth/.safetensors)")),
        (["--vqgan-config"], dict(metavar="YAML", help="the checkpoint's yaml (default: beside it, or inferred)")),
        (["--clip-model"], dict(dest="clip_models", action="append", nargs="+", metavar="ARG",
                                help="MODEL [PRETRAINED [WEIGHT]]: an open_clip architecture or model-config JSON, "
                                     "a pretrained tag, registry name or weights file ('none' for random), and its "
                                     "loss weight; repeat for an ensemble")),
        (["--cutn"], dict(type=int, metavar="N", help="cutouts per step")),
        (["--cut-pow"], dict(type=float, metavar="P", help="cutout size exponent (>1: smaller cutouts)")),
        (["--augments"], dict(nargs="*", metavar="NAME",
                              help=f"kornia augmentations: {', '.join(AUGMENTATION_NAMES)}")),
        (["--noise-fac"], dict(type=float, metavar="F", help="per-cutout noise strength")),
        (["--optimiser"], dict(choices=OPTIMISERS, help="optimiser")),
        (["--lr"], dict(type=float, metavar="LR", help="learning rate")),
        (["--init-weight"], dict(type=float, metavar="W", help="MSE weight toward the initial latent")),
        (["--init-weight-decay-steps"], dict(type=int, metavar="N",
                                             help="the init weight falls to zero at step N (0: constant)")),
        (["--tv-weight"], dict(type=float, metavar="W", help="total-variation (smoothness) weight")),
        (["--init"], dict(choices=INIT_MODES,
                          help="initial latent (--init-image implies image, --prior implies prior)")),
        (["--init-image"], dict(metavar="PATH", help="start from this image")),
        (["--init-latent"], dict(metavar="RUN|FILE",
                                 help="start from the latent a run saved (its folder or latent.safetensors): go "
                                      "on optimising it, with other prompts or settings (implies --init latent)")),
        (["--prior"], dict(metavar="NAME|PATH",
                           help="transformer prior for --init prior (implies it); its VQGAN is used")),
        (["--prior-config"], dict(metavar="YAML", help="the prior's project yaml (default: beside it)")),
        (["--prior-top-k"], dict(type=int, metavar="K", help="top-k of the prior's sampling (0: off)")),
        (["--prior-top-p"], dict(type=float, metavar="P", help="top-p of the prior's sampling")),
        (["--prior-temperature"], dict(type=float, metavar="T", help="temperature of the prior's sampling")),
        (["--prior-class"], dict(type=int, metavar="N", help="class for a class-conditional prior")),
        (["--variation-seed"], dict(type=int, metavar="S",
                                    help="seed variations: mix the random start with seed S's (the cutouts still "
                                         "follow --seed); with -n, variation seeds S, S+1, ...")),
        (["--variation-strength"], dict(type=float, metavar="A",
                                        help="how far toward --variation-seed's start, 0 (the --seed image exactly) "
                                             "to 1; 0.05-0.2 gives images near it")),
        (["--mask"], dict(metavar="FILE|alpha", help="edit --init-image: change only where this mask is white (alpha: "
                                                     "where the image is transparent); the rest is kept exactly")),
        (["--mask-blur"], dict(type=float, metavar="PX", help="feather the mask's edges by this many pixels")),
        (["--mask-fill"], dict(choices=MASK_FILLS, help="start the masked part from the image (original) or from "
                                                        "random codes (random)")),
        (["--outpaint"], dict(type=outpaint_sides, metavar="SIDES",
                              help="extend --init-image: 'left=128,right=256' (also top=, bottom=) or one number for "
                                   "every side; the image is kept, the border continues it")),
        (["--seamless"], dict(choices=[axes for axes in SEAMLESS if axes],
                              help="make a tile that repeats without a seam along x, y or both (xy)")),
        (["--save-every"], dict(type=int, metavar="N", help="write a frame every N steps")),
        (["--video"], dict(action="store_true", help="assemble the frames into video.mp4")),
        (["--gif"], dict(action="store_true", help="also write video.gif")),
        (["--fps"], dict(type=int, metavar="N", help="video frames per second")),
    ]


_SIDES = ("left", "top", "right", "bottom")


def outpaint_sides(text: str) -> list[int]:
    """``left=128,right=256`` (any of left, top, right, bottom; the rest 0) or one number for
    every side -> [left, top, right, bottom]."""
    text = text.strip()
    if text.isdigit():
        return [int(text)] * 4
    sides = dict.fromkeys(_SIDES, 0)
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        name, _, value = part.partition("=")
        if name.strip() not in sides or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"{part!r} is not a side; write e.g. left=128,right=256 (sides: "
                                             f"{', '.join(_SIDES)}; whole pixels), or one number for every side")
        sides[name.strip()] = int(value)
    return [sides[name] for name in _SIDES]


def build_parser(prog: str) -> argparse.ArgumentParser:
    """Parser of the text-to-image command."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Generate an image from text with VQGAN+CLIP.",
        epilog="Other commands (python -m generator COMMAND --help):\n" + "\n".join(main_listing()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompts", nargs="?", default=_S, metavar="PROMPT",
                        help="'text:weight:stop | more text' ; '^' separates story phrases")
    parser.add_argument("-n", "--images", type=int, default=1, metavar="N",
                        help="make N images of the prompt, with seeds SEED, SEED+1, ... (random ones, recorded, "
                             "without --seed), or with --variation-seed N variations of one seed; the models are "
                             "loaded once")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="folder for run folders (default: outputs)")
    add_settings_arguments(parser)
    return parser


def add_settings_arguments(parser: argparse.ArgumentParser, *, helps: dict[str, str] | None = None) -> None:
    """Every text-to-image setting: ``--preset``, ``--from``, ``--device``, the config flags,
    upscaling and weights (shared with ``batch``, whose jobs take them as defaults).
    ``helps``: flags whose help says something else in this command (``--change-prompt-every``
    counts frames in ``animate``)."""
    parser.add_argument("--preset", metavar="NAME|JSON",
                        help=f"named settings (default: {DEFAULT_PRESET}); see `presets`")
    parser.add_argument("--from", dest="from_output", metavar="PNG|JSON",
                        help="repeat a run from the config embedded in its final.png (or its config.json)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_threads_argument(parser)
    for names, kwargs in _config_flags():
        parser.add_argument(*names, default=_S, **{**kwargs, **({"help": helps[names[0]]}
                                                                 if helps and names[0] in helps else {})})
    add_upscale_arguments(parser, _S)
    add_weights_arguments(parser)


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The plain settings of the parsed flags: defaults < preset (or --from) < flags."""
    base = base_settings(args.from_output, args.preset, kind=TEXT_TO_IMAGE.name, default_preset=DEFAULT_PRESET)
    return merge(base, overrides_from_args(args))


def config_from_args(args: argparse.Namespace) -> GenerationConfig:
    """defaults < preset (or --from) < flags."""
    return GenerationConfig.from_dict(settings_from_args(args))


def overrides_from_args(args: argparse.Namespace, config_cls: type = GenerationConfig) -> dict[str, Any]:
    """The settings the flags give, as a nested partial config of ``config_cls`` (an init image
    or a prior given without ``--init`` implies that init)."""
    given = {k: v for k, v in vars(args).items() if k in field_paths(config_cls)}
    if "clip_models" in given:
        given["clip_models"] = [clip_model_spec(values) for values in given["clip_models"]]
    if "init_image" in given and "init" not in given:
        given["init"] = "image"
    if "prior" in given and "init" not in given:
        given["init"] = "prior"
    if "init_latent" in given and "init" not in given:
        given["init"] = "latent"
    return nest(config_cls, given)


def run(args: argparse.Namespace, make_pipeline: Callable[..., TextToImage] | None = None) -> int:
    """Run text to image from parsed arguments; return the exit code.

    ``make_pipeline(models, bench=...)`` builds the pipeline from the run's workbench
    (``TextToImage.from_workbench`` by default; tests pass tiny models).
    """
    config = config_from_args(args)
    if args.images < 1:
        raise ConfigError(f"-n/--images must be 1 or more, not {args.images}.")
    check_settings(config)  # before any model is loaded or downloaded (or its code imported)
    from generator.text_to_image.pipeline import TextToImage

    make_pipeline = make_pipeline or TextToImage.from_workbench
    pipeline = make_pipeline(config.models, bench=workbench_from_args(args))
    for one in config.series(args.images):  # seeds seed + k (or fresh ones), or variation seeds v + k
        try:
            record = present(pipeline.run(one), Path(args.out), unit="step")
        except Interrupted:
            return EXIT_INTERRUPTED
        assert record.done is not None
        print(f"done in {record.done.timings.get('total', 0):.1f}s: {record.result}", file=sys.stderr)
        print(record.result)
    return 0
