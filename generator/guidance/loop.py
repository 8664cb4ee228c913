"""The CLIP-guided VQGAN loop (VQGAN+CLIP) as a generator of events.

Per step: straight-through quantise the latent, decode, clamp (with gradient), cut out and
augment, embed with every CLIP model, sum the weighted spherical-distance prompt losses
(plus MSE toward the *initial* latent with a decaying weight, plus optional TV), step the
optimiser, clamp the latent to the codebook's range. Exactly ``steps`` steps run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from generator.config import GenerationConfig
from generator.devices import auto_size, autocast, autocast_dtype, random_seed, seed_everything
from generator.errors import ConfigError, InputError, OutOfMemoryError
from generator.events import Done, Event, Notice, Preview, Progress
from generator.guidance.clip import ClipModel
from generator.guidance.cutouts import MakeCutouts, canonical_augments
from generator.guidance.latents import initial_latent
from generator.guidance.losses import ClipGuide, GuideMember, PromptTarget, clamp_with_grad
from generator.guidance.prompts import (
    PromptSchedule,
    make_schedule,
    parse_image_prompts,
    parse_noise_prompts,
)
from generator.io.images import cover, open_image, pil_to_tensor, tensor_to_pil
from generator.prior.loader import Prior
from generator.prior.pipeline import prior_codes
from generator.prior.sampling import SamplingSettings
from generator.runs import RunState
from models.vqgan import VQGAN

OPTIMISERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adagrad": torch.optim.Adagrad,
    "adamax": torch.optim.Adamax, "radam": torch.optim.RAdam, "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def resolve_size(config: GenerationConfig, factor: int, device: torch.device) -> tuple[tuple[int, int], str | None]:
    """The run's (width, height), rounded down to the VQGAN factor, and a notice if it changed."""
    width, height = config.size or auto_size(device)
    rounded = (width // factor * factor, height // factor * factor)
    if min(rounded) < factor:
        raise InputError(f"size {width}x{height} is smaller than one VQGAN cell ({factor} pixels); use a larger --size.")
    if rounded == (width, height):
        return rounded, None
    return rounded, (f"size {width}x{height} is not a multiple of the VQGAN's factor {factor}; "
                     f"using {rounded[0]}x{rounded[1]}.")


def synthesize(vqgan: VQGAN, z: torch.Tensor) -> torch.Tensor:
    """Latent -> image in [0, 1] through straight-through quantisation, differentiably."""
    z_st = vqgan.quantize(z).z_st
    if z.device.type == "cuda":
        z_st = z_st.contiguous(memory_format=torch.channels_last)
    return clamp_with_grad(vqgan.decode(z_st).add(1).div(2), 0.0, 1.0)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels."""
    return (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean() + (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean()


def _prompt_targets(config: GenerationConfig, clips: Sequence[ClipModel], members: Sequence[GuideMember],
                    size: tuple[int, int], steps: int) -> tuple[PromptSchedule | None, list[list[list[PromptTarget]]]]:
    """Targets per story phrase per model: ``targets[phrase][model]``."""
    schedule = make_schedule(config.prompts, steps=steps, change_every=config.change_prompt_every) \
        if config.prompts.strip() else None
    images = parse_image_prompts(config.image_prompts) if config.image_prompts.strip() else ()
    noises = parse_noise_prompts(config.noise_prompts) if config.noise_prompts.strip() else ()
    if schedule is None and not images and not noises:
        raise InputError("the prompt is empty; give some text to draw, an image prompt or a noise prompt.")
    shared: list[list[PromptTarget]] = []
    for clip, member in zip(clips, members, strict=True):
        targets = []
        for prompt in images:
            pixels = pil_to_tensor(cover(open_image(prompt.text, what="image prompt"), size)).to(clip.device)
            with torch.no_grad():
                embeds = clip.encode_image(member.cutouts(pixels)).float()
            targets.append(PromptTarget(f"image:{prompt.text}", embeds, prompt.weight, prompt.stop))
        for noise in noises:
            embed = torch.randn(1, clip.embed_dim, generator=torch.Generator().manual_seed(noise.seed))
            targets.append(PromptTarget(f"noise:{noise.seed}", embed.to(clip.device), noise.weight))
        shared.append(targets)
    phrases = schedule.phrases if schedule is not None else [()]
    per_phrase = []
    for phrase in phrases:
        per_model = []
        for index, clip in enumerate(clips):
            texts = [p.text for p in phrase]
            embeds = clip.encode_text(texts) if texts else None
            text_targets = [PromptTarget(f"text:{p.text}", embeds[i : i + 1], p.weight, p.stop) for i, p in enumerate(phrase)]
            per_model.append(text_targets + shared[index])
        per_phrase.append(per_model)
    return schedule, per_phrase


def run_text_to_image(vqgan: VQGAN, clips: Sequence[ClipModel], clip_weights: Sequence[float],
                      config: GenerationConfig, state: RunState, device: torch.device,
                      prior: Prior | None = None) -> Iterator[Event]:
    """The optimisation as events. ``state.config`` (the plain config) is completed here.

    Raises:
        InputError, ConfigError: bad prompts, files or sizes (before any work).
        OutOfMemoryError: the device ran out of memory (the latest image stays available
            through ``state``).
    """
    started = time.perf_counter()
    # 1. Check inputs and resolve what the config left open.
    augments = canonical_augments(config.cutouts.augments)
    size, notice = resolve_size(config, vqgan.downsample_factor, device)
    if notice:
        yield Notice(notice)
    seed = config.seed if config.seed is not None else random_seed()
    state.config.update(seed=seed, size=list(size))
    dtype = autocast_dtype(device, config.precision)
    generator = seed_everything(seed, device)

    # 2. Prompt targets, once, without gradients.
    members = [GuideMember(clip, weight, MakeCutouts(clip.input_size, config.cutouts.cutn, cut_pow=config.cutouts.cut_pow,
                                                     augments=augments, noise_fac=config.cutouts.noise_fac,
                                                     generator=generator))
               for clip, weight in zip(clips, clip_weights, strict=True)]
    schedule, targets = _prompt_targets(config, clips, members, size, config.steps)
    guide = ClipGuide(members)

    # 3. The latent (sampled by the prior for init=prior), its optimiser and its bounds.
    if config.init.init == "prior":
        if prior is None:
            raise ConfigError("init=prior needs a Generator loaded with a prior (models.prior).")
        init = config.init
        grid = (size[1] // vqgan.downsample_factor, size[0] // vqgan.downsample_factor)
        codes = yield from prior_codes(prior, grid, SamplingSettings(init.prior_temperature, init.prior_top_k, init.prior_top_p),
                                       torch.Generator(device).manual_seed(seed), init.prior_class)
        z = vqgan.indices_to_latent(codes).float()
    else:
        z = initial_latent(vqgan, config.init.init, size, generator, config.init.init_image).float()
    z_init = z.detach().clone()
    z.requires_grad_(True)
    optimiser = OPTIMISERS[config.optim.optimiser]([z], lr=config.optim.lr)
    codebook = vqgan.codebook.detach().float()
    z_min = codebook.min(dim=0).values[None, :, None, None]
    z_max = codebook.max(dim=0).values[None, :, None, None]

    def decode_latest() -> Image.Image:
        with torch.inference_mode(), autocast(device, dtype):
            return tensor_to_pil(synthesize(vqgan, z.detach()))

    state.decode = decode_latest
    prepared = time.perf_counter()

    # 4. The loop: exactly `steps` steps.
    try:
        for step in range(1, config.steps + 1):
            phrase = schedule.phrase_index(step - 1) if schedule is not None else 0
            optimiser.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                image = synthesize(vqgan, z)
                losses = guide.losses(image, targets[phrase])
            if config.optim.init_weight:
                losses["init_mse"] = F.mse_loss(z, z_init) * _init_weight(config, step)
            if config.optim.tv_weight:
                losses["tv"] = total_variation(image.float()) * config.optim.tv_weight
            total = torch.stack([value.float() for value in losses.values()]).sum()
            total.backward()
            optimiser.step()
            with torch.no_grad():
                z.clamp_(min=z_min, max=z_max)
            state.step = step
            values = torch.stack([total.detach(), *(v.detach().float() for v in losses.values())]).tolist()
            yield Progress("optimise", step, config.steps, time.perf_counter() - prepared,
                           loss=values[0], losses=dict(zip(losses, values[1:])))
            if config.output.save_every and step % config.output.save_every == 0:
                yield Preview("optimise", step, decode_latest())
        final = decode_latest()
    except torch.OutOfMemoryError:
        raise OutOfMemoryError(
            f"the {device.type.upper()} ran out of memory at {size[0]}x{size[1]} with "
            f"{config.cutouts.cutn} cutouts; try a smaller --size, fewer --cutn or --preset low-memory."
        ) from None
    finished = time.perf_counter()
    timings = {"prepare": prepared - started, "optimise": finished - prepared, "total": finished - started,
               "steps_per_second": config.steps / max(finished - prepared, 1e-9)}
    yield Done(images=(final,), config=dict(state.config), seed=seed, timings=timings)


def _init_weight(config: GenerationConfig, step: int) -> float:
    """The MSE-toward-init weight at ``step``: constant, or falling linearly to zero."""
    weight, decay_steps = config.optim.init_weight, config.optim.init_weight_decay_steps
    if not decay_steps:
        return weight
    return weight * max(0.0, 1.0 - step / decay_steps)
