"""``python -m generator sample``: images from a Taming transformer prior.

    python -m generator sample --model ffhq -n 4 --seed 0 --top-k 250 --temperature 1.0
    python -m generator sample --model ffhq --size 512 1024          # sliding window
    python -m generator sample --model cin --class 980
    python -m generator sample --model sflckr --condition map.png
    python -m generator sample --complete photo.png --keep 0.5
    python -m generator sample --complete photo.png --mask mask.png --mask-blur 4
    python -m generator sample --transformer last.ckpt --transformer-config project.yaml

Each run writes a new folder with ``sample-NNN.png`` (config embedded), ``final.png`` (all
samples on one sheet), ``config.json``, ``frames/`` (with ``--save-every ROWS``) and videos.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from generator.cli.common import (
    add_threads_argument,
    add_upscale_arguments,
    add_weights_arguments,
    base_settings,
    workbench_from_args,
)
from generator.cli.console import EXIT_INTERRUPTED, Interrupted, present
from generator.config import PRECISIONS, SampleConfig, UpscaleConfig
from generator.config_schema import merge
from generator.sample.mode import SAMPLE
from generator.sample.pipeline import Sampler

_S = argparse.SUPPRESS
_OUTPUT_FIELDS = ("save_every", "video", "gif", "fps")
_UPSCALE_FIELDS = tuple(item.name for item in dataclasses.fields(UpscaleConfig))  # the shared upscale flags


def build_parser(prog: str) -> argparse.ArgumentParser:
    """Parser of the ``sample`` subcommand; flags are named after SampleConfig fields."""
    parser = argparse.ArgumentParser(prog=prog, description="Sample images from a Taming transformer prior.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n")[1])
    add = parser.add_argument
    add("--model", "--transformer", dest="model", default=_S, metavar="NAME|PATH",
        help="registry prior (ffhq, celebahq, cin, faceshq, sflckr, drin, ...) or a transformer last.ckpt")
    add("--transformer-config", default=_S, metavar="YAML", help="the checkpoint's project yaml (default: beside it)")
    add("-n", "--n", dest="n", type=int, default=_S, metavar="N", help="images to sample")
    add("--batch-size", type=int, default=_S, metavar="N", help="images sampled together")
    add("--size", type=int, nargs=2, default=_S, metavar=("WIDTH", "HEIGHT"),
        help="pixels; larger than the model's window (256x256) uses the sliding window")
    add("--top-k", type=int, default=_S, metavar="K", help="keep the K most likely codes (0: all)")
    add("--top-p", type=float, default=_S, metavar="P", help="nucleus sampling threshold (1.0: off)")
    add("--temperature", type=float, default=_S, metavar="T", help="sampling temperature")
    add("--seed", type=int, default=_S, metavar="N", help="seed of every draw (default: random, recorded)")
    add("--class", dest="class_label", type=int, default=_S, metavar="N",
        help="the class of a class-conditional prior: an ImageNet class for cin_transformer, the class number "
             "`train prior` printed for a prior trained here")
    add("--condition", default=_S, metavar="MAP", help="segmentation or depth map for map-conditioned priors")
    add("--complete", default=_S, metavar="IMAGE", help="complete this image: keep its first tokens, sample the rest")
    add("--keep", type=float, default=_S, metavar="F", help="fraction of --complete's tokens to keep (default 0.5)")
    add("--mask", default=_S, metavar="FILE|alpha",
        help="resample only where this mask is white (or where --complete is transparent: alpha); --keep is ignored")
    add("--mask-blur", type=float, default=_S, metavar="PX",
        help="feather the mask's edge where the samples are pasted back (Gaussian std in pixels)")
    add("--no-cache", dest="use_cache", action="store_false", default=_S,
        help="recompute every token (same result, slower)")
    add("--precision", choices=PRECISIONS, default=_S, help="autocast precision on CUDA")
    add("--save-every", type=int, default=_S, metavar="ROWS", help="write a frame every ROWS sampled rows")
    add("--video", action="store_true", default=_S, help="assemble the frames into video.mp4")
    add("--gif", action="store_true", default=_S, help="also write video.gif")
    add("--fps", type=int, default=_S, metavar="N", help="video frames per second")
    add("--preset", metavar="NAME|JSON", help="a sample preset (prior-ffhq, prior-cin); see `presets`")
    add("--from", dest="from_output", metavar="PNG|JSON",
        help="repeat a sampling run from its final.png or config.json")
    add("--out", default="outputs", metavar="DIR", help="folder for run folders (default: outputs)")
    add("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_threads_argument(parser)
    add_upscale_arguments(parser, _S)
    add_weights_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> SampleConfig:
    """defaults < preset (or --from) < flags."""
    base = base_settings(args.from_output, args.preset, kind=SAMPLE.name)
    names = {f for f in SampleConfig.__dataclass_fields__ if f not in ("output", "upscale")}
    given = {k: v for k, v in vars(args).items() if k in names}
    output = {k: v for k, v in vars(args).items() if k in _OUTPUT_FIELDS}
    upscale = {k: v for k, v in vars(args).items() if k in _UPSCALE_FIELDS}
    overrides = {**given, **({"output": output} if output else {}), **({"upscale": upscale} if upscale else {})}
    return SampleConfig.from_dict(merge(base, overrides))


def run(args: argparse.Namespace) -> int:
    """Sample from parsed arguments; return the exit code."""
    config = config_from_args(args)
    sampler = Sampler.from_workbench(config.model, config.transformer_config, workbench_from_args(args))
    try:
        record = present(sampler.run(config), Path(args.out), unit="row")
    except Interrupted:
        return EXIT_INTERRUPTED
    done = record.done
    assert done is not None
    tokens = done.timings.get("tokens_per_second", 0)
    print(f"sampled {len(done.images)} images in {done.timings.get('sample', 0):.1f}s ({tokens:.0f} tokens/s): "
          f"{record.result}", file=sys.stderr)
    print(record.result)
    return 0
