"""One VQGAN training step, this project's against the original Taming Transformers code on the
same shapes: steps per second and peak memory.

A step is what both trainers do for one batch once the discriminator is on: the autoencoder's
loss (L1, LPIPS, codebook and commitment, the adversarial term with its adaptive weight at the
decoder's last layer), its backward pass and Adam step, then the discriminator's hinge loss,
backward pass and step. Both sides build the same architecture (``--ch``/``--ch-mult``, f16 by
default, GroupNorm of 32) with LPIPS of random weights (no download), Adam (0.5, 0.9), fp32.
The original is ``taming.models.vqgan.VQModel`` and ``VQLPIPSWithDiscriminator`` from a
throwaway install, never a dependency of the project::

    pip install --no-deps --target .taming taming-transformers-rom1504==0.0.6   # .taming/ is git-ignored
    python bench/train.py --taming .taming                 # CPU: 64 px crops, batch 2
    python bench/train.py --taming .taming --size 256 --batch 4 --ch 128 --res-blocks 2   # a GPU, official widths

Each measurement runs in a fresh process (so the peak memory is its own: the GPU's peak
allocation, or the process's peak resident memory on a CPU), the two sides alternated over
``--repeats``; one JSON line each, then a summary line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import commit, emit, last_record, machine, peak_mb, reset_peak
from tests.parity import taming_stand_ins

SIDES = ("studio", "taming")


def ddconfig(args: argparse.Namespace) -> dict:
    mult = [int(m) for m in args.ch_mult.split(",")]
    return dict(double_z=False, z_channels=args.z, resolution=args.size, in_channels=3, out_ch=3, ch=args.ch,
                ch_mult=mult, num_res_blocks=args.res_blocks, attn_resolutions=[args.size // 2 ** (len(mult) - 1)],
                dropout=0.0)


def loss_params(args: argparse.Namespace) -> dict:
    return dict(disc_start=0, disc_weight=0.8, codebook_weight=1.0, disc_in_channels=3, disc_num_layers=3,
                disc_ndf=64, perceptual_weight=1.0)


def studio_step(args: argparse.Namespace, device: torch.device):
    """The project's step (generator.train: the modules and loss ``train vqgan`` uses)."""
    from generator.train.vqgan_losses import LPIPS, LossSettings, VQGANLoss, quantize_for_training
    from models.vqgan import VQGAN, VQGANConfig

    config = VQGANConfig(**{k: v for k, v in ddconfig(args).items() if k in VQGANConfig.field_names()},
                         n_embed=args.codes, embed_dim=args.z)
    vqgan = VQGAN(config).to(device).train()
    params = loss_params(args)
    settings = LossSettings(disc_start=0, disc_weight=params["disc_weight"], disc_ndf=params["disc_ndf"],
                            disc_num_layers=params["disc_num_layers"])
    loss = VQGANLoss(settings, LPIPS()).to(device).train()
    optimizer = torch.optim.Adam(vqgan.parameters(), lr=1e-4, betas=(0.5, 0.9))
    disc_optimizer = torch.optim.Adam(loss.discriminator.parameters(), lr=1e-4, betas=(0.5, 0.9))
    last_layer = vqgan.decoder.conv_out.weight

    def step(x: torch.Tensor, index: int) -> None:
        h = vqgan.quant_conv(vqgan.encoder(x))
        quantized = quantize_for_training(h, vqgan.codebook)
        x_rec = vqgan.decode(quantized.z_st)
        total, _ = loss.generator_loss(x, x_rec, quantized.loss, index, last_layer)
        total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        d_loss, _ = loss.discriminator_loss(x, x_rec)
        d_loss.backward()
        disc_optimizer.step()
        disc_optimizer.zero_grad(set_to_none=True)

    return step


def taming_step(args: argparse.Namespace, device: torch.device):
    """The original's step, as its Lightning ``training_step`` runs it (optimiser 0, then 1),
    with the discriminator's parameters frozen during the autoencoder's step as Lightning does."""
    sys.path.insert(0, args.taming)
    taming_stand_ins.install()
    from taming.models.vqgan import VQModel

    lossconfig = {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator", "params": loss_params(args)}
    model = VQModel(ddconfig=ddconfig(args), lossconfig=lossconfig, n_embed=args.codes, embed_dim=args.z).to(device)
    model.train()
    optimizer = torch.optim.Adam([*model.encoder.parameters(), *model.decoder.parameters(),
                                  *model.quantize.parameters(), *model.quant_conv.parameters(),
                                  *model.post_quant_conv.parameters()], lr=1e-4, betas=(0.5, 0.9))
    disc_optimizer = torch.optim.Adam(model.loss.discriminator.parameters(), lr=1e-4, betas=(0.5, 0.9))

    def step(x: torch.Tensor, index: int) -> None:
        x_rec, qloss = model(x)
        model.loss.discriminator.requires_grad_(False)
        aeloss, _ = model.loss(qloss, x, x_rec, 0, index, last_layer=model.get_last_layer(), split="train")
        aeloss.backward()
        model.loss.discriminator.requires_grad_(True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        discloss, _ = model.loss(qloss, x, x_rec, 1, index, last_layer=model.get_last_layer(), split="train")
        discloss.backward()
        disc_optimizer.step()
        disc_optimizer.zero_grad(set_to_none=True)

    return step


def measure_one(args: argparse.Namespace) -> None:
    """One side in this process: warm-up steps, then the timed ones."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    step = (studio_step if args.side == "studio" else taming_step)(args, device)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device) * 2 - 1
    for index in range(args.warmup):
        step(x, index)
    reset_peak(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for index in range(args.steps):
        step(x, args.warmup + index)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    print(json.dumps({"side": args.side, "steps_per_s": args.steps / seconds, "peak_mb": peak_mb(device)}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taming", default=None, metavar="DIR", help="the throwaway install of the original")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=64, help="crop side (default 64)")
    parser.add_argument("--batch", type=int, default=2, help="crops per step (default 2)")
    parser.add_argument("--ch", type=int, default=64, help="base width, a multiple of 32 (default 64; official 128)")
    parser.add_argument("--ch-mult", default="1,1,2,2,4", help="width multipliers (default f16: 1,1,2,2,4)")
    parser.add_argument("--res-blocks", type=int, default=1, help="res blocks per level (default 1; official 2)")
    parser.add_argument("--z", type=int, default=256, help="latent and code width (default 256)")
    parser.add_argument("--codes", type=int, default=1024, help="codebook size (default 1024)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="alternated repeats (default 2)")
    parser.add_argument("--side", choices=SIDES, default=None, help=argparse.SUPPRESS)  # one measurement
    args = parser.parse_args(argv)
    if args.side is not None:
        measure_one(args)
        return 0
    sides = SIDES if args.taming else ("studio",)
    if not args.taming:
        print("no --taming install given: measuring this project's step only (see the docstring for the original)",
              file=sys.stderr)
    base = {"bench": "train", "commit": commit(), "machine": machine(torch.device(args.device)), "size": args.size,
            "batch": args.batch, "ch": args.ch, "ch_mult": args.ch_mult, "res_blocks": args.res_blocks}
    found: dict[str, list[dict]] = {side: [] for side in sides}
    for repeat in range(args.repeats):
        for side in sides:
            command = [sys.executable, __file__, "--side", side, *_forwarded(argv or sys.argv[1:])]
            record = last_record(command)
            found[side].append(record)
            emit({**base, **record, "repeat": repeat, "steps_per_s": round(record["steps_per_s"], 4),
                  "peak_mb": round(record["peak_mb"], 1)})
    summary = {side: {"steps_per_s": round(statistics.median(r["steps_per_s"] for r in records), 4),
                      "peak_mb": round(statistics.median(r["peak_mb"] for r in records), 1)}
               for side, records in found.items()}
    emit({**base, "summary": True, **summary})
    return 0


def _forwarded(argv: list[str]) -> list[str]:
    """The measurement options to pass to one side's process (not --repeats)."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item == "--repeats":
            skip = True
            continue
        if item.startswith("--repeats="):
            continue
        kept.append(item)
    return kept


if __name__ == "__main__":
    sys.exit(main())
