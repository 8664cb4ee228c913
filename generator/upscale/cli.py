"""``python -m generator upscale IMAGE|DIR ... --model NAME|PATH --scale 4 --tile 256``.

Each input image is upscaled into ``--out`` (default ``outputs/upscaled``) as
``<name>_x4.png``; an existing file is never overwritten (``<name>_x4-2.png`` instead).
Alpha, greyscale and 16-bit PNG inputs are kept as such. A file that cannot be read is
reported and skipped; the exit code is non-zero if any file failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from generator.cli.common import add_threads_argument, add_weights_arguments, workbench_from_args
from generator.config import UpscaleConfig
from generator.errors import ConfigError, GeneratorError, InputError
from generator.events import Event, Notice, Progress
from generator.io.image_data import read_image_data
from generator.io.images import IMAGE_SUFFIXES
from generator.upscale.loader import Upscaler
from generator.upscale.outputs import write_upscaled
from generator.upscale.tiles import run_to_end, upscale_with

logger = logging.getLogger(__name__)
EXIT_INTERRUPTED = 130


def build_parser(prog: str) -> argparse.ArgumentParser:
    """Parser of the ``upscale`` subcommand."""
    parser = argparse.ArgumentParser(prog=prog, description="Upscale images with an ESRGAN-family model.")
    add = parser.add_argument
    add("inputs", nargs="+", metavar="IMAGE|DIR", help="image files, or folders of them")
    add("--model", dest="upscale_model", default="realesrgan_x4plus", metavar="NAME|PATH",
        help="registry upscaler (realesrgan_x4plus, realesrgan_x2plus, realesrnet_x4plus, realesrgan_x4plus_anime_6b, "
             "realesr_animevideov3, realesr_general_x4v3) or any ESRGAN-family .pth/.safetensors file")
    add("--scale", dest="upscale", type=float, default=None, metavar="FACTOR",
        help="output factor (default: the model's); other factors resize the model's output with LANCZOS")
    add("--tile", dest="upscale_tile", type=int, default=256, metavar="PX", help="tile size (0: whole image at once)")
    add("--tile-pad", dest="upscale_tile_pad", type=int, default=None, metavar="PX",
        help="context around each tile (default: the model's receptive field, or 24)")
    add("--denoise", dest="upscale_denoise", type=float, default=None, metavar="S",
        help="denoise strength 0..1 for realesr_general_x4v3 (1: strongest)")
    add("--alpha", dest="upscale_alpha", choices=("network", "resize"), default="network",
        help="upscale an alpha channel with the model (default) or by resizing")
    add("--precision", dest="upscale_precision", choices=("auto", "fp32"), default="auto",
        help="auto: fp16 on CUDA where the model supports it (else bf16 where the GPU has it), and bf16 on CPUs "
             "with bf16 units (AVX512-BF16, AMX: 2.4x faster, 4-5 grey levels from float32); fp32: always float32")
    add("--seamless", dest="upscale_seamless", default="", metavar="x|y|xy",
        help="the image is a seamless texture that wraps around along these axes: the model sees across the "
             "wrap seam, so the upscaled copy tiles without one (default: off)")
    add("--out", default="outputs/upscaled", metavar="DIR", help="where the upscaled files go")
    add("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_threads_argument(parser)
    add_weights_arguments(parser)
    return parser


def collect_inputs(inputs: list[str]) -> list[Path]:
    """Image files named directly or found (non-recursively) in the folders named."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise InputError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); check the path.")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path} does not exist; give image files or folders of them.")
    return files


def upscale_file(upscaler: Upscaler, path: Path, config: UpscaleConfig, out: Path) -> Path:
    """Upscale one file into ``out`` with a progress bar; returns the written path."""
    image = read_image_data(path)
    bar = tqdm(total=1, unit="tile", desc=path.name, file=sys.stderr, dynamic_ncols=True, leave=False)

    def show(event: Event) -> None:
        if isinstance(event, Progress):
            bar.total = event.total
            bar.update(event.step - bar.n)
        elif isinstance(event, Notice):
            tqdm.write(f"note: {event.message}", file=sys.stderr)

    try:
        result = run_to_end(upscale_with(upscaler, image, config), show)
    finally:
        bar.close()
    return write_upscaled(out, path, image, result, config, upscaler.name, config.upscale or upscaler.scale)


def run(args: argparse.Namespace) -> int:
    """Upscale every input; return 0 if all succeeded."""
    files = collect_inputs(args.inputs)
    if args.upscale is not None and not 1 <= args.upscale <= 16:
        raise ConfigError(f"--scale must be a factor from 1 to 16, not {args.upscale:g}.")
    if args.upscale_seamless not in ("", "x", "y", "xy"):
        raise ConfigError(f"--seamless must be x, y or xy (the axes the image wraps around), "
                          f"not {args.upscale_seamless!r}.")
    config = UpscaleConfig(upscale=args.upscale or 0.0, upscale_model=args.upscale_model,
                           upscale_tile=args.upscale_tile, upscale_tile_pad=args.upscale_tile_pad,
                           upscale_denoise=args.upscale_denoise, upscale_alpha=args.upscale_alpha,
                           upscale_precision=args.upscale_precision, upscale_seamless=args.upscale_seamless)
    upscaler = workbench_from_args(args).upscaler(config.upscale_model, config.upscale_denoise)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for index, path in enumerate(files, start=1):
        try:
            written = upscale_file(upscaler, path, config, out)
        except KeyboardInterrupt:
            print(f"interrupted; the {index - 1 - failed} files already upscaled are in {out}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except GeneratorError as error:
            failed += 1
            print(f"error: {error}", file=sys.stderr)
            continue
        print(written)
    if failed:
        print(f"error: {failed} of {len(files)} files could not be upscaled (see above); the others are in {out}.",
              file=sys.stderr)
        return 1
    return 0
