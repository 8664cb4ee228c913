"""Flicker of a video restyle with optical flow off and on: the temporal warping error and the
seconds per frame.

The clip is made here, so nothing is downloaded: the bundled ffmpeg renders lavfi's
``mandelbrot`` source (a continuous zoom into the set: real motion with fine texture), 48
frames at 12 fps. Each setting restyles it into a temporary run folder; the warping error is
measured the same way for every setting, from the saved frames and the input's DIS flow at the
run size (:func:`generator.animate.flow.warping_error`: mean |frame - previous frame warped by
the input's flow| over consistent pixels, 0..1). Settings are alternated over ``--repeats`` so
a noisy machine hurts both alike, after a short warm-up run; a frame's seconds count from the start (the
flow computed before the first frame included). Prints one JSON line per run and a summary line.

    python bench/flicker.py                      # the tiny random test models (what CI machines have)
    python bench/flicker.py --models default     # the default VQGAN and CLIP (downloaded weights)
    python bench/flicker.py --frames 24 --steps-per-frame 10 --flow-weight 10 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image

from bench.common import commit, emit, machine
from generator.animate.config import AnimationConfig
from generator.animate.flow import pair_flow, warping_error
from generator.animate.pipeline import Animator
from generator.config import ModelsConfig
from generator.config_schema import merge
from generator.drive import drive
from generator.io import video as video_io
from generator.io.ffmpeg import run_ffmpeg
from generator.io.images import cover, pil_to_tensor
from generator.text_to_image.pipeline import TextToImage

CLIP_RECIPE = "mandelbrot=size=160x128:rate=12:start_scale=1.5"


def make_clip(folder: Path, frames: int) -> Path:
    """A folder of ``frames`` PNG frames of a zoom into the Mandelbrot set (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = run_ffmpeg(["-f", "lavfi", "-i", CLIP_RECIPE, "-frames:v", str(frames), "-y", str(folder / "%04d.png")])
    if made.returncode != 0:
        raise SystemExit(f"ffmpeg could not render the clip: {made.stderr[-400:]}")
    return folder


def flicker(frames: list[Path], inputs: list[Path], size: tuple[int, int]) -> float:
    """The mean temporal warping error of output ``frames`` against the input's flow."""
    errors = []
    for index in range(1, len(frames)):
        pair = pair_flow(cover(Image.open(inputs[index - 1]).convert("RGB"), size),
                         cover(Image.open(inputs[index]).convert("RGB"), size))
        current, previous = (pil_to_tensor(Image.open(frames[i])) for i in (index, index - 1))
        errors.append(warping_error(current, previous, pair))
    return float(np.mean(errors))


def write_gif(frames: list, path: Path, *, scale: int) -> None:
    """``frames`` (paths or images) as a GIF at 12 fps, enlarged ``scale`` times with crisp pixels."""
    images = [(frame if isinstance(frame, Image.Image) else Image.open(frame).convert("RGB")) for frame in frames]
    images = [image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST) for image in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    video_io.write_gif(images, path, fps=12)


def restyle(pipeline: TextToImage, base: dict, flow: str, out: Path) -> tuple[Path, float]:
    """Restyle with ``flow``; the run folder and its seconds per frame, everything from the start
    to the last frame included (the flow computed before the first frame too)."""
    config = AnimationConfig.from_dict(merge(base, {"restyle": {"flow": flow}}))
    stamps = [time.perf_counter()]
    events = drive(Animator(pipeline).run(config), out)
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            record = stop.value
            break
        if getattr(event, "stage", None) == "frame":
            stamps.append(time.perf_counter())
    return record.folder, (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", choices=("tiny", "default"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("W", "H"),
                        help="run size (default 64x48 with the tiny models, 320x256 with the default ones)")
    parser.add_argument("--steps-per-frame", type=int, default=10)
    parser.add_argument("--flow-weight", type=float, default=None, help="default: the config's")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--gifs", type=Path, default=None, metavar="DIR",
                        help="also write the input and the last repeat's restyles as GIFs (3x, nearest) into DIR")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flicker-") as work_dir:
        work = Path(work_dir)
        clip = make_clip(work / "clip", args.frames)
        if args.models == "tiny":
            from tests.factories import write_tiny_models

            files = write_tiny_models(work / "models")
            models = files.models()
            size = args.size or (64, 48)
        else:
            models, size = ModelsConfig(), args.size or (320, 256)
        pipeline = TextToImage.from_pretrained(models, device=args.device)
        base = {"prompts": "an oil painting of swirling storm clouds", "seed": 3, "size": list(size),
                "steps_per_frame": args.steps_per_frame, "first_frame_steps": args.steps_per_frame * 3,
                "cutouts": {"cutn": 16}, "precision": "fp32", "models": json.loads(json.dumps(
                    AnimationConfig(models=models).to_dict()["models"])),
                "restyle": {"video_init": str(clip)}}
        if args.flow_weight is not None:
            base["flow_weight"] = args.flow_weight
        inputs = sorted(clip.glob("*.png"))
        restyle(pipeline, merge(base, {"frames": 3}), "dis", work / "warm-up")  # first calls: lazy loads, caches
        results: dict[str, list[dict]] = {"off": [], "dis": []}
        for repeat in range(args.repeats):
            for flow in ("off", "dis"):
                folder, seconds = restyle(pipeline, base, flow, work / f"{flow}-{repeat}")
                frames = sorted(p for p in (folder / "frames").glob("*.png") if p.stem.isdigit())
                record = {"bench": "flicker", "commit": commit(), **machine(pipeline.device), "models": args.models,
                          "flow": flow, "repeat": repeat, "frames": len(frames), "size": list(size),
                          "steps_per_frame": args.steps_per_frame,
                          "flow_weight": AnimationConfig.from_dict(base).flow_weight,
                          "warping_error": round(flicker(frames, inputs, size), 5),
                          "seconds_per_frame": round(seconds, 3)}
                results[flow].append(record)
                emit(record)
                if args.gifs and repeat == args.repeats - 1:
                    write_gif(frames, args.gifs / f"restyle-flow-{flow}.gif", scale=3)
        if args.gifs:
            covered = [cover(Image.open(path).convert("RGB"), size) for path in inputs]
            write_gif(covered, args.gifs / "restyle-input.gif", scale=3)
        off = statistics.median(r["warping_error"] for r in results["off"])
        on = statistics.median(r["warping_error"] for r in results["dis"])
        time_off = statistics.median(r["seconds_per_frame"] for r in results["off"])
        time_on = statistics.median(r["seconds_per_frame"] for r in results["dis"])
        emit({"bench": "flicker-summary", "clip": CLIP_RECIPE, "warping_error_off": off, "warping_error_flow": on,
              "error_ratio": round(on / off, 3), "time_ratio": round(time_on / time_off, 3)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
