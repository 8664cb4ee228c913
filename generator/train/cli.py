"""``python -m generator train vqgan|prior ...``: train a VQGAN or a transformer prior on your images.

``train vqgan --data FOLDER`` trains a VQGAN from scratch (``--model tiny|small|base``) or
fine-tunes one (``--from NAME|FILE``), writing a run folder and the model into the weights
folder, where every menu finds it; ``--resume RUN`` goes on with a stopped run exactly.
``train prior`` is :mod:`generator.train.prior`'s, imported only when asked for.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from generator.cli.common import add_threads_argument, add_weights_arguments
from generator.devices import use_threads
from generator.errors import ConfigError
from generator.events import Event, Notice, Preview, Progress
from generator.train.studio import StudioRecipe

_SHOWN = ("l1", "perceptual", "codebook_loss", "g_loss", "d_loss", "psnr", "codebook_usage")
_SHORT = {"codebook_loss": "vq", "codebook_usage": "usage", "perceptual": "lpips", "g_loss": "g", "d_loss": "d"}


class _TrainParser(argparse.ArgumentParser):
    """Hands everything after ``prior`` to the prior's own parser (built in :func:`run`, so the
    prior's module is imported only when it is asked for)."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        args = list(sys.argv[1:] if args is None else args)
        if args[:1] == ["prior"]:
            return argparse.Namespace(what="prior", prior_args=args[1:]), []
        return super().parse_known_args(args, namespace)


def build_parser(prog: str) -> argparse.ArgumentParser:
    """Parser of the train command and its ``vqgan`` and ``prior`` subcommands."""
    parser = _TrainParser(
        prog=prog, description="Train a VQGAN, or a transformer prior over a VQGAN's codes, on your own images; "
                               "the results are written in the official Taming formats (.ckpt + .yaml) and into "
                               "the weights folder, where every command and the web UI list them.",
        epilog=f"Run `{prog} vqgan --help` or `{prog} prior --help` for their options.")
    commands = parser.add_subparsers(dest="what", required=True, metavar="{vqgan,prior}")
    vqgan = commands.add_parser("vqgan", prog=f"{prog} vqgan", help="train or fine-tune a VQGAN on a folder of images",
                                description="Train a VQGAN on random crops of a folder's images (Taming's losses: L1, "
                                            "LPIPS when its weights are in the weights folder, codebook and "
                                            "commitment, a patch discriminator from --disc-start).",
                                epilog=f"Examples: {prog} vqgan --data my-textures --model tiny --steps 2000 | "
                                       f"{prog} vqgan --data faces --from vqgan_imagenet_f16_16384 --lr 2e-5 | "
                                       f"{prog} vqgan --resume outputs/train-vqgan-faces-20260101-120000")
    add_vqgan_arguments(vqgan)
    commands.add_parser("prior", prog=f"{prog} prior", add_help=False,
                        help="train a transformer prior (GPT) on a VQGAN's codes of a folder of images")
    studio = commands.add_parser(
        "studio", prog=f"{prog} studio", help="the studio model: a tiny VQGAN and prior on images drawn here",
        description="Draw two classes of images (landscapes and patterns, made by this project: MIT), train the "
                    "tiny VQGAN on them and then a class-conditioned prior over its codes, and register both in "
                    "the weights folder (studio_vqgan.ckpt, studio_transformer.ckpt): a decoder that reproduces "
                    "images on a machine without the official weights. About ten minutes on two CPU cores.")
    studio.add_argument("--vqgan-steps", type=int, default=StudioRecipe.vqgan_steps, metavar="N",
                        help=f"VQGAN training steps (default {StudioRecipe.vqgan_steps})")
    studio.add_argument("--prior-steps", type=int, default=StudioRecipe.prior_steps, metavar="N",
                        help=f"prior training steps (default {StudioRecipe.prior_steps})")
    studio.add_argument("--device", default="auto", metavar="DEVICE", help="auto (default), cpu, cuda or cuda:N")
    studio.add_argument("--out", default="outputs", metavar="DIR", help="where its folder goes (default: outputs)")
    add_weights_arguments(studio)
    add_threads_argument(studio)
    return parser


def add_vqgan_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``train vqgan``, named after :class:`VQGANTrainSettings` fields (unset: None)."""
    data = parser.add_argument_group("what to train")
    data.add_argument("--data", metavar="FOLDER", help="the training images (any size; random square crops)")
    data.add_argument("--name", metavar="NAME",
                      help="the model's name in the weights folder (default: the data folder's name)")
    data.add_argument("--model", metavar="tiny|small|base|YAML",
                      help="train from scratch: a named size (tiny f8 ~1M parameters, small f16 ~18M, base f16 "
                           "~72M, the official f16-1024 shape) or an upstream VQGAN .yaml (default: small)")
    data.add_argument("--from", dest="from_model", metavar="NAME|FILE",
                      help="fine-tune this VQGAN (registry name or checkpoint) instead, from exactly its weights")
    data.add_argument("--vqgan-config", metavar="YAML", help="the .yaml of a --from file (default: the one beside it)")
    data.add_argument("--codebook", type=int, metavar="N",
                      help="codes in the codebook (default: the size's, or the loaded model's; more than the loaded "
                           "model's extends its codebook with new codes)")
    data.add_argument("--reinit-codebook", action="store_true", default=None,
                      help="replace a loaded model's codebook by --codebook new codes instead of extending it")
    data.add_argument("--codebook-init", choices=("encoder", "random"),
                      help="how new codes start: encoder (the encoder's outputs on random crops of the data, the "
                           "default) or random (Taming's uniform(-1/n, 1/n))")
    data.add_argument("--resume", metavar="RUN_FOLDER",
                      help="go on with a stopped run from its last.ckpt, with its own settings (only --steps and "
                           "the output and device flags may change); the same steps as an uninterrupted run")

    steps = parser.add_argument_group("training")
    steps.add_argument("--size", type=int, metavar="PX",
                       help="side of the random square crops, a multiple of the downsampling factor (default 256)")
    steps.add_argument("--steps", type=int, metavar="N", help="optimisation steps in all (default 5000)")
    steps.add_argument("--batch-size", type=int, metavar="B", help="crops per micro-batch (default 4)")
    steps.add_argument("--accumulate", type=int, metavar="N",
                       help="micro-batches per step (gradient accumulation, for small GPUs; default 1)")
    steps.add_argument("--lr", type=float, metavar="LR",
                       help="Adam's learning rate, betas (0.5, 0.9) (default 1e-4; Taming: 4.5e-6 x batch x GPUs)")
    steps.add_argument("--seed", type=int, metavar="N", help="the run's seed (default: random, recorded)")
    steps.add_argument("--disc-start", type=int, metavar="STEP",
                       help="the first step with the patch discriminator (default 10000)")
    steps.add_argument("--disc-weight", type=float, metavar="W",
                       help="scale of the adaptive adversarial weight (default 0.8)")
    steps.add_argument("--disc-layers", type=int, metavar="N", help="the discriminator's layers (default 3)")
    steps.add_argument("--disc-ndf", type=int, metavar="C", help="the discriminator's first width (default 64)")
    steps.add_argument("--restart-dead-codes", type=int, metavar="STEPS",
                       help="every STEPS steps, codes the encoder never picked move onto its outputs (more codes in "
                            "use, sharper images); 0: never (default 100 from scratch, 0 with --from)")
    steps.add_argument("--perceptual-weight", type=float, metavar="W",
                       help="weight of the LPIPS term (default 1; 0 turns it off)")
    steps.add_argument("--codebook-weight", type=float, metavar="W",
                       help="weight of the codebook and commitment terms (default 1)")
    steps.add_argument("--beta", type=float, metavar="B", help="the quantiser's beta (default 0.25, as Taming)")

    run_group = parser.add_argument_group("device and outputs")
    run_group.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                           help="auto: bf16 autocast on GPUs from Ampere on and on CPUs with bf16 units, else fp32")
    run_group.add_argument("--compile", action="store_true", default=None,
                           help="torch.compile the encoder, decoder and discriminator (faster steps, slow start)")
    run_group.add_argument("--device", metavar="DEVICE", help="auto (default), cpu, cuda or cuda:N")
    run_group.add_argument("--sample-every", type=int, metavar="N",
                           help="write recon-<step>.png every N steps (default 500)")
    run_group.add_argument("--log-every", type=int, metavar="N",
                           help="write a metrics.jsonl line every N steps (default 10)")
    run_group.add_argument("--save-every", type=int, metavar="N",
                           help="write last.ckpt and the weights folder's copy every N steps (default 1000)")
    run_group.add_argument("--out", metavar="DIR", help="where run folders go (default: outputs)")
    add_weights_arguments(parser)
    add_threads_argument(parser)


_FIELDS = ("data", "name", "model", "from_model", "vqgan_config", "codebook", "reinit_codebook", "codebook_init",
           "size", "steps", "batch_size", "accumulate", "lr", "seed", "disc_start", "disc_weight", "disc_layers",
           "disc_ndf", "restart_dead_codes", "perceptual_weight", "codebook_weight", "beta", "precision", "compile",
           "device", "sample_every", "log_every", "save_every", "out", "weights_dir", "offline")


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}


def run(args: argparse.Namespace) -> int:
    """Run ``train vqgan``, ``train prior`` or ``train studio``; 0 on success."""
    if args.what == "prior":
        return _run_prior(args.prior_args)
    if args.what == "studio":
        return run_studio(args)
    return run_vqgan(args)


def run_studio(args: argparse.Namespace) -> int:
    """Train the studio model (:mod:`generator.train.studio`); prints its two checkpoints."""
    from generator.train.studio import train_studio_model

    if args.vqgan_steps < 1 or args.prior_steps < 1:
        raise ConfigError("--vqgan-steps and --prior-steps must be 1 or more.")
    bar = tqdm(unit="step", desc="studio model", file=sys.stderr, dynamic_ncols=True)

    def show(event: Event) -> None:
        if isinstance(event, Progress):
            bar.total, bar.n = event.total, event.step  # each stage counts from its start
            bar.set_description(f"studio model: {event.stage}", refresh=False)
            bar.refresh()

    try:
        with logging_redirect_tqdm():
            model = train_studio_model(args.out, StudioRecipe(vqgan_steps=args.vqgan_steps,
                                                              prior_steps=args.prior_steps),
                                       device=args.device, weights_dir=args.weights_dir, on_event=show)
    finally:
        bar.close()
    print(f"studio model: {model.folder / 'studio.png'}", file=sys.stderr)
    print(model.vqgan)
    print(model.prior)
    return 0


def run_vqgan(args: argparse.Namespace) -> int:
    """Train (or resume) a VQGAN from parsed arguments; prints the trained checkpoint's path."""
    from generator.train.vqgan_settings import VQGANTrainSettings  # torch and models, once needed
    from generator.train.vqgan_train import VQGANTraining

    given = _given(args)
    if args.resume:
        training = VQGANTraining.resume(args.resume, given)
    else:
        if "data" not in given:
            raise ConfigError("give the training images with --data FOLDER (or --resume RUN_FOLDER to go on with a "
                              "run).")
        if "from_model" in given and "model" in given:
            raise ConfigError("give --model (train from scratch) or --from (fine-tune), not both.")
        training = VQGANTraining.start(VQGANTrainSettings(**given))
    result = _train_with_bar(training)
    training.place.close()
    if training.place.main:  # under torchrun the first process says what was made
        print(f"run folder: {result.run_folder}", file=sys.stderr)
        print(result.registered)
    return 0


def _train_with_bar(training: Any) -> Any:
    total = training.settings.steps
    bar = tqdm(total=total, initial=training.step, unit="step", desc=f"train {training.name}", file=sys.stderr,
               dynamic_ncols=True, disable=not training.place.main)

    def show(event: Event) -> None:
        if isinstance(event, Progress):
            bar.update(training.step - bar.n)
            bar.set_postfix(_postfix(event.loss, event.losses), refresh=False)
        elif isinstance(event, Preview):
            bar.set_description(f"train {training.name} (recon-{event.step:06d}.png)", refresh=False)
        elif isinstance(event, Notice):
            tqdm.write(f"note: {event.message}", file=sys.stderr)

    try:
        with logging_redirect_tqdm():
            return training.run(on_event=show)
    finally:
        bar.close()


def _postfix(loss: float | None, losses: Mapping[str, float]) -> dict[str, str]:
    shown = {"loss": f"{loss:.4f}"} if loss is not None else {}
    for key in _SHOWN:
        if key in losses and (key not in ("g_loss", "d_loss") or losses.get("d_weight", 0.0) or key == "d_loss"):
            value = losses[key]
            shown[_SHORT.get(key, key)] = f"{value:.2f}" if key in ("psnr",) else f"{value:.3f}"
    return shown


def _run_prior(rest: list[str]) -> int:
    """``train prior``: the prior module's own flags and run (imported only now)."""
    try:
        from generator.train.prior import add_prior_arguments, run_prior
    except ModuleNotFoundError as error:
        if error.name != "generator.train.prior":
            raise
        raise ConfigError("training a prior is not available in this version; `train vqgan` is.") from None
    parser = argparse.ArgumentParser(
        prog="python -m generator train prior",
        description="Train a transformer prior (GPT) on the codes a VQGAN gives a folder of images.")
    add_prior_arguments(parser)
    parsed = parser.parse_args(rest)
    if hasattr(parsed, "threads"):
        use_threads(parsed.threads)
    return run_prior(parsed)
