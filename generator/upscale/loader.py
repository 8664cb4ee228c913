"""Load ESRGAN-family upscalers: the Real-ESRGAN registry models or any file spandrel recognises.

The state dict is read with the project's safe reader (``params_ema``, ``params`` or bare),
then spandrel detects the architecture and builds the network; no ``basicsr``. The denoise
strength of ``realesr-general-x4v3`` blends its weights with ``realesr-general-wdn-x4v3``
(Real-ESRGAN's DNI: ``strength * general + (1 - strength) * wdn``; 1 denoises most).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F
from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

from generator.devices import cpu_has_native_bf16, cuda_half_dtype
from generator.errors import CheckpointError, ConfigError, summary
from generator.upscale.memory import PROBE_SIDE, widest_activation
from generator.weights import store
from generator.weights.checkpoints import open_checkpoint
from generator.weights.download import ProgressCallback
from generator.weights.pickle_scan import shown
from generator.weights.state_dicts import StateDict, state_dict_from

logger = logging.getLogger(__name__)

CONTAINERS = ("params_ema", "params", "state_dict")
DNI_PARTNERS = {"realesr_general_x4v3": "realesr_general_wdn_x4v3"}
# Tiles need this much context to match the untiled result where the receptive field is
# larger than any sensible margin (RRDBNet's is hundreds of pixels; far pixels barely matter).
DEFAULT_TILE_PAD = 24
HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Upscaler:
    """A loaded super-resolution network, kept in the channels_last layout (oneDNN's and
    cuDNN's convolutions are faster with it: 1.4x in float32 and 2.4x in bf16 on a CPU).

    Attributes:
        descriptor: spandrel's description and module.
        name: registry name or file, for messages and metadata.
    """

    descriptor: ImageModelDescriptor
    name: str

    def __post_init__(self) -> None:
        self.descriptor.model.to(memory_format=torch.channels_last)

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def architecture(self) -> str:
        return self.descriptor.architecture.name

    @property
    def device(self) -> torch.device:
        return next(self.descriptor.model.parameters()).device

    @property
    def multiple_of(self) -> int:
        """Input sides must be a multiple of this (pixel-unshuffle models)."""
        return max(1, int(self.descriptor.size_requirements.multiple_of))

    @property
    def tile_pad(self) -> int:
        """Context around each tile: the exact receptive field of compact (SRVGG) networks,
        so tiled output equals untiled output; a fixed margin for deeper ones."""
        model = self.descriptor.model
        convs = getattr(model, "num_conv", None)
        pad = int(convs) + 3 if isinstance(convs, int) else DEFAULT_TILE_PAD
        return -(-pad // self.multiple_of) * self.multiple_of

    @cached_property
    def widest_activation(self) -> float:
        """Values per input pixel of the network's largest activation, for sizing tiles."""
        side = max(PROBE_SIDE, self.descriptor.size_requirements.minimum)
        side = -(-side // self.multiple_of) * self.multiple_of
        return widest_activation(self.descriptor.model, self.unclamped, self.device, side)

    def unclamped(self, pixels: torch.Tensor) -> torch.Tensor:
        """The network's output for (1, 3, H, W) ``pixels`` before any clamping: spandrel's
        ``descriptor(x)`` clamps to [0, 1], which turns +inf into 1 and hides it from a
        finiteness check. Pads to the network's size requirements as spandrel does (reflect,
        then replicate) and crops back; runs the architecture's own call where spandrel has one
        (outputs in tuples, extra input channels)."""
        descriptor = self.descriptor
        _, _, height, width = pixels.shape
        pad_w, pad_h = descriptor.size_requirements.get_padding(width, height)
        if pad_w or pad_h:
            reflect_w, reflect_h = min(pad_w, width - 1), min(pad_h, height - 1)
            pixels = F.pad(pixels, (0, reflect_w, 0, reflect_h), "reflect")
            pixels = F.pad(pixels, (0, pad_w - reflect_w, 0, pad_h - reflect_h), "replicate")
        call = getattr(descriptor, "_call_fn", None)  # spandrel's per-architecture call (private, so guarded)
        output = call(descriptor.model, pixels) if callable(call) else descriptor.model(pixels)
        return output[..., :height * self.scale, :width * self.scale] if pad_w or pad_h else output

    def half_dtype(self) -> torch.dtype | None:
        """The reduced precision ``auto`` runs this network in on its device, or None (float32).

        On CUDA fp16 where the network supports it (its error is a tenth of bf16's: 0.0012 against
        0.0116 at most on realesr-general-x4v3), else bf16 where the network and this GPU (the
        one the network is on) support it. On the CPU bf16 where the CPU has bf16 units and the
        network supports it (2.4x faster than float32 there); fp16 is not faster on CPUs.
        """
        device, descriptor = self.device, self.descriptor
        if device.type == "cuda":
            if descriptor.supports_half:
                return torch.float16
            if descriptor.supports_bfloat16 and cuda_half_dtype(device) is torch.bfloat16:
                return torch.bfloat16
            return None
        if device.type == "cpu" and descriptor.supports_bfloat16 and cpu_has_native_bf16():
            return torch.bfloat16
        return None

    def autocast_dtype(self, precision: str = "auto") -> torch.dtype | None:
        """The autocast dtype of ``precision`` (``auto``, ``fp32``, ``bf16``, ``fp16``), or None (float32).

        Raises:
            ConfigError: an unknown precision, or one the network does not support.
        """
        if precision == "fp32":
            return None
        if precision == "auto":
            return self.half_dtype()
        if precision not in HALF_DTYPES:
            raise ConfigError(f"unknown upscale precision {precision!r}; use auto, fp32, bf16 or fp16.")
        dtype = HALF_DTYPES[precision]
        supported = self.descriptor.supports_bfloat16 if dtype is torch.bfloat16 else self.descriptor.supports_half
        if not supported:
            raise ConfigError(f"{self.name} ({self.architecture}) does not work in {precision}; use auto or fp32.")
        return dtype


def upscaler_registry_name(name: str) -> str:
    """Official file names work too: ``RealESRGAN_x4plus`` -> ``realesrgan_x4plus``."""
    lowered = name.lower().replace("-", "_")
    return lowered if lowered in store.REGISTRY and name not in store.REGISTRY else name


def _state(path: Path, weights_dir: str | os.PathLike[str] | None) -> StateDict:
    """The network's tensors, read only after spandrel has sized the network their shapes imply
    (:func:`_check_size_on_meta`)."""
    checkpoint = open_checkpoint(path, weights_dir=weights_dir)
    try:
        state = state_dict_from(checkpoint, source=path.name, containers=CONTAINERS)
        _check_size_on_meta(state, path.name)
        return checkpoint.read(state)
    finally:
        checkpoint.close()


def _other_kind(state: StateDict) -> str | None:
    """The kind of checkpoint this project knows that is not an upscaler, if it is one."""
    if any(key.startswith(("transformer.", "first_stage_model.")) for key in state):
        return "a Taming transformer"
    if any(key.startswith("quantize.") for key in state) and any(key.startswith("encoder.") for key in state):
        return "a VQGAN"
    if "token_embedding.weight" in state or any(key.startswith("visual.") for key in state):
        return "a CLIP model"
    return None


def _check_size_on_meta(state: StateDict, source: str) -> None:
    """spandrel infers the architecture from tensor shapes; build it on the ``meta`` device
    first, so a file whose shapes imply a far larger network than it holds costs nothing."""
    skeleton = _descriptor_for(state, source, torch.device("meta"))
    implied = sum(t.numel() * t.element_size() for t in (*skeleton.model.parameters(), *skeleton.model.buffers()))
    held = sum(t.numel() * t.element_size() for t in state.values())
    if implied > 4 * held + 2**20:  # a half-precision file becomes a float32 network
        raise CheckpointError(f"{source} implies a network of {implied:,} bytes but holds {held:,}, which no "
                              "upscaler file does; give a super-resolution model's own file.")


def _descriptor_for(state: StateDict, source: str, device: torch.device | None = None) -> ImageModelDescriptor:
    """spandrel's descriptor of the network ``state`` holds (built on ``device``: ``meta`` to size it)."""
    kind = _other_kind(state)
    if kind is not None:
        raise CheckpointError(f"{source} is {kind} checkpoint, not an upscaler; give an ESRGAN-family model's file.")
    try:
        if device is not None and device.type == "meta":
            with warnings.catch_warnings(), torch.device("meta"):
                warnings.simplefilter("ignore")  # copying into meta tensors is a no-op, as intended here
                descriptor = ModelLoader(device=device).load_from_state_dict(state)
        else:
            descriptor = ModelLoader().load_from_state_dict(state)
    except UnsupportedModelError:
        raise CheckpointError(
            f"{source} is not an upscaler spandrel recognises (ESRGAN, Real-ESRGAN, SwinIR, ...); "
            "give a super-resolution model's .pth or .safetensors file."
        ) from None
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
        raise CheckpointError(f"{source} could not be built as an upscaler ({shown(summary(error))}); give a "
                              "super-resolution model's file (this one may be truncated or another kind "
                              "of model).") from None
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.purpose not in ("SR", "Restoration"):
        raise CheckpointError(f"{source} is a {descriptor.architecture.name} model for {descriptor.purpose}, "
                              "not an upscaler.")
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise CheckpointError(f"{source} works on {descriptor.input_channels}-channel images; "
                              "only RGB upscalers are supported.")
    return descriptor


def load_upscaler(name_or_path: str, *, denoise: float | None = None, device: str | torch.device = "cpu",
                  weights_dir: str | os.PathLike[str] | None = None, offline: bool | None = None,
                  progress: ProgressCallback | None = None) -> Upscaler:
    """Load an upscaler by registry name (``realesrgan_x4plus``) or file, in eval mode on ``device``.

    Args:
        denoise: denoise strength in [0, 1] for ``realesr_general_x4v3`` (None: its own weights).

    Raises:
        WeightsError: missing or failed download.
        CheckpointError: unsafe, damaged, or not an upscaler.
        ConfigError: a denoise strength for a model that has no denoising partner.
    """
    name = upscaler_registry_name(name_or_path)
    path = store.resolve(name, kind="upscaler", weights_dir=weights_dir, offline=offline, progress=progress)
    state = _state(path, weights_dir)
    if denoise is not None:
        if name not in DNI_PARTNERS:
            raise ConfigError(f"a denoise strength works with {', '.join(DNI_PARTNERS)} only, not {Path(name).name}.")
        if not 0 <= denoise <= 1:
            raise ConfigError(f"the denoise strength must be between 0 and 1, not {denoise}.")
        partner = _state(store.resolve(DNI_PARTNERS[name], kind="upscaler", weights_dir=weights_dir,
                                       offline=offline, progress=progress), weights_dir)
        if partner.keys() != state.keys() or any(partner[k].shape != state[k].shape for k in state):
            raise CheckpointError(f"{DNI_PARTNERS[name]} does not have the layout of {name}, "
                                  "so they cannot be blended.")
        state = {k: denoise * state[k].float() + (1 - denoise) * partner[k].float() for k in state}
    descriptor = _descriptor_for(state, Path(path).name)
    descriptor.model.requires_grad_(False)
    descriptor.to(torch.device(device)).eval()
    label = name if denoise is None else f"{name} (denoise {denoise:g})"
    return Upscaler(descriptor, label)
