"""The VQGAN training objective of "Taming Transformers for High-Resolution Image Synthesis"
(Esser, Rombach and Ommer, CVPR 2021, arXiv:2012.09841), written for this project.

The autoencoder minimises, per step,

    |x - x_rec|  +  perceptual_weight * LPIPS(x, x_rec)                     (reconstruction, "nll")
    + codebook_weight * (codebook and commitment terms of the quantiser)
    + d_weight * disc_factor * (-mean D(x_rec))                             (adversarial, from disc_start)

and the patch discriminator D minimises the hinge loss on real and reconstructed images. The
adversarial weight is adaptive, ``||grad nll|| / (||grad g_loss|| + 1e-4)`` at the decoder's
last layer, clamped to [0, 1e4], times ``disc_weight``. Module and parameter names follow
the upstream checkpoints (``loss.discriminator.main.0.weight``,
``loss.perceptual_loss.lin0.model.1.weight``, ``loss.perceptual_loss.net.slice1.0.weight``), so
a checkpoint written here holds the same keys as one Taming wrote.

LPIPS ("The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", Zhang et al.,
CVPR 2018) needs two files in the weights folder: ``vgg.pth`` (its five linear layers) and
torchvision's VGG16 weights ``vgg16-397923af.pth``. Without them training goes on without
the perceptual term, which is said once. Both files are pickles, so they are read through the
project's trust boundary (:mod:`generator.weights.checkpoints`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from generator.errors import CheckpointError
from generator.weights import store
from generator.weights.checkpoints import read_checkpoint
from models.vqgan import nearest_code_indices

logger = logging.getLogger(__name__)

LPIPS_FILE = "vgg.pth"
VGG16_FILES = ("vgg16-397923af.pth", "vgg16.pth")
LPIPS_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
"""Channels of the five VGG16 feature maps LPIPS compares (relu1_2 ... relu5_3)."""
# torchvision's VGG16 ``features``: 3x3 convolutions (each followed by a ReLU) and max pools ("M").
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# Where upstream cuts ``features`` into its five slices (indices into the layer list).
_VGG16_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))


# --------------------------------------------------------------------------------------------
# quantiser


class TrainingQuantized(NamedTuple):
    """What :func:`quantize_for_training` returns for a latent of shape (B, C, h, w)."""

    z_st: torch.Tensor
    """(B, C, h, w) straight-through output: the codes' values, the latent's gradient."""
    loss: torch.Tensor
    """() codebook + commitment loss (float32)."""
    indices: torch.Tensor
    """(B, h, w) int64 code indices."""


def quantize_for_training(z: torch.Tensor, codebook: torch.Tensor, beta: float = 0.25,
                          legacy: bool = True) -> TrainingQuantized:
    """Quantise ``z`` to its nearest codes with the straight-through estimator and the VQ losses.

    The two terms are ``mean((sg[z_q] - z)^2)`` (commitment: pulls the encoder to its codes)
    and ``mean((z_q - sg[z])^2)`` (codebook: pulls the used codes to the encoder outputs).
    Taming's quantiser (``legacy``, its default, with which every released model was trained)
    puts ``beta`` on the codebook term; the paper (and ``legacy=False``) puts it on the
    commitment term. The indices are those :class:`models.vqgan.VectorQuantizer` picks.

    Args:
        z: (B, C, h, w) encoder output after ``quant_conv``.
        codebook: (n_embed, C) the codebook (a parameter: it receives the codebook term's gradient).
        beta: the weight of one of the two terms (see above).
        legacy: Taming's weighting.
    """
    indices = nearest_code_indices(z, codebook)  # (B, h, w)
    z_q = F.embedding(indices, codebook).permute(0, 3, 1, 2)  # (B, C, h, w), gradient to the codebook
    z32, z_q32 = z.float(), z_q.float()
    commitment = torch.mean((z_q32.detach() - z32) ** 2)
    codebook_term = torch.mean((z_q32 - z32.detach()) ** 2)
    loss = commitment + beta * codebook_term if legacy else beta * commitment + codebook_term
    z_st = z + (z_q.to(z.dtype) - z).detach()  # (B, C, h, w)
    return TrainingQuantized(z_st=z_st, loss=loss, indices=indices)


def codebook_statistics(indices: torch.Tensor, n_codes: int) -> tuple[float, float]:
    """(fraction of the ``n_codes`` codes used in ``indices``, perplexity of their histogram)."""
    counts = torch.bincount(indices.reshape(-1), minlength=n_codes).float()  # (n_codes,)
    probabilities = counts / counts.sum().clamp_min(1)
    perplexity = torch.exp(-(probabilities * torch.log(probabilities + 1e-10)).sum())
    return float((counts > 0).sum()) / n_codes, float(perplexity)


# --------------------------------------------------------------------------------------------
# LPIPS


class ScalingLayer(nn.Module):
    """Images in [-1, 1] to the input statistics VGG16 was trained on (upstream ``ScalingLayer``)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale  # (B, 3, H, W)


class VGG16Features(nn.Module):
    """torchvision's VGG16 ``features`` cut into five slices ending at relu1_2 ... relu5_3,
    each layer keeping its index in ``features`` (``slice2.5`` is ``features.5``)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in _VGG16_LAYOUT:
            if width == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(width), 3, padding=1), nn.ReLU(inplace=True)]
                channels = int(width)
        for number, (start, end) in enumerate(_VGG16_SLICES, start=1):
            part = nn.Sequential()
            for index in range(start, end):
                part.add_module(str(index), layers[index])
            setattr(self, f"slice{number}", part)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for number in range(1, len(_VGG16_SLICES) + 1):
            x = getattr(self, f"slice{number}")(x)  # (B, C_k, H / 2^(k-1), W / 2^(k-1))
            outputs.append(x)
        return outputs


class LinearHead(nn.Module):
    """A 1x1 convolution to one channel weighing a feature map's squared differences; the
    dropout before it (upstream ``NetLinLayer``) only keeps the key names ``model.1.weight``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """The learned perceptual distance, frozen and always in eval mode (no dropout).

    ``forward(x, y)`` takes two (B, 3, H, W) batches in [-1, 1] and returns (B, 1, 1, 1).
    """

    def __init__(self) -> None:
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = VGG16Features()
        for index, channels in enumerate(LPIPS_CHANNELS):
            setattr(self, f"lin{index}", LinearHead(channels))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        """Stays in eval mode: the metric is deterministic."""
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        features_x = self.net(self.scaling_layer(x))
        features_y = self.net(self.scaling_layer(y))
        total = None
        for index, (fx, fy) in enumerate(zip(features_x, features_y, strict=True)):
            diff = (_unit_channels(fx) - _unit_channels(fy)) ** 2  # (B, C_k, H_k, W_k)
            score = getattr(self, f"lin{index}").model(diff).mean(dim=(2, 3), keepdim=True)  # (B, 1, 1, 1)
            total = score if total is None else total + score
        assert total is not None
        return total


def _unit_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Each position's feature vector divided by its length."""
    return x / (torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) + eps)


def lpips_files(weights_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path] | None:
    """(``vgg.pth``, the VGG16 weights) in the weights folder, or None when either is missing."""
    root = store.weights_dir(weights_dir)
    linear = root / LPIPS_FILE
    vgg = next((root / name for name in VGG16_FILES if (root / name).is_file()), None)
    return (linear, vgg) if linear.is_file() and vgg is not None else None


def lpips_missing_message(weights_dir: str | os.PathLike[str] | None = None) -> str:
    """The one line said when LPIPS is not available."""
    root = store.weights_dir(weights_dir)
    return (f"training goes on without the perceptual (LPIPS) term: it needs {LPIPS_FILE} ({LPIPS_URL}) and "
            f"{VGG16_FILES[0]} ({VGG16_URL}) in {root}; put both there to add it")


def load_lpips(weights_dir: str | os.PathLike[str] | None = None) -> LPIPS | None:
    """LPIPS with its weights from the weights folder, or None (said once) when they are absent.

    Raises:
        CheckpointError: a file is there but is not what it should be.
    """
    found = lpips_files(weights_dir)
    if found is None:
        logger.warning(lpips_missing_message(weights_dir))
        return None
    linear_file, vgg_file = found
    linear = _tensors(read_checkpoint(linear_file, weights_dir=weights_dir))
    vgg = _tensors(read_checkpoint(vgg_file, weights_dir=weights_dir))
    model = LPIPS()
    state: dict[str, torch.Tensor] = dict(model.state_dict())
    wanted = {key for key in state if key.startswith("lin")}
    missing = sorted(wanted - set(linear))
    if missing:
        raise CheckpointError(f"{linear_file.name} is not the LPIPS file (it has no {missing[0]}); download it "
                              f"again from {LPIPS_URL}.")
    state.update({key: linear[key] for key in wanted})
    slices = {index: number for number, (start, end) in enumerate(_VGG16_SLICES, start=1)
              for index in range(start, end)}
    for key in [k for k in state if k.startswith("net.")]:
        _, part, index, name = key.split(".")
        source = f"features.{index}.{name}"
        if source not in vgg or f"slice{slices[int(index)]}" != part:
            raise CheckpointError(f"{vgg_file.name} is not torchvision's VGG16 weights (it has no {source}); "
                                  f"download it again from {VGG16_URL}.")
        state[key] = vgg[source]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise CheckpointError(f"{vgg_file.name} or {linear_file.name} holds tensors of other shapes than VGG16 "
                              "LPIPS needs; download them again.") from None
    logger.info("perceptual loss: LPIPS from %s and %s", linear_file.name, vgg_file.name)
    return model


def _tensors(loaded: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: its top level, or its ``state_dict``."""
    inner = loaded.get("state_dict")
    source = inner if isinstance(inner, Mapping) else loaded
    return {key: value for key, value in source.items() if isinstance(value, torch.Tensor)}


# --------------------------------------------------------------------------------------------
# discriminator


class NLayerDiscriminator(nn.Module):
    """The PatchGAN discriminator of pix2pix (Isola et al., CVPR 2017) that Taming uses: one
    logit per overlapping patch (70x70 pixels for three layers).

    4x4 convolutions: one of stride 2 with LeakyReLU(0.2), ``n_layers - 1`` more of stride 2
    with BatchNorm, one of stride 1 with BatchNorm, and a stride-1 convolution to one channel.
    Image (B, C, H, W) -> logits (B, 1, h, w).
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for n in range(1, n_layers + 1):
            out = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.LeakyReLU(0.2, True)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.n_layers = n_layers
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Taming's initialisation: convolutions N(0, 0.02), BatchNorm scales N(1, 0.02), shifts 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)  # (B, 1, h, w)


def discriminator_min_size(n_layers: int) -> int:
    """The smallest image side that leaves the discriminator at least one logit."""
    size = 1
    for _ in range(2):  # the two stride-1 4x4 convolutions each take 1 pixel off
        size += 1
    for _ in range(n_layers):  # stride-2 4x4 convolutions with padding 1 halve the size
        size *= 2
    return size


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss: ``(mean relu(1 - real) + mean relu(1 + fake)) / 2``."""
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def adaptive_weight(nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    disc_weight: float) -> torch.Tensor:
    """``||d nll / d last_layer|| / (||d g_loss / d last_layer|| + 1e-4)``, clamped to [0, 1e4] and
    detached, times ``disc_weight``: the adversarial term's gradient at the decoder's last layer
    is scaled to the size of the reconstruction term's."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.norm(nll_grad.float()) / (torch.norm(g_grad.float()) + 1e-4)
    return torch.clamp(weight, 0.0, 1e4).detach() * disc_weight


# --------------------------------------------------------------------------------------------
# the loss


@dataclass(frozen=True)
class LossSettings:
    """The weights of the objective; names as upstream's ``lossconfig.params`` (plus ``beta``,
    which upstream keeps in the quantiser, fixed at 0.25).

    ``disc_start`` counts optimisation steps: steps 0 .. disc_start - 1 train without the
    discriminator (it is not run and not updated, and the adversarial term is 0).
    """

    disc_start: int = 10000
    disc_weight: float = 0.8
    disc_factor: float = 1.0
    disc_num_layers: int = 3
    disc_ndf: int = 64
    disc_in_channels: int = 3
    codebook_weight: float = 1.0
    pixelloss_weight: float = 1.0
    perceptual_weight: float = 1.0
    beta: float = 0.25

    def upstream_params(self) -> dict[str, Any]:
        """``lossconfig.params`` of an upstream yaml (upstream ``VQLPIPSWithDiscriminator``)."""
        params = asdict(self)
        params.pop("beta")
        return {**params, "disc_conditional": False, "disc_loss": "hinge", "use_actnorm": False}


class VQGANLoss(nn.Module):
    """Taming's ``VQLPIPSWithDiscriminator``: the discriminator (``discriminator``) and, when its
    weights are present, LPIPS (``perceptual_loss``)."""

    def __init__(self, settings: LossSettings, perceptual: LPIPS | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.discriminator = NLayerDiscriminator(settings.disc_in_channels, settings.disc_ndf,
                                                 settings.disc_num_layers)
        if perceptual is not None and settings.perceptual_weight > 0:
            self.perceptual_loss = perceptual

    @property
    def has_perceptual(self) -> bool:
        """Whether the LPIPS term is part of the objective."""
        return hasattr(self, "perceptual_loss")

    def discriminator_on(self, step: int) -> bool:
        """Whether optimisation step ``step`` (0-based) trains with the discriminator."""
        return step >= self.settings.disc_start and self.settings.disc_factor > 0

    def reconstruction(self, x: torch.Tensor, x_rec: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(nll, parts): ``pixelloss_weight * mean|x - x_rec| + perceptual_weight * mean LPIPS``."""
        l1 = torch.abs(x.float() - x_rec.float()).mean()
        parts = {"l1": l1.detach()}
        nll = self.settings.pixelloss_weight * l1
        if self.has_perceptual:
            perceptual = self.perceptual_loss(x, x_rec).float().mean()
            parts["perceptual"] = perceptual.detach()
            nll = nll + self.settings.perceptual_weight * perceptual
        return nll, parts

    def generator_loss(self, x: torch.Tensor, x_rec: torch.Tensor, codebook_loss: torch.Tensor, step: int,
                       last_layer: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The autoencoder's loss at step ``step`` and its parts (detached).

        Before ``disc_start`` the discriminator is not run and the adversarial term is 0.
        The discriminator's own parameters get no gradient from this loss.
        """
        nll, parts = self.reconstruction(x, x_rec)
        total = nll + self.settings.codebook_weight * codebook_loss
        zero = torch.zeros((), device=x.device)
        g_loss, d_weight = zero, zero
        if self.discriminator_on(step):
            self.discriminator.requires_grad_(False)
            try:
                g_loss = -self.discriminator(x_rec).float().mean()
            finally:
                self.discriminator.requires_grad_(True)
            d_weight = adaptive_weight(nll, g_loss, last_layer, self.settings.disc_weight)
            total = total + d_weight * self.settings.disc_factor * g_loss
        parts.update(nll=nll.detach(), codebook_loss=codebook_loss.detach(), g_loss=g_loss.detach(),
                     d_weight=d_weight.detach())
        return total, parts

    def discriminator_loss(self, x: torch.Tensor, x_rec: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The discriminator's hinge loss on real ``x`` and reconstructed ``x_rec`` (both detached)."""
        logits_real = self.discriminator(x.detach())
        logits_fake = self.discriminator(x_rec.detach())
        loss = self.settings.disc_factor * hinge_d_loss(logits_real, logits_fake)
        return loss, {"d_loss": loss.detach(), "logits_real": logits_real.float().mean().detach(),
                      "logits_fake": logits_fake.float().mean().detach()}
