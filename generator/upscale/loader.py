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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

from generator.errors import CheckpointError, ConfigError, summary
from generator.weights import store
from generator.weights.checkpoints import read_checkpoint
from generator.weights.download import ProgressCallback
from generator.weights.pickle_scan import shown
from generator.weights.state_dicts import StateDict, state_dict_from

logger = logging.getLogger(__name__)

CONTAINERS = ("params_ema", "params", "state_dict")
DNI_PARTNERS = {"realesr_general_x4v3": "realesr_general_wdn_x4v3"}
# Tiles need this much context to match the untiled result where the receptive field is
# larger than any sensible margin (RRDBNet's is hundreds of pixels; far pixels barely matter).
DEFAULT_TILE_PAD = 24


@dataclass
class Upscaler:
    """A loaded super-resolution network.

    Attributes:
        descriptor: spandrel's description and module.
        name: registry name or file, for messages and metadata.
    """

    descriptor: ImageModelDescriptor
    name: str

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

    def half_dtype(self) -> torch.dtype | None:
        """The reduced precision this network supports on CUDA, or None."""
        if self.device.type != "cuda":
            return None
        if self.descriptor.supports_bfloat16 and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if self.descriptor.supports_half else None


def upscaler_registry_name(name: str) -> str:
    """Official file names work too: ``RealESRGAN_x4plus`` -> ``realesrgan_x4plus``."""
    lowered = name.lower().replace("-", "_")
    return lowered if lowered in store.REGISTRY and name not in store.REGISTRY else name


def _state(path: Path) -> StateDict:
    return state_dict_from(read_checkpoint(path), source=path.name, containers=CONTAINERS)


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
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # copying into meta tensors is a no-op, as intended here
        skeleton = ModelLoader(device=torch.device("meta")).load_from_state_dict(state)
    implied = sum(t.numel() for t in (*skeleton.model.parameters(), *skeleton.model.buffers()))
    held = sum(t.numel() for t in state.values())
    if implied > 2 * held + 2**20:
        raise CheckpointError(f"{source} implies a network of {implied:,} values but holds {held:,}, which no "
                              "upscaler file does; give a super-resolution model's own file.")


def _descriptor_for(state: StateDict, source: str) -> ImageModelDescriptor:
    kind = _other_kind(state)
    if kind is not None:
        raise CheckpointError(f"{source} is {kind} checkpoint, not an upscaler; give an ESRGAN-family model's file.")
    try:
        _check_size_on_meta(state, source)
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
    state = _state(path)
    if denoise is not None:
        if name not in DNI_PARTNERS:
            raise ConfigError(f"a denoise strength works with {', '.join(DNI_PARTNERS)} only, not {Path(name).name}.")
        if not 0 <= denoise <= 1:
            raise ConfigError(f"the denoise strength must be between 0 and 1, not {denoise}.")
        partner = _state(store.resolve(DNI_PARTNERS[name], kind="upscaler", weights_dir=weights_dir,
                                         offline=offline, progress=progress))
        if partner.keys() != state.keys() or any(partner[k].shape != state[k].shape for k in state):
            raise CheckpointError(f"{DNI_PARTNERS[name]} does not have the layout of {name}, "
                                  "so they cannot be blended.")
        state = {k: denoise * state[k].float() + (1 - denoise) * partner[k].float() for k in state}
    descriptor = _descriptor_for(state, Path(path).name)
    descriptor.model.requires_grad_(False)
    descriptor.to(torch.device(device)).eval()
    label = name if denoise is None else f"{name} (denoise {denoise:g})"
    return Upscaler(descriptor, label)


@dataclass
class UpscalerCache:
    """Loads upscalers on first use and keeps them, for pipelines that upscale their results."""

    device: torch.device
    weights_dir: str | os.PathLike[str] | None = None
    offline: bool | None = None
    loaded: dict[tuple[str, float | None], Upscaler] = field(default_factory=dict)

    def get(self, name: str, denoise: float | None = None) -> Upscaler:
        key = (name, denoise)
        if key not in self.loaded:
            self.loaded[key] = load_upscaler(name, denoise=denoise, device=self.device,
                                             weights_dir=self.weights_dir, offline=self.offline)
        return self.loaded[key]
