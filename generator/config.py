"""Run configs: one frozen dataclass tree per mode, built from defaults < preset < flags.

:class:`GenerationConfig` decides a text-to-image run, :class:`SampleConfig` a prior-sampling
run; an animation's config extends the first (:mod:`generator.animate.config`). Every field
maps one to one onto a CLI flag (``cutouts.cutn`` is ``--cutn``) and a UI
widget. ``to_dict``/``from_dict`` give the plain-JSON form embedded in every output, so a run
can be repeated exactly (``--from final.png``). Unknown keys and out-of-range values are
:class:`ConfigError` with one sentence naming the key. A run's seed is resolved in one place,
:meth:`with_seed`.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from generator.config_schema import build_config, to_plain
from generator.errors import ConfigError

OPTIMISERS = ("adam", "adamw", "adagrad", "adamax", "radam", "rmsprop", "sgd")
INIT_MODES = ("random", "pixels", "gradient", "image", "prior", "latent")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
RECOMPUTE = ("auto", "off", "decoder")
MAX_SIDE = 4096


def ensure(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` (one sentence naming the key) unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def new_seed() -> int:
    """A fresh seed for a run that did not ask for one (recorded in its output)."""
    return random.SystemRandom().randrange(2**31)


class _RunConfig:
    """What every run config offers: copies, the plain form, and the resolved seed."""

    seed: int | None

    def replace(self, **changes: Any) -> Self:
        """A copy with top-level fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def with_seed(self) -> Self:
        """This config with its seed resolved: the seed asked for, else a fresh random one.

        The one place a run's seed is chosen; pipelines call it when a run starts, and it
        returns the config itself once a seed is set.
        """
        return self if self.seed is not None else self.replace(seed=new_seed())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (tuples become lists)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from the plain form; unknown keys and wrong types are :class:`ConfigError`."""
        return build_config(cls, data)


def _check_common(seed: int | None, size: tuple[int, int] | None, precision: str) -> None:
    ensure(seed is None or 0 <= seed < 2**63, f"seed must be a non-negative integer, not {seed}.")
    ensure(precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    if size is not None:
        ensure(len(size) == 2, "size must be two numbers: width and height.")
        width, height = size
        ensure(16 <= width <= MAX_SIDE and 16 <= height <= MAX_SIDE,
               f"size {width}x{height} is out of range; each side must be between 16 and {MAX_SIDE} pixels.")


@dataclass(frozen=True)
class ClipModelConfig:
    """One CLIP model of the guiding ensemble.

    Attributes:
        model: an open_clip architecture name (``ViT-B-32``) or an open_clip model-config
            JSON file.
        pretrained: an open_clip pretrained tag (``openai``), a registry name, a local
            weights file, or None for random weights (tests only).
        weight: this model's share of the loss.
    """

    model: str = "ViT-B-32"
    pretrained: str | None = "openai"
    weight: float = 1.0

    def __post_init__(self) -> None:
        ensure(bool(self.model.strip()), "clip_models: a CLIP model needs an architecture name or a config file.")
        ensure(math.isfinite(self.weight) and self.weight > 0,
               f"clip_models: the weight of {self.model} must be a positive number, not {self.weight}.")

    @property
    def identity(self) -> tuple[str, str | None]:
        """What has to be loaded (the weight only matters to the loss)."""
        return (self.model, self.pretrained)


@dataclass(frozen=True)
class ModelsConfig:
    """Which networks to use: registry names or local files.

    ``prior`` (a Taming transformer) is loaded for ``init=prior``; its own VQGAN then
    replaces ``vqgan``, since the sampled codes belong to it.
    """

    vqgan: str = "vqgan_imagenet_f16_16384"
    vqgan_config: str | None = None
    clip_models: tuple[ClipModelConfig, ...] = (ClipModelConfig(),)
    prior: str | None = None
    prior_config: str | None = None

    def __post_init__(self) -> None:
        ensure(bool(self.vqgan.strip()), "vqgan must name a registry VQGAN or a checkpoint file.")
        ensure(len(self.clip_models) > 0, "clip_models must list at least one CLIP model.")

    @property
    def identity(self) -> tuple:
        return (self.vqgan, self.vqgan_config, tuple(c.identity for c in self.clip_models),
                self.prior, self.prior_config)


AUGMENTATION_NAMES = ("affine", "perspective", "jitter", "sharpness", "noise", "erasing", "flip", "rotation",
                      "resized-crop", "crop", "elastic", "thin-plate", "grayscale")
"""The cutouts' augmentations by short name (each made by generator/text_to_image/cutouts.py),
here so that front ends list them without importing kornia."""


@dataclass(frozen=True)
class CutoutConfig:
    """How the decoded image is cut into augmented crops for CLIP.

    Attributes:
        cutn: crops per step (more: better gradients, more memory).
        cut_pow: crop-size exponent; above 1 favours small crops, below 1 large ones.
        augments: kornia augmentations by short name (:data:`AUGMENTATION_NAMES`; see
            generator/text_to_image/cutouts.py).
        noise_fac: maximum strength of the Gaussian noise added to each crop.
    """

    cutn: int = 32
    cut_pow: float = 1.0
    augments: tuple[str, ...] = ("affine", "perspective", "jitter", "erasing")
    noise_fac: float = 0.1

    def __post_init__(self) -> None:
        ensure(1 <= self.cutn <= 1024, f"cutn must be between 1 and 1024, not {self.cutn}.")
        ensure(0 < self.cut_pow <= 10, f"cut_pow must be in (0, 10], not {self.cut_pow}.")
        ensure(0 <= self.noise_fac <= 1, f"noise_fac must be between 0 and 1, not {self.noise_fac}.")


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser and the regularising losses.

    Attributes:
        optimiser: one of adam, adamw, adagrad, adamax, radam, rmsprop, sgd.
        lr: learning rate of the latent.
        init_weight: weight of the MSE that pulls the latent toward its *initial* value.
        init_weight_decay_steps: the init weight falls linearly to zero at this step
            (0 keeps it constant).
        tv_weight: weight of the total-variation (smoothness) loss on the image.
    """

    optimiser: str = "adam"
    lr: float = 0.1
    init_weight: float = 0.0
    init_weight_decay_steps: int = 0
    tv_weight: float = 0.0

    def __post_init__(self) -> None:
        ensure(self.optimiser in OPTIMISERS,
               f"optimiser must be one of {', '.join(OPTIMISERS)}, not {self.optimiser!r}.")
        ensure(0 < self.lr <= 10, f"lr must be in (0, 10], not {self.lr}.")
        ensure(self.init_weight >= 0, f"init_weight must be 0 or more, not {self.init_weight}.")
        ensure(self.init_weight_decay_steps >= 0, "init_weight_decay_steps must be 0 or more.")
        ensure(self.tv_weight >= 0, f"tv_weight must be 0 or more, not {self.tv_weight}.")


@dataclass(frozen=True)
class InitConfig:
    """Where the latent starts.

    Attributes:
        init: ``random`` (random codebook entries), ``pixels`` (pixel noise),
            ``gradient`` (smooth random gradients), ``image`` (an init image), ``prior``
            (codes sampled by the transformer ``models.prior``), ``latent`` (the saved
            latent of an earlier run, to continue it).
        init_image: the image for ``init=image``.
        init_latent: for ``init=latent``, a run folder or its ``latent.safetensors``.
        prior_top_k, prior_top_p, prior_temperature, prior_class: how ``init=prior``
            samples (see the ``sample`` command).
        variation_seed: a second seed whose random start is mixed into this seed's (seed
            variations; see :func:`generator.text_to_image.latents.mix_starts`). Only the
            random start is mixed: the run's ``seed`` still decides the cutouts, their
            augmentations and noise, and noise prompts. It varies the random starts
            (``random``, ``pixels``, ``gradient``) and an edit's random fill
            (``mask_fill=random``); an init image, a saved latent and a prior's codes have no
            such noise, and are refused with it. None: no variation.
        variation_strength: how far toward the variation seed's start, from 0 (exactly the
            seed's image) to 1 (the variation seed's start); given with ``variation_seed``.
    """

    init: str = "random"
    init_image: str | None = None
    init_latent: str | None = None
    prior_top_k: int = 250
    prior_top_p: float = 1.0
    prior_temperature: float = 1.0
    prior_class: int | None = None
    variation_seed: int | None = None
    variation_strength: float | None = None

    def __post_init__(self) -> None:
        ensure(self.init in INIT_MODES, f"init must be one of {', '.join(INIT_MODES)}, not {self.init!r}.")
        ensure(self.init != "image" or bool(self.init_image),
               "init=image needs an init_image; give --init-image PATH.")
        ensure(self.init != "latent" or bool(self.init_latent),
               "init=latent needs an init_latent: the run folder to continue (or its latent.safetensors).")
        check_sampling(self.prior_top_k, self.prior_top_p, self.prior_temperature, prefix="prior_")
        check_variation(self.variation_seed, self.variation_strength)

    @property
    def varies(self) -> bool:
        """Whether the random start is mixed with a variation seed's."""
        return self.variation_seed is not None


@dataclass(frozen=True)
class OutputConfig:
    """Frames and video.

    Attributes:
        save_every: a preview (and, on the CLI, a frame) every this many steps; 0 for none.
        video: assemble the frames into an mp4 at the end.
        gif: also write an animated gif.
        fps: frames per second of the video.
    """

    save_every: int = 0
    video: bool = False
    gif: bool = False
    fps: int = 10

    def __post_init__(self) -> None:
        ensure(self.save_every >= 0, f"save_every must be 0 or more, not {self.save_every}.")
        ensure(1 <= self.fps <= 120, f"fps must be between 1 and 120, not {self.fps}.")


@dataclass(frozen=True)
class UpscaleConfig:
    """The ESRGAN stage: upscale the results (or, with ``python -m generator upscale``, any image).

    Attributes:
        upscale: output factor (0: off); the network's own factor is followed by a LANCZOS
            resize when they differ.
        upscale_model: registry upscaler (``realesrgan_x4plus``, ``realesr_general_x4v3``...)
            or any ESRGAN-family file spandrel recognises.
        upscale_tile: core tile side in pixels (0: the whole image at once).
        upscale_tile_pad: context around each tile (None: the model's receptive field, or 24).
        upscale_denoise: denoise strength 0..1 for ``realesr_general_x4v3``.
        upscale_alpha: ``network`` (alpha through the model too) or ``resize``.
        upscale_precision: ``auto`` (half precision where the model supports it: fp16 or bf16 on CUDA,
            bf16 on CPUs with bf16 units) or ``fp32``.
        upscale_seamless: ``x``, ``y`` or ``xy``: the image wraps around along those axes (a
            seamless texture), so the network sees across the wrap seam and the upscaled copy
            tiles without one; empty: off.
    """

    upscale: float = 0.0
    upscale_model: str = "realesrgan_x4plus"
    upscale_tile: int = 256
    upscale_tile_pad: int | None = None
    upscale_denoise: float | None = None
    upscale_alpha: str = "network"
    upscale_precision: str = "auto"
    upscale_seamless: str = ""

    def __post_init__(self) -> None:
        ensure(self.upscale == 0 or 1 <= self.upscale <= 16,
               f"upscale must be 0 (off) or a factor from 1 to 16, not {self.upscale}.")
        ensure(bool(self.upscale_model.strip()), "upscale_model must name a registry upscaler or a file.")
        ensure(self.upscale_tile == 0 or 32 <= self.upscale_tile <= 4096,
               f"upscale_tile must be 0 (no tiles) or between 32 and 4096, not {self.upscale_tile}.")
        ensure(self.upscale_tile_pad is None or 0 <= self.upscale_tile_pad <= 512, "upscale_tile_pad must be 0 to 512.")
        ensure(self.upscale_denoise is None or 0 <= self.upscale_denoise <= 1,
               f"upscale_denoise must be between 0 and 1, not {self.upscale_denoise}.")
        ensure(self.upscale_alpha in ("network", "resize"), "upscale_alpha must be network or resize.")
        ensure(self.upscale_precision in ("auto", "fp32"), "upscale_precision must be auto or fp32.")
        ensure(self.upscale_seamless in ("", "x", "y", "xy"),
               f"upscale_seamless must be x, y, xy or empty (off), not {self.upscale_seamless!r}.")

    @property
    def suffix(self) -> str:
        """File-name suffix of upscaled copies: ``_x4``, ``_x2.5``."""
        return f"_x{self.upscale:g}"


SEAMLESS = ("", "x", "y", "xy")
MASK_FILLS = ("original", "random")


@dataclass(frozen=True)
class EditConfig:
    """Editing an image (``init_image``) instead of making one from nothing, and seamless tiles.

    Attributes:
        mask: a mask image (white = change, black = keep) or ``alpha`` (the init image's
            transparency: transparent = change). Only the masked part changes; pixels outside
            a hard mask come out exactly as they went in.
        mask_blur: feathering of the mask's edges, the Gaussian's standard deviation in pixels
            (0: a hard edge, outside which every pixel is the input's exactly).
        mask_fill: where the masked part starts: ``original`` (the image's own latent) or
            ``random`` (random codebook entries: a fresh start inside the mask).
        outpaint: pixels added on each side, (left, top, right, bottom): the canvas grows and
            the new border continues the image, which is kept exactly.
        seamless: ``x``, ``y`` or ``xy``: the image wraps around along those axes, so copies of
            it tile without a seam (the decoder pads circularly, cutouts wrap around the edges).
    """

    mask: str | None = None
    mask_blur: float = 4.0
    mask_fill: str = "original"
    outpaint: tuple[int, int, int, int] | None = None
    seamless: str = ""

    def __post_init__(self) -> None:
        ensure(self.mask is None or bool(str(self.mask).strip()), "mask must name a mask image, or be alpha.")
        ensure(0 <= self.mask_blur <= 256, f"mask_blur must be between 0 and 256 pixels, not {self.mask_blur}.")
        ensure(self.mask_fill in MASK_FILLS, f"mask_fill must be one of {', '.join(MASK_FILLS)}, not "
                                             f"{self.mask_fill!r}.")
        ensure(self.seamless in SEAMLESS, f"seamless must be x, y, xy or empty (off), not {self.seamless!r}.")
        if self.outpaint is not None:
            ensure(len(self.outpaint) == 4, "outpaint must be four numbers: left, top, right and bottom.")
            ensure(all(0 <= side <= MAX_SIDE for side in self.outpaint),
                   f"outpaint sides must be between 0 and {MAX_SIDE} pixels, not {list(self.outpaint)}.")
            ensure(any(self.outpaint), "outpaint adds nothing; give at least one side, e.g. --outpaint right=128.")

    @property
    def edits(self) -> bool:
        """Whether this edits an image (a mask or an outpaint), rather than making one."""
        return self.mask is not None or self.outpaint is not None


@dataclass(frozen=True)
class GenerationConfig(_RunConfig):
    """Everything that decides a text-to-image run.

    Attributes:
        prompts: text prompts, ``text:weight:stop`` entries separated by ``|``; ``^``
            separates story phrases (see generator/prompts.py).
        image_prompts: image files in the same grammar.
        noise_prompts: ``seed:weight`` entries.
        change_prompt_every: steps per story phrase (0: split the steps evenly).
        size: (width, height) in pixels, or None to pick by device (512 on a GPU with
            enough memory). Rounded down to the VQGAN's downsampling factor.
        steps: optimisation steps.
        seed: the seed of every random draw; None picks one (recorded in the output).
        precision: ``auto`` (each GPU's native half precision; on the CPU bf16 for the VQGAN
            where the CPU has bf16 units), ``fp32``, ``bf16``, ``fp16``.
        recompute: ``auto`` (recompute the VQGAN decoder's finest levels in the backward
            pass: much less memory for about 5% more time), ``off``, or ``decoder`` (all
            levels).
        deterministic: on CUDA, only bitwise-reproducible kernels (slower; warping
            augmentations, which have none, are refused). The CPU is always reproducible.
        compile: run the VQGAN decoder and CLIP through ``torch.compile`` (faster steps
            after a first step that compiles; the run continues without it if it fails).
        edit: masks, outpainting and seamless tiles (:class:`EditConfig`). An edit's size is
            the init image's own unless ``size`` is given (then the image is fitted to it).
    """

    prompts: str = ""
    image_prompts: str = ""
    noise_prompts: str = ""
    change_prompt_every: int = 0
    size: tuple[int, int] | None = None
    steps: int = 300
    seed: int | None = None
    precision: str = "auto"
    recompute: str = "auto"
    deterministic: bool = False
    compile: bool = False
    models: ModelsConfig = field(default_factory=ModelsConfig)
    cutouts: CutoutConfig = field(default_factory=CutoutConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    init: InitConfig = field(default_factory=InitConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    upscale: UpscaleConfig = field(default_factory=UpscaleConfig)
    edit: EditConfig = field(default_factory=EditConfig)

    def __post_init__(self) -> None:
        ensure(1 <= self.steps <= 100_000, f"steps must be between 1 and 100000, not {self.steps}.")
        ensure(not self.edit.edits or self.init.init == "image",
               "a mask or an outpaint edits an image; give the image with --init-image PATH.")
        ensure(self.change_prompt_every >= 0, "change_prompt_every must be 0 or more.")
        ensure(self.recompute in RECOMPUTE, f"recompute must be one of {', '.join(RECOMPUTE)}, not {self.recompute!r}.")
        _check_common(self.seed, self.size, self.precision)
        ensure(self.init.init != "prior" or bool(self.models.prior),
               "init=prior needs a transformer; give --prior NAME|PATH (e.g. ffhq_transformer).")
        ensure(not self.init.varies or self.has_random_start,
               f"a variation seed varies a random start, and init={self.init.init} has none; use it with init "
               "random, pixels or gradient, or with an edit's --mask-fill random.")

    @property
    def has_random_start(self) -> bool:
        """Whether the start is drawn from the seed (what a variation seed can vary): a random
        init, or an edit's random fill of the masked part."""
        if self.edit.edits:
            return self.edit.mask_fill == "random"
        return self.init.init in ("random", "pixels", "gradient")

    def series(self, count: int) -> list[GenerationConfig]:
        """The configs of ``count`` images made by one command (``-n``, the UI's Images): seeds
        seed, seed + 1, ... (without a seed, each is resolved when its run starts); with a
        variation seed, variations of one image: one seed (resolved here) and the variation
        seeds v, v + 1, ..."""
        if self.init.varies:
            base = self.with_seed()
            assert base.init.variation_seed is not None
            return [base.replace(init=dataclasses.replace(base.init, variation_seed=base.init.variation_seed + index))
                    for index in range(count)]
        return [self.replace(seed=self.seed + index) if self.seed is not None else self for index in range(count)]


def clip_model_spec(values: list[str]) -> dict[str, Any]:
    """``MODEL [PRETRAINED [WEIGHT]]`` (CLI arguments or a line of the UI) -> a clip_models entry."""
    if not 1 <= len(values) <= 3:
        raise ConfigError("--clip-model takes MODEL [PRETRAINED [WEIGHT]], e.g. --clip-model ViT-B-32 openai 1.0.")
    spec: dict[str, Any] = {"model": values[0]}
    if len(values) > 1:
        spec["pretrained"] = None if values[1].lower() == "none" else values[1]
    if len(values) > 2:
        try:
            spec["weight"] = float(values[2])
        except ValueError:
            raise ConfigError(f"the weight of --clip-model {values[0]} must be a number, not {values[2]!r}.") from None
    return spec


def check_variation(seed: int | None, strength: float | None) -> None:
    """A variation seed and its strength come together; the strength is in [0, 1]."""
    ensure(seed is None or 0 <= seed < 2**63, f"variation_seed must be a non-negative integer, not {seed}.")
    ensure(strength is None or (math.isfinite(strength) and 0 <= strength <= 1),
           f"variation_strength must be between 0 and 1, not {strength}.")
    ensure(seed is None or strength is not None,
           "a variation seed needs a strength; give --variation-strength between 0 and 1 (e.g. 0.1).")
    ensure(strength is None or seed is not None,
           "a variation strength needs a variation seed to vary toward; give --variation-seed N.")


def check_sampling(top_k: int, top_p: float, temperature: float, prefix: str = "") -> None:
    """Range checks shared by every config that samples from a prior."""
    ensure(top_k >= 0, f"{prefix}top_k must be 0 (off) or more, not {top_k}.")
    ensure(0 < top_p <= 1, f"{prefix}top_p must be in (0, 1], not {top_p}.")
    ensure(0 < temperature <= 10, f"{prefix}temperature must be in (0, 10], not {temperature}.")


@dataclass(frozen=True)
class SampleConfig(_RunConfig):
    """Everything that decides a sampling run of a transformer prior (``python -m generator sample``).

    Attributes:
        model: a transformer registry name (``ffhq_transformer``, or just ``ffhq``) or a
            ``last.ckpt`` file.
        transformer_config: its project yaml (default: beside the checkpoint).
        n: images to sample.
        batch_size: images sampled together.
        size: (width, height) in pixels, or None for the model's training window (256x256
            for the released models); larger grids use the sliding window.
        top_k, top_p, temperature: how tokens are drawn (top_k 0: off).
        seed: the seed of every draw; None picks one (recorded).
        class_label: the class of class-conditional models (ImageNet's for ``cin_transformer``;
            a trained prior's classes are its data's sub-folders, in order).
        condition: a segmentation or depth map for spatially conditioned models.
        complete: an image whose first ``keep`` fraction of tokens is kept (image completion),
            or the image a ``mask`` edits.
        keep: the kept fraction for ``complete`` (ignored with a ``mask``).
        mask: where ``complete`` is resampled: a mask image (white = resample) or ``alpha``
            (its transparency: transparent = resample); every other token is the image's own.
        mask_blur: the feather of the mask where the samples are pasted back into ``complete``
            (a Gaussian's standard deviation in pixels; 0: a hard edge).
        use_cache: incremental decoding with a key/value cache (off: recompute, same tokens).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (autocast on CUDA).
        output: previews every ``save_every`` rows, video, gif, fps.
        upscale: the ESRGAN stage for the samples.
    """

    model: str = "ffhq_transformer"
    transformer_config: str | None = None
    n: int = 4
    batch_size: int = 4
    size: tuple[int, int] | None = None
    top_k: int = 250
    top_p: float = 1.0
    temperature: float = 1.0
    seed: int | None = None
    class_label: int | None = None
    condition: str | None = None
    complete: str | None = None
    keep: float = 0.5
    mask: str | None = None
    mask_blur: float = 0.0
    use_cache: bool = True
    precision: str = "auto"
    output: OutputConfig = field(default_factory=OutputConfig)
    upscale: UpscaleConfig = field(default_factory=UpscaleConfig)

    def __post_init__(self) -> None:
        ensure(bool(self.model.strip()), "model must name a transformer registry entry or a checkpoint file.")
        ensure(1 <= self.n <= 1024, f"n must be between 1 and 1024, not {self.n}.")
        ensure(1 <= self.batch_size <= 256, f"batch_size must be between 1 and 256, not {self.batch_size}.")
        check_sampling(self.top_k, self.top_p, self.temperature)
        ensure(self.class_label is None or self.class_label >= 0, f"class must be 0 or more, not {self.class_label}.")
        ensure(0 <= self.keep < 1, f"keep must be in [0, 1), not {self.keep}.")
        ensure(self.mask is None or bool(self.complete),
               "mask needs the image it edits; give it with --complete IMAGE.")
        ensure(math.isfinite(self.mask_blur) and 0 <= self.mask_blur <= 256,
               f"mask_blur must be between 0 and 256 pixels, not {self.mask_blur}.")
        _check_common(self.seed, self.size, self.precision)
