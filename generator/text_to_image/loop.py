"""The CLIP-guided VQGAN optimisation (VQGAN+CLIP) as an object with explicit state.

A :class:`GuidanceLoop` holds one or more images being optimised together: each with its
latent, the latent it started from, its prompt targets and its own random streams. One
:meth:`GuidanceLoop.step` does, for all of them at once: straight-through quantise, decode,
clamp (with gradient), cut out and augment (each image from its own streams), embed with
every CLIP model, sum the weighted spherical-distance prompt losses (plus MSE toward the
*initial* latent with a decaying weight, plus optional TV), step the optimiser, clamp the
latent to the codebook's range.

The loop can be driven from outside: :meth:`~GuidanceLoop.replace_latent` re-seeds an image
from a new latent (an animation's transformed frame), :meth:`~GuidanceLoop.retarget` changes
what it is pulled toward, and stepping simply continues.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from generator.config import OptimConfig
from generator.decoder.protocol import Decoder
from generator.devices import Precision, SeedStreams, autocast
from generator.errors import NonFiniteError, summary
from generator.io.images import tensor_to_pil
from generator.text_to_image.compiled import compiled, is_compiler_error
from generator.text_to_image.losses import ClipGuide, clamp_with_grad
from generator.text_to_image.targets import ImageTargets

OPTIMISERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adagrad": torch.optim.Adagrad,
    "adamax": torch.optim.Adamax, "radam": torch.optim.RAdam, "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def synthesize(vqgan: Decoder, z: torch.Tensor, recomputed_levels: int = 0) -> torch.Tensor:
    """Latents (B, C, h, w) -> images (B, 3, H, W) in [0, 1], through straight-through
    quantisation, differentiably (``recomputed_levels``: see :meth:`VQGAN.decode`)."""
    z_st = vqgan.quantize(z).z_st
    if z.device.type == "cuda":
        z_st = z_st.contiguous(memory_format=torch.channels_last)
    return clamp_with_grad(vqgan.decode(z_st, recomputed_levels).add(1).div(2), 0.0, 1.0)


def recomputed_levels(vqgan: Decoder, setting: str) -> int:
    """How many of the decoder's finest levels to recompute in the backward pass.

    ``auto`` recomputes the levels at a quarter of the image's side and finer: they hold
    most of the decoder's activations, and recomputing them cost about 5% of a step on a
    CPU (256 px) for about 0.4 GB (more at larger sizes; see BENCHMARKS.md). ``off`` keeps
    everything, ``decoder`` recomputes every level.
    """
    levels = vqgan.decode_levels
    if setting == "off":
        return 0
    if setting == "decoder":
        return levels
    return min(levels, 3)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels."""
    vertical = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
    horizontal = (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean()
    return vertical + horizontal


@dataclass
class ImageEdit:
    """What an edit keeps of an image: its base pixels, where it may change, and its output.

    Attributes:
        base: (1, 3, H, W) pixels in [0, 1] on the canvas: what the mask keeps.
        mask: (1, 1, H, W) feathered mask, 1 = change.
        cells: (1, 1, h, w) bool: the latent cells that are optimised; the rest keep ``kept``.
        kept: (1, C, h, w) the latent the unoptimised cells hold.
        output: (width, height) of the image given out (the canvas's top-left part).
    """

    base: torch.Tensor
    mask: torch.Tensor
    cells: torch.Tensor
    kept: torch.Tensor
    output: tuple[int, int]

    def composite(self, pixels: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) decoded pixels over the base, through the mask (differentiably)."""
        return pixels * self.mask + self.base * (1 - self.mask)


@dataclass
class PixelAnchor:
    """Pixels an image is pulled toward (temporal consistency in videos): the loss is
    ``weight`` times the mean squared difference over the pixels ``mask`` covers.

    Attributes:
        target: (1, 3, H, W) pixels in [0, 1].
        mask: (1, 1, H, W) in [0, 1]: where the pull holds (0: free).
        weight: the loss's weight.
    """

    target: torch.Tensor
    mask: torch.Tensor
    weight: float

    def loss(self, pixels: torch.Tensor) -> torch.Tensor:
        """The weighted masked MSE of ``pixels`` (1, 3, H, W); 0 when the mask is empty."""
        covered = self.mask.sum() * pixels.shape[1]
        squared = (pixels - self.target).pow(2) * self.mask
        return squared.sum() / covered.clamp(min=1) * self.weight


@dataclass
class GuidedImage:
    """One image of the loop.

    Attributes:
        latent: the optimised latent, (1, C, h, w), a leaf that requires grad.
        initial: the latent the MSE regulariser pulls toward, (1, C, h, w).
        targets: its prompt targets.
        streams: its random streams (crop geometry, augmentations, noise).
        optim: its loss weights (init MSE, TV) and learning rate.
        step: steps this image has taken (its own clock: schedules and decays follow it).
        edit: what an edit keeps of it (None: the whole image is made).
        anchor: pixels it is pulled toward (None: none).
    """

    latent: torch.Tensor
    initial: torch.Tensor
    targets: ImageTargets
    streams: SeedStreams
    optim: OptimConfig
    step: int = 0
    edit: ImageEdit | None = None
    anchor: PixelAnchor | None = None

    def init_weight(self) -> float:
        """The weight of the MSE toward the initial latent at the next step: constant, or
        falling linearly to zero at ``init_weight_decay_steps``."""
        weight, decay_steps = self.optim.init_weight, self.optim.init_weight_decay_steps
        if not decay_steps:
            return weight
        return weight * max(0.0, 1.0 - (self.step + 1) / decay_steps)


@dataclass
class StepReport:
    """What one step computed, kept on the device until asked for.

    Attributes:
        totals: (B,) total loss of each image.
        losses: per image, its loss parts by label.
    """

    totals: torch.Tensor
    losses: list[dict[str, torch.Tensor]]

    def values(self, index: int = 0) -> tuple[float, dict[str, float]]:
        """(total, parts) of image ``index`` as Python floats (one device-to-host copy)."""
        parts = self.losses[index]
        numbers = torch.stack([self.totals[index], *(value.detach().float() for value in parts.values())]).tolist()
        return numbers[0], dict(zip(parts, numbers[1:], strict=True))


class GuidanceLoop:
    """Images optimised together against CLIP, step by step.

    Args:
        vqgan: decodes the latents.
        guide: the CLIP ensemble with its cutouts.
        optimiser: a name from :data:`OPTIMISERS`.
        device: where the latents live.
        precision: the autocast dtype of the decoder and of CLIP. With fp16 the loss is
            scaled (steps whose gradients overflow are skipped, as torch's GradScaler does).
        recomputed_levels: decoder levels recomputed in the backward pass (memory for time).
        compile: run the decoder and the CLIP encoders through ``torch.compile``; if the
            compiler fails, the loop continues without it and says so in :attr:`notices`.
    """

    def __init__(self, vqgan: Decoder, guide: ClipGuide, *, optimiser: str, device: torch.device,
                 precision: Precision | None = None, recomputed_levels: int = 0, compile: bool = False):
        self.vqgan, self.guide, self.device = vqgan, guide, device
        self.notices: list[str] = []  # things the user should hear about (taken by the driver)
        self._synthesize = synthesize
        self._compiling = compile
        if compile:
            self._synthesize = compiled(synthesize)
            for member in guide.members:
                member.encode = compiled(member.clip.encode_image)
        self.precision = precision or Precision()
        self.recomputed_levels = recomputed_levels
        fp16 = torch.float16 in (self.precision.decoder, self.precision.clip, self.precision.clip_weights)
        self._scaler = torch.amp.GradScaler(device.type) if fp16 and device.type == "cuda" else None
        self._good = torch.empty(0)  # the latest latents known to decode to a real image, (B, C, h, w)
        self._good_steps: list[int] = []  # and the step each image had reached then
        self.images: list[GuidedImage] = []
        self._optimiser_class = OPTIMISERS[optimiser]
        self._optimiser: torch.optim.Optimizer | None = None
        codebook = vqgan.codebook.detach().float()
        self._low = codebook.min(dim=0).values[None, :, None, None]  # (1, C, 1, 1)
        self._high = codebook.max(dim=0).values[None, :, None, None]

    def add_image(self, latent: torch.Tensor, targets: ImageTargets, streams: SeedStreams, optim: OptimConfig,
                  edit: ImageEdit | None = None) -> int:
        """Add an image starting from ``latent`` (1, C, h, w); returns its index. With ``edit``
        only its cells are optimised and every decoded image is composited over its base.

        Every image of a loop must have the latent shape of the first.
        """
        if self.images and latent.shape != self.images[0].latent.shape:
            raise ValueError(f"latent {tuple(latent.shape)} differs from the loop's "
                             f"{tuple(self.images[0].latent.shape)}")
        leaf = latent.detach().float().to(self.device).clone().requires_grad_(True)
        image = GuidedImage(leaf, leaf.detach().clone(), self._on_device(targets), streams, optim,
                            edit=self._edit_on_device(edit))
        leaf.register_hook(lambda grad: grad if image.edit is None else grad * image.edit.cells)  # kept cells stay
        self.images.append(image)
        self._good, self._good_steps = self.latents(), [image.step for image in self.images]
        group = {"params": [leaf], "lr": optim.lr}
        if self._optimiser is None:
            self._optimiser = self._optimiser_class([group])
        else:
            self._optimiser.add_param_group(group)
        return len(self.images) - 1

    def step(self) -> StepReport:
        """One optimisation step of every image. Nothing is read back from the device here;
        :meth:`check` does that when a caller needs the numbers."""
        assert self._optimiser is not None, "add an image before stepping"
        if self._compiling:
            streams = [image.streams.snapshot() for image in self.images]
            try:
                return self._step()
            except Exception as error:  # noqa: BLE001 - only compiler errors are handled, the rest re-raised
                if not is_compiler_error(error):
                    raise
                self._stop_compiling(error)
                for image, snapshot in zip(self.images, streams, strict=True):  # the same draws again
                    image.streams.restore(snapshot)
        return self._step()

    def _stop_compiling(self, error: BaseException) -> None:
        """Continue without torch.compile after it failed (the failed step changed nothing)."""
        self._compiling, self._synthesize = False, synthesize
        for member in self.guide.members:
            member.encode = None
        self.release()
        self.notices.append(f"--compile failed ({summary(error)}); continuing without compiling.")

    def take_notices(self) -> list[str]:
        """The notices gathered since the last call (and forget them)."""
        taken, self.notices = self.notices, []
        return taken

    def _step(self) -> StepReport:
        self._optimiser.zero_grad(set_to_none=True)
        latents = torch.cat([image.latent for image in self.images])  # (B, C, h, w)
        with autocast(self.device, self.precision.decoder):
            pixels = self._synthesize(self.vqgan, latents, self.recomputed_levels).float()  # (B, 3, H, W)
        pixels = self._composited(pixels)
        with autocast(self.device, self.precision.clip):
            losses = self.guide.losses(pixels, [image.targets.at(image.step) for image in self.images],
                                       [image.streams for image in self.images],
                                       [image.targets.masks for image in self.images])
        for index, image in enumerate(self.images):
            if image.optim.init_weight:
                losses[index]["init_mse"] = F.mse_loss(image.latent, image.initial) * image.init_weight()
            if image.optim.tv_weight:
                losses[index]["tv"] = total_variation(pixels[index]) * image.optim.tv_weight
            if image.anchor is not None:
                losses[index]["temporal"] = image.anchor.loss(pixels[index : index + 1])
        totals = torch.stack([torch.stack([value.float() for value in parts.values()]).sum() for parts in losses])
        if self._scaler is not None:
            self._scaler.scale(totals.sum()).backward()
            self._scaler.step(self._optimiser)
            self._scaler.update()
        else:
            totals.sum().backward()
            self._optimiser.step()
        with torch.no_grad():
            for image in self.images:
                image.latent.clamp_(min=self._low, max=self._high)
                if image.edit is not None:  # an optimiser with weight decay moves even cells without gradient
                    image.latent.copy_(torch.where(image.edit.cells, image.latent, image.edit.kept))
                image.step += 1
        return StepReport(totals.detach(), [{k: v.detach() for k, v in parts.items()} for parts in losses])

    def check(self, report: StepReport) -> None:
        """Make sure the step behind ``report`` was finite (its loss, and the latents it left,
        which a non-finite gradient spoils even when the loss was finite), and remember the
        latents as good.

        This reads from the device (a synchronisation on a GPU), so callers do it when they
        report progress anyway. When something is not finite (a half-precision overflow) the
        latents go back to the last good ones.

        Raises:
            NonFiniteError: not finite; the last good image stays decodable.
        """
        latents = self.latents()
        if bool(torch.isfinite(report.totals).all() & torch.isfinite(latents).all()):  # one read from the device
            self._good, self._good_steps = latents, [image.step for image in self.images]
            return
        failed_at = self.images[0].step
        with torch.no_grad():
            for image, good, step in zip(self.images, self._good, self._good_steps, strict=True):
                image.latent.copy_(good[None])
                image.step = step
        where = f"at step {failed_at}, so the run stopped at its last good image (step {self._good_steps[0]})"
        if self.precision.half:
            dtype = str(self.precision.half).removeprefix("torch.")
            raise NonFiniteError(f"the optimisation stopped giving numbers in {dtype} {where}; run again with "
                                 "--precision fp32 (or bf16 on a GPU that has it).")
        raise NonFiniteError(f"the optimisation stopped giving numbers {where}; the models or the inputs give NaN or "
                             "infinity: check the weights files and the init and image prompts.")

    def release(self) -> None:
        """Drop the gradients and the optimiser's graph references (after a failed step)."""
        if self._optimiser is not None:
            self._optimiser.zero_grad(set_to_none=True)

    def replace_latent(self, index: int, latent: torch.Tensor, *, reset_optimiser: bool = False) -> None:
        """Continue image ``index`` from ``latent`` (same shape), which also becomes the
        target of the MSE regulariser. The optimiser's running statistics are kept unless
        ``reset_optimiser``."""
        image = self.images[index]
        with torch.no_grad():
            image.latent.copy_(latent.to(image.latent))
            image.initial = image.latent.detach().clone()
            self._good[index] = image.initial[0]
            self._good_steps[index] = image.step
        if reset_optimiser and self._optimiser is not None:
            self._optimiser.state.pop(image.latent, None)

    def set_edit(self, index: int, edit: ImageEdit | None) -> None:
        """From the next step on, optimise only ``edit``'s cells of image ``index`` and composite
        it over ``edit``'s base (None: the whole image again)."""
        self.images[index].edit = self._edit_on_device(edit)

    def set_anchor(self, index: int, anchor: PixelAnchor | None) -> None:
        """From the next step on, pull image ``index`` toward ``anchor``'s pixels (None: no pull)."""
        self.images[index].anchor = None if anchor is None else PixelAnchor(
            anchor.target.to(self.device).float(), anchor.mask.to(self.device).float(), anchor.weight)

    def _edit_on_device(self, edit: ImageEdit | None) -> ImageEdit | None:
        if edit is None:
            return None
        return ImageEdit(edit.base.to(self.device), edit.mask.to(self.device), edit.cells.to(self.device),
                         edit.kept.to(self.device).float(), edit.output)

    def retarget(self, index: int, targets: ImageTargets) -> None:
        """Pull image ``index`` toward ``targets`` from the next step on."""
        self.images[index].targets = self._on_device(targets)

    def _on_device(self, targets: ImageTargets) -> ImageTargets:
        if targets.masks is None or targets.masks.device == self.device:
            return targets
        return dataclasses.replace(targets, masks=targets.masks.to(self.device))

    def _composited(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) decoded images, each edited one composited over its base."""
        if all(image.edit is None for image in self.images):
            return pixels
        return torch.cat([pixels[i : i + 1] if image.edit is None else image.edit.composite(pixels[i : i + 1])
                          for i, image in enumerate(self.images)])

    def latents(self) -> torch.Tensor:
        """(B, C, h, w) detached copies of the current latents."""
        return torch.cat([image.latent.detach() for image in self.images]).clone()

    def decode(self, indices: Sequence[int] | None = None) -> list[Image.Image]:
        """The current images (all, or those at ``indices``), decoded without gradients."""
        chosen = range(len(self.images)) if indices is None else indices
        latents = torch.cat([self.images[i].latent.detach() for i in chosen])
        with torch.inference_mode(), autocast(self.device, self.precision.decoder):
            pixels = synthesize(self.vqgan, latents).float()
        images = []
        for index, image in zip(chosen, pixels, strict=True):
            edit = self.images[index].edit
            if edit is not None:
                image = edit.composite(image[None])[0][:, : edit.output[1], : edit.output[0]]
            images.append(tensor_to_pil(image))
        return images
