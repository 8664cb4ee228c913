"""``python -m generator reconstruct IMAGE``: the image through a VQGAN and back, written to a
run folder (``final.png``, ``input.png``, ``compare.png``) with its PSNR and the codes it used."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from generator.cli.common import add_threads_argument, add_weights_arguments, workbench_from_args
from generator.cli.console import EXIT_INTERRUPTED, Interrupted, present
from generator.reconstruct.config import ReconstructConfig
from generator.reconstruct.pipeline import Reconstructor


def build_parser(prog: str) -> argparse.ArgumentParser:
    """Parser of the ``reconstruct`` command."""
    parser = argparse.ArgumentParser(prog=prog, description="Run an image through a VQGAN and back, to see what "
                                                            "its codebook keeps (PSNR, codes used).")
    parser.add_argument("image", metavar="IMAGE", help="an image file or http(s) address")
    parser.add_argument("--vqgan", default=ReconstructConfig.vqgan, metavar="NAME|PATH",
                        help=f"registry VQGAN or checkpoint (default {ReconstructConfig.vqgan})")
    parser.add_argument("--vqgan-config", default=None, metavar="YAML", help="the checkpoint's yaml")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("W", "H"),
                        help="resize to this first (default: the image's own size)")
    parser.add_argument("--max-side", type=int, default=ReconstructConfig.max_side, metavar="PX",
                        help=f"the longest side without --size (default {ReconstructConfig.max_side})")
    parser.add_argument("--out", default="outputs", metavar="DIR", help="folder for run folders (default: outputs)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_threads_argument(parser)
    add_weights_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Reconstruct from parsed arguments; return the exit code."""
    config = ReconstructConfig(image=args.image, vqgan=args.vqgan, vqgan_config=args.vqgan_config,
                               size=tuple(args.size) if args.size else None, max_side=args.max_side)
    reconstructor = Reconstructor.from_workbench(config, workbench_from_args(args))
    try:
        record = present(reconstructor.run(config), Path(args.out), unit="step")
    except Interrupted:
        return EXIT_INTERRUPTED
    assert record.done is not None
    timings = record.done.timings
    print(f"PSNR {timings['psnr']:.2f} dB, {timings['codes_used']:.0f} of {timings['codes']:.0f} codes used: "
          f"{record.result}", file=sys.stderr)
    print(record.result)
    return 0
