"""Peak memory of a web UI session that generates, upscales and samples, for this checkout and
others, alternated.

One process per measurement runs the web UI's jobs on a Studio, as a visitor's session would:
text to image with ``--upscale`` (twice), the Upscale tab, a prior sample with ``--upscale``, and
text to image again. The VQGAN, CLIP and prior are the tests' tiny models; the upscaler has
RealESRGAN_x4plus's shapes (RRDBNet, 23 blocks, 64 features: 67 MB of float32) with random
weights, so every copy of it that a session holds shows in its memory. Printed per run: the
process's peak resident memory, its resident memory at the end, and how many upscaler networks
are alive at the end.

    python bench/ui_session.py --checkout new=. --checkout old=/tmp/old-checkout --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs inside the measured checkout (its own generator and tests packages).
_SESSION = """
import gc, json, resource, sys
from pathlib import Path
import numpy as np
import torch
from PIL import Image
from spandrel import ImageModelDescriptor
from generator.config import SampleConfig, UpscaleConfig
from generator.webui.jobs import sample_job, text_to_image_job, upscale_job
from generator.webui.studio import Studio
from tests.factories import tiny_run_config, write_tiny_models
from tests.prior_factories import save_tiny_prior
from tests.upscaler_factories import rrdb_state, save_upscaler

torch.set_num_threads(2)
folder = Path(sys.argv[1])
files = write_tiny_models(folder / "models")
prior = save_tiny_prior(folder / "prior", "sos")
upscaler = save_upscaler(rrdb_state(seed=0, num_feat=64, num_blocks=23, scale=4), folder / "x4plus_shapes.pth")
image = folder / "photo.png"
Image.fromarray(np.zeros((24, 24, 3), dtype=np.uint8)).save(image)
upscale = {"upscale": 4.0, "upscale_model": str(upscaler), "upscale_tile": 0}
studio = Studio(outputs_dir=folder / "out", models=files.models(), device="cpu")
session = studio.session()
gc.collect()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for seed in (1, 2):
    list(text_to_image_job(studio, tiny_run_config(files, steps=2, seed=seed, upscale=upscale), session))
list(upscale_job(studio, str(image), UpscaleConfig(**upscale), session))
list(sample_job(studio, SampleConfig(model=str(prior.checkpoint), transformer_config=str(prior.config), n=1,
                                     batch_size=1, size=(32, 32), seed=3, upscale=UpscaleConfig(**upscale)), session))
list(text_to_image_job(studio, tiny_run_config(files, steps=2, seed=4), session))
gc.collect()
descriptors = {id(o.model) for o in gc.get_objects() if isinstance(o, ImageModelDescriptor)}
status = Path("/proc/self/status").read_text()
rss = int(status.split("VmRSS:")[1].split()[0])
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "start_mb": before / 1024, "end_mb": rss / 1024, "upscalers_alive": len(descriptors)}))
"""


def measure(checkout: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-ui-session-") as folder:
        env = {**os.environ, "PYTHONPATH": str(checkout), "GENERATOR_WEIGHTS_DIR": str(Path(folder) / "weights"),
               "GENERATOR_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
        env.pop("GENERATOR_SAFE_COPIES_DIR", None)
        result = subprocess.run([sys.executable, "-c", _SESSION, folder], cwd=checkout, env=env, capture_output=True,
                                text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{checkout}: {result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", default=[], metavar="LABEL=PATH",
                        help="a checkout to measure (default: new=this one)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    checkouts = dict(item.split("=", 1) for item in (args.checkout or [f"new={ROOT}"]))
    for round_ in range(1, args.rounds + 1):
        for label, checkout in checkouts.items():
            record = measure(Path(checkout))
            print(json.dumps({"bench": "ui_session", "round": round_, "checkout": label,
                              **{key: round(value, 1) for key, value in record.items()}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
