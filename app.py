"""The web UI: ``python app.py`` serves a Gradio page on http://127.0.0.1:7860.

``build_demo(text_to_image)`` puts the tabs together (one per mode of the registry,
:mod:`generator.modes`, each laid out and wired in its mode's ``tab.py``; then the gallery and
PNG info, in ``generator/webui/tabs``) over a
:class:`Studio`; ``main()`` parses the flags, loads the models and launches. Importing this
module loads no model. Widgets are named after config fields; the logic behind them is in
``generator/webui`` (jobs, forms, gallery), tested without a browser. The same server answers
the HTTP API at ``/api/v1`` (:mod:`generator.serving`); ``--ray`` sends the jobs of both to a
pool of Ray workers.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from generator import modes
from generator.config import GenerationConfig, ModelsConfig, clip_model_spec
from generator.devices import use_threads
from generator.errors import GeneratorError
from generator.io.input_limits import set_input_limits
from generator.serving.api import api_app
from generator.serving.keys import ApiKeys
from generator.serving.queue import JobQueue
from generator.text_to_image.pipeline import TextToImage
from generator.webui.limits import (
    DEFAULT_MAX_IMAGE_MEGAPIXELS,
    DEFAULT_MAX_JOB_MEGAPIXELS,
    DEFAULT_MAX_MEGAPIXELS,
    DEFAULT_MAX_VIDEO_FRAMES,
)
from generator.webui.paths import PathPolicy, is_local_only
from generator.webui.serving import launch_options
from generator.webui.studio import Studio
from generator.webui.tabs.gallery import gallery_tabs
from generator.webui.tabs.page import Page
from generator.weights import store

logger = logging.getLogger("generator.app")
# Results are often small (256 px): show them scaled up to the frame, with crisp pixels.
CSS = """
#preview img, #result img, #upscaled img, #animate-preview img, #edit-preview img, #edit-result img {
  width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;
}
#title h2 { margin: 0; } #title p { margin: 0; opacity: 0.75; }
.status-progress { display: flex; align-items: center; gap: 0.6em; }
.status-bar { flex: 1; height: 6px; border-radius: 3px; background: var(--neutral-200, #ddd); overflow: hidden; }
.status-bar > div { height: 100%; background: var(--color-accent, #f97316); }
.status-error { color: #b3261e; font-weight: 600; }
.status-hint { color: #6b4e00; background: #fff6d6; border-left: 3px solid #e0b000; padding: 2px 8px; }
#run-buttons { min-width: 150px; }
@media (max-width: 600px) { #title h2 { font-size: 1.15rem; } #title p { display: none; } }
"""
# Ctrl+Enter (Cmd+Enter) presses the visible tab's primary button; Esc its Stop, unless the Esc is
# for something else: closing an open dropdown, listbox, menu or dialog, or a control that takes Esc
# itself (a dropdown's field, the image editor). The check runs in the capture phase, before the
# dropdown closes its list, so an open list is still seen.
KEYS_JS = """
() => {
  const visible = (el) => el && el.offsetParent !== null;
  const TAKES_ESCAPE = 'input[aria-expanded], [role="combobox"], [role="listbox"], [role="menu"], [role="dialog"], '
    + 'select, canvas, [class*="image-editor"], [class*="image_editor"]';
  const OPEN_POPUP = 'input[aria-expanded="true"], [role="listbox"], [role="menu"], [role="dialog"], ul.options';
  const forSomethingElse = (event) => event.defaultPrevented
    || (event.target instanceof Element && event.target.closest(TAKES_ESCAPE))
    || [...document.querySelectorAll(OPEN_POPUP)].some(visible);
  document.addEventListener('keydown', (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === 'Enter') {
      const button = [...document.querySelectorAll('button.primary')].find(visible);
      if (button) { event.preventDefault(); button.click(); }
    } else if (event.key === 'Escape' && !forSomethingElse(event)) {
      const button = [...document.querySelectorAll('button.stop')].find(visible);
      if (button) { event.preventDefault(); button.click(); }
    }
  }, true);
}
"""
def build_demo(text_to_image: TextToImage | None = None, *, studio: Studio | None = None,
               outputs_dir: str | Path = "outputs", preset: str = "default", paths: PathPolicy | None = None,
               max_upscale_megapixels: float = DEFAULT_MAX_MEGAPIXELS, runs_at_once: int = 1) -> gr.Blocks:
    """The Gradio Blocks of the app. Nothing is loaded here; models load on first use.

    Args:
        text_to_image: an already-loaded text-to-image pipeline (tests pass tiny ones).
        studio: the models and outputs folder (built from ``text_to_image`` when not given).
        outputs_dir: where run folders go (when ``studio`` is not given).
        preset: the text-to-image preset whose values fill the form at first.
        paths: which server paths the model, yaml and image fields accept (default: any, as
            for a server on 127.0.0.1; see :class:`PathPolicy`).
        max_upscale_megapixels: the largest upscaled image the Upscale tab makes (0: no cap).
        runs_at_once: heavy events handled at once (1: one device; more when a pool makes them).
    """
    studio = studio or Studio(outputs_dir=Path(outputs_dir), text_to_image=text_to_image)
    paths = paths or PathPolicy.for_server("127.0.0.1", False, weights_dir=studio.weights_dir)
    page = Page(studio, paths, max_upscale_megapixels, runs_at_once)
    # No usage analytics are sent: this is a local tool.
    with gr.Blocks(title="VQGAN Studio", analytics_enabled=False) as demo:
        gr.Markdown("## VQGAN Studio\nVQGAN+CLIP, Taming Transformers priors, ESRGAN upscaling", elem_id="title")
        with gr.Tabs() as tabs:
            parts = {}
            for mode in modes.MODES.values():  # a tab per mode that has one, in the registry's order
                if mode.tab is not None:
                    with gr.Tab(mode.title, id=mode.name):
                        parts[mode.name] = mode.module("tab").build(page, preset)
            gallery_tabs(page, tabs, parts, demo)
        demo.load(None, None, None, js=KEYS_JS)
    return demo.queue(default_concurrency_limit=1, max_size=32)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the VQGAN Studio web UI and its HTTP API (/api/v1).")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument("--shared-gallery", action="store_true",
                        help="every visitor's gallery shows every run (default: each browser sees its own)")
    parser.add_argument("--max-upscale-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS, metavar="MP",
                        help=f"the largest image the Upscale tab makes (default {DEFAULT_MAX_MEGAPIXELS:g}; 0: no cap)")
    parser.add_argument("--out", default="outputs", metavar="DIR", help="where run folders go")
    parser.add_argument("--state-dir", default=None, metavar="DIR",
                        help="where the server keeps who owns which run (default: .<out>.webui beside --out); "
                             "never served")
    parser.add_argument("--max-image-megapixels", type=float, default=DEFAULT_MAX_IMAGE_MEGAPIXELS, metavar="MP",
                        help="the largest image (or video frame) a visitor may give, checked before it is decoded "
                             f"(default {DEFAULT_MAX_IMAGE_MEGAPIXELS:g})")
    parser.add_argument("--max-video-frames", type=int, default=DEFAULT_MAX_VIDEO_FRAMES, metavar="N",
                        help=f"the longest video a visitor may restyle (default {DEFAULT_MAX_VIDEO_FRAMES})")
    parser.add_argument("--preset", default="default", metavar="NAME|JSON",
                        help="the preset that fills the form at first")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--vqgan", default=ModelsConfig().vqgan, metavar="NAME|PATH")
    parser.add_argument("--vqgan-config", default=None, metavar="YAML")
    parser.add_argument("--clip-model", dest="clip_models", action="append", nargs="+", metavar="ARG",
                        help="MODEL [PRETRAINED [WEIGHT]], repeatable (default: ViT-B-32 openai)")
    parser.add_argument("--lazy", action="store_true", help="load models on first use instead of at start")
    parser.add_argument("--api-keys", default=None, metavar="FILE",
                        help="the HTTP API's keys (one per line: NAME KEY), also from $GENERATOR_API_KEYS; served "
                             "beyond 127.0.0.1, the API answers only requests with a key (see docs/serving.md)")
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="make the web UI's and the API's jobs on a pool of Ray workers, one per GPU (or per "
                             "--ray-threads CPU threads): a local Ray, or the cluster at ADDRESS (see docs/serving.md)")
    parser.add_argument("--ray-workers", type=int, default=None, metavar="N",
                        help="at most N Ray workers (default: one per GPU of the cluster)")
    parser.add_argument("--ray-threads", type=int, default=None, metavar="N",
                        help="CPU threads per Ray worker on a cluster without GPUs (default 4)")
    parser.add_argument("--max-queue", type=int, default=32, metavar="N",
                        help="jobs waiting or running at most in the HTTP API's queue (with --ray, the web UI's "
                             "too), all callers together (default 32)")
    parser.add_argument("--max-job-megapixels", type=float, default=DEFAULT_MAX_JOB_MEGAPIXELS, metavar="MP",
                        help="the largest image an HTTP API job may make, upscaling included (default "
                             f"{DEFAULT_MAX_JOB_MEGAPIXELS:g}; 0: no cap)")
    parser.add_argument("--max-jobs-per-user", type=int, default=4, metavar="N",
                        help="jobs waiting or running at most per API key (with --ray, per browser too) "
                             "(default 4)")
    from generator.cli.common import add_threads_argument, add_weights_arguments

    add_threads_argument(parser)  # one heavy job at a time (the queue's one slot): one worker's share
    add_weights_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, load the default models (unless --lazy) and serve the UI."""
    from generator.cli.common import configure_logging

    configure_logging()
    args = parse_args(argv)
    try:
        use_threads(args.threads)
        clips = tuple(clip_model_spec(values) for values in args.clip_models) if args.clip_models else None
        models = GenerationConfig.from_dict({"models": {"vqgan": args.vqgan, "vqgan_config": args.vqgan_config,
                                                        **({"clip_models": list(clips)} if clips else {})}}).models
        set_input_limits(args.max_image_megapixels, args.max_video_frames)
        if args.offline:  # the whole process: image addresses, CLIP files and model hints too, not only weights
            os.environ[store.OFFLINE_ENV] = "1"
        studio = Studio(outputs_dir=Path(args.out), models=models, device=args.device, weights_dir=args.weights_dir,
                        offline=args.offline, shared_gallery=args.shared_gallery, state_dir=args.state_dir)
        studio.owners.prepare()
        queue = job_queue(args, studio)
        if not args.lazy:
            try:
                studio.pool.warm() if studio.pool is not None else studio.text_to_image_for(models)
            except GeneratorError as error:
                logger.warning("%s The UI starts anyway; Generate will say the same until this is fixed.", error)
        # Beyond this machine, the path fields take registry names, weights-folder files and uploads only,
        # and image addresses are fetched from the public internet only.
        paths = PathPolicy.for_server(args.host, args.share, weights_dir=args.weights_dir, models=models)
        paths.guard_fetches()
        demo = build_demo(studio=studio, preset=args.preset, paths=paths,
                          max_upscale_megapixels=args.max_upscale_megapixels,
                          runs_at_once=args.max_queue if studio.pool is not None else 1)
        api = api_app(studio, queue, keys=ApiKeys.load(args.api_keys), local=is_local_only(args.host, args.share),
                      paths=paths, max_megapixels=args.max_job_megapixels)
    except (GeneratorError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    Path(args.out).mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _stop)  # a stopped server closes its queue, its workers and the Ray it started
    try:
        demo.launch(**launch_options(studio, host=args.host, port=args.port, share=args.share, css=CSS, api=api))
    finally:
        queue.close()
    return 0


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def job_queue(args: argparse.Namespace, studio: Studio) -> JobQueue:
    """The queue of the HTTP API's jobs: made here under the studio's GPU lock, or with ``--ray``
    on a pool of Ray workers, which then makes the web UI's jobs too (``studio.pool``)."""
    if args.ray is None:
        return JobQueue(studio.gpu, max_queue=args.max_queue, max_per_owner=args.max_jobs_per_user)
    from generator.config_schema import to_plain
    from generator.serving.ray_pool import PoolSettings, RayBackend
    from generator.serving.relay import QueueRelay

    settings = PoolSettings(outputs_dir=str(Path(args.out).resolve()), models=to_plain(studio.models),
                            device=args.device, weights_dir=args.weights_dir, offline=args.offline,
                            state_dir=str(Path(studio.state_dir).resolve()))
    backend = RayBackend(args.ray, settings, workers=args.ray_workers, threads=args.ray_threads)
    queue = JobQueue(backend=backend, max_queue=args.max_queue, max_per_owner=args.max_jobs_per_user)
    studio.pool = QueueRelay(queue)
    return queue


if __name__ == "__main__":
    sys.exit(main())
