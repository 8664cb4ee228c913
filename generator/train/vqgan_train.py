"""Training a VQGAN on a folder of images (``python -m generator train vqgan``).

From scratch with a named size (:data:`generator.train.vqgan_settings.SIZES`, where the run's
settings are) or fine-tuned from any VQGAN the studio loads (``from_model``), optionally with
a larger or re-initialised codebook, on random square crops of the folder's images. The
objective is Taming's (:mod:`generator.train.vqgan_losses`), the optimiser Adam with betas
(0.5, 0.9) for the autoencoder and, from ``disc_start``, for the discriminator. A run is
seeded and resumable: its ``last.ckpt`` holds the weights, both
optimisers' states, the random generators' states and where the data order stands, so a
resumed run takes the same steps, with the same losses, as one that was never stopped.

The run folder (``<out>/train-vqgan-<name>-<time>/``) holds ``config.json`` (the settings),
``metrics.jsonl`` (one line per logged step: losses, PSNR, codebook usage and perplexity),
``recon-<step>.png`` (held-out crops above their reconstructions), ``last.ckpt`` and
``<name>.yaml`` (the official formats, :mod:`generator.train.vqgan_checkpoint`). The model is
also written into the weights folder as ``<name>.ckpt`` + ``<name>.yaml``, where the menus list
it. Progress goes to ``on_event`` as :class:`generator.events.Progress` and
:class:`generator.events.Preview` events.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from generator.devices import (
    autocast,
    cpu_has_native_bf16,
    describe_device,
    is_out_of_memory,
    pick_device,
    release_memory,
)
from generator.errors import CheckpointError, ConfigError, NonFiniteError, OutOfMemoryError
from generator.events import Event, Notice, Preview, Progress
from generator.io.atomic_files import output_error
from generator.io.images import contact_sheet, tensor_to_pil
from generator.io.outputs import new_folder, save_json, save_png, slugify
from generator.train import vqgan_checkpoint as ckpt
from generator.train.code_restarts import DeadCodeRestarts
from generator.train.data import CropSampler, ImageFolder, scan_images
from generator.train.distributed import Distributed
from generator.train.vqgan_losses import (
    VQGANLoss,
    codebook_statistics,
    discriminator_min_size,
    load_lpips,
    quantize_for_training,
)
from generator.train.vqgan_settings import (
    RESTART_DEAD_CODES,
    RESUME_OVERRIDES,
    VQGANTrainSettings,
    check_settings,
)
from generator.train.vqgan_start import base_config, fresh_codebook, load_from, with_codebook
from models.vqgan import VQGAN, VQGANConfig

logger = logging.getLogger(__name__)

RUN_PREFIX = "train-vqgan"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "last.ckpt"
YAML_FILE = "last.yaml"
SAMPLE_COUNT = 4  # held-out crops shown in each recon-<step>.png


@dataclass
class TrainResult:
    """What a finished (or stopped) run left: its folder, its checkpoint and the trained model."""

    run_folder: Path
    checkpoint: Path
    config: Path
    registered: Path
    step: int
    vqgan: VQGAN = field(repr=False)


def training_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype of training: bf16 where asked, or (``auto``) where the device computes
    it natively (Ampere GPUs and later, CPUs with bf16 units); else None (float32). fp16 is
    never chosen: it would need loss scaling."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        native = torch.cuda.get_device_capability(device) >= (8, 0)
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU does not compute bf16; use --precision fp32.")
        return torch.bfloat16 if precision == "bf16" or native else None
    if precision == "bf16" or cpu_has_native_bf16():
        return torch.bfloat16
    return None


# --------------------------------------------------------------------------------------------
# the run


class VQGANTraining:
    """One training run: the models, optimisers, data and run folder, stepped by :meth:`run`.

    Build it with :meth:`start` (a new run) or :meth:`resume` (a run's folder); every setting and
    input is checked, and the model loaded, before the run folder is made.
    """

    def __init__(self, settings: VQGANTrainSettings, vqgan: VQGAN, loss: VQGANLoss, sampler: CropSampler,
                 device: torch.device, run_folder: Path, *, step: int = 0, place: Distributed | None = None,
                 samples: torch.Tensor | None = None) -> None:
        self.samples = samples if samples is not None else held_out_crops(sampler.folder, settings)
        self.settings = settings
        self.vqgan = vqgan
        self.place = place or Distributed()
        self.autoencoder: nn.Module = _Autoencoder(vqgan, settings.beta)
        if self.place.active:  # averages the autoencoder's gradients over the processes
            self.autoencoder = DistributedDataParallel(self.autoencoder,
                                                       device_ids=[device.index] if device.type == "cuda" else None)
        self.loss = loss
        self.sampler = sampler
        self.device = device
        self.run_folder = run_folder
        self.step = step
        self.dtype = training_dtype(device, settings.precision)
        self.name = str(settings.name)
        self.yaml_path = run_folder / YAML_FILE  # beside last.ckpt, where the loader looks for it
        self.checkpoint_path = run_folder / CHECKPOINT_FILE
        self.registered = ckpt.registered_paths(self.name, settings.weights_dir)[0]
        betas = (0.5, 0.9)
        self.optimizer = torch.optim.Adam(list(vqgan.parameters()), lr=settings.lr, betas=betas)
        self.disc_optimizer = torch.optim.Adam(list(loss.discriminator.parameters()), lr=settings.lr, betas=betas)
        self.restarts = DeadCodeRestarts(vqgan.n_codes, settings.restart_dead_codes or 0, int(settings.seed or 0),
                                         device)
        self._updating = False
        if settings.compile:
            for module in (vqgan.encoder, vqgan.decoder, loss.discriminator):
                module.compile()

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def start(cls, settings: VQGANTrainSettings) -> VQGANTraining:
        """A new run: checks, loads, makes the run folder and writes ``config.json`` and the yaml.

        Raises:
            ConfigError, InputError: a bad setting or input (one sentence each).
            WeightsError, CheckpointError: ``from_model`` cannot be had or is no VQGAN.
        """
        check_settings(settings)
        folder = scan_images(settings.data)
        device = pick_device(settings.device)
        place = Distributed.current(device)
        device = place.device(device)
        seed = place.share(settings.seed if settings.seed is not None else secrets.randbelow(2**31))
        training_dtype(device, settings.precision)
        torch.manual_seed(seed)
        init = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        sampler = CropSampler(folder, settings.size, rng)
        if settings.from_model is not None:
            source = Path(settings.from_model).name
            vqgan = load_from(settings).to(device)
            vqgan = with_codebook(vqgan, settings, CropSampler(folder, settings.size, random.Random(f"codes-{seed}")),
                                   device, init, source=source)
        else:
            config = base_config(settings)
            if settings.codebook is not None:
                config = replace(config, n_embed=settings.codebook)
            vqgan = VQGAN(config)
            with torch.no_grad():
                vqgan.codebook.copy_(fresh_codebook(config.n_embed, config.embed_dim, init))
            vqgan = vqgan.to(device)
        _check_crop(settings, vqgan.config)
        perceptual = load_lpips(settings.weights_dir) if settings.perceptual_weight > 0 else None
        loss = VQGANLoss(settings.loss_settings(), perceptual).to(device)
        name = settings.name or ckpt.free_name(slugify(Path(settings.data).resolve().name, max_length=40),
                                               settings.weights_dir)
        if settings.name is not None and ckpt.name_is_taken(name, settings.weights_dir):
            path = ckpt.registered_paths(name, settings.weights_dir)[0]
            raise ConfigError(f"a model called {name} is already in the weights folder ({path}); choose another "
                              "--name, or resume its run with --resume.")
        name = place.share(name)
        restarts = settings.restart_dead_codes
        if restarts is None:
            restarts = RESTART_DEAD_CODES if settings.from_model is None else 0
        resolved = replace(settings, name=name, seed=seed, architecture=vqgan.config.to_dict(),
                           restart_dead_codes=restarts)
        # drawn before the run folder is made: a folder without one readable image stops before any file is written
        samples = held_out_crops(folder, resolved)
        run_folder = place.share(_new_run_folder(Path(settings.out), name) if place.main else None)
        training = cls(resolved, vqgan.train().requires_grad_(True), loss.train(), sampler, device, run_folder,
                       place=place, samples=samples)
        if place.main:
            training._write_config()
            ckpt.write_text(training.yaml_path, training._yaml())
        return training

    @classmethod
    def resume(cls, run_folder: str | Path, overrides: Mapping[str, Any] | None = None) -> VQGANTraining:
        """A stopped run, at the step of its ``last.ckpt``, with the same settings (``overrides``
        may change only :data:`RESUME_OVERRIDES`).

        Raises:
            ConfigError: not a run folder, or an override of a setting the run owns.
            CheckpointError: its checkpoint is unreadable or belongs to another model.
        """
        folder = Path(run_folder)
        config_file = folder / CONFIG_FILE
        if not config_file.is_file() or not (folder / CHECKPOINT_FILE).is_file():
            raise ConfigError(f"{folder} is not the folder of a VQGAN training run with a checkpoint (it has no "
                              f"{CONFIG_FILE} and {CHECKPOINT_FILE}); give the run folder that training wrote.")
        try:
            recorded = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            raise ConfigError(f"{config_file} is not readable JSON; give the folder of a training run.") from None
        if not isinstance(recorded, dict) or recorded.get("kind") != RUN_PREFIX:
            raise ConfigError(f"{config_file} is not the config of a VQGAN training run; give the folder of a run of "
                              "`python -m generator train vqgan`.")
        settings = VQGANTrainSettings.from_dict(recorded.get("settings", {}), source=str(config_file))
        changed = {key: value for key, value in (overrides or {}).items()
                   if value is not None and getattr(settings, key) != value}
        refused = sorted(set(changed) - set(RESUME_OVERRIDES))
        if refused:
            flag = "--" + refused[0].replace("_", "-")
            raise ConfigError(f"{flag} cannot change when resuming (the run keeps its own settings); start a new run "
                              f"with --from {folder / CHECKPOINT_FILE} to train on with other settings.")
        settings = replace(settings, **changed)
        check_settings(settings)
        device = pick_device(settings.device)
        place = Distributed.current(device)
        device = place.device(device)
        state, training_state = ckpt.read_training_checkpoint(folder / CHECKPOINT_FILE,
                                                              weights_dir=settings.weights_dir)
        config = base_config(settings)
        vqgan = VQGAN(config)
        perceptual = load_lpips(settings.weights_dir) if any(k.startswith("loss.perceptual_loss.") for k in state) \
            else None
        if perceptual is None and any(k.startswith("loss.perceptual_loss.") for k in state):
            raise ConfigError("this run trained with the perceptual (LPIPS) term, whose weights are no longer in the "
                              "weights folder; put vgg.pth and vgg16-397923af.pth back to resume it.")
        loss = VQGANLoss(settings.loss_settings(), perceptual)
        _load_strictly(vqgan, loss, state, source=str(folder / CHECKPOINT_FILE))
        sampler = CropSampler(scan_images(settings.data), settings.size, random.Random(settings.seed))
        sampler.restore(training_state)
        step = int(training_state["global_step"])
        training = cls(settings, vqgan.to(device).train(), loss.to(device).train(), sampler, device, folder, step=step,
                       place=place)
        ckpt.restore_optimizer("optimizer", training.optimizer, training_state)
        ckpt.restore_optimizer("disc_optimizer", training.disc_optimizer, training_state)
        training.restarts.restore(training_state)
        torch.set_rng_state(training_state["rng.torch"])
        if device.type == "cuda" and "rng.cuda" in training_state:
            torch.cuda.set_rng_state(training_state["rng.cuda"], device)
        if place.main:
            _truncate_metrics(folder / METRICS_FILE, step)
            training._write_config(replace_file=True)
        logger.info("resuming %s at step %d of %d", folder, step, settings.steps)
        return training

    # -- running ----------------------------------------------------------------------------

    def run(self, until: int | None = None, on_event: Callable[[Event], None] | None = None) -> TrainResult:
        """Train up to step ``until`` (default: ``steps``), then write the checkpoint.

        Ctrl-C between two updates writes the checkpoint of the last step done (resume goes on
        from there) and raises again.

        Raises:
            NonFiniteError: a loss stopped being a number (the last checkpoint is kept).
            InputError: no image can be read any more.
        """
        with _compiled_backward_retained(self.settings.compile):
            return self._run(self.settings.steps if until is None else until, on_event or (lambda event: None))

    def _run(self, target: int, emit: Callable[[Event], None]) -> TrainResult:
        started, first = time.monotonic(), self.step
        main = self.place.main
        if not main:  # the first process reports; the others train
            emit = _quiet
        if self.step >= target:
            emit(Notice(f"the run is already at step {self.step}; give a larger --steps to train on."))
        while self.step < target:
            point, stepped = self._resume_point(), False
            try:
                parts = self._train_step()
                self.step += 1
                stepped = True
                done = self.step
                if main and (done % self.settings.log_every == 0 or done == 1 or done == target):
                    self._log(parts)
                if main and (done % self.settings.sample_every == 0 or done == target):
                    emit(Preview(stage="train", step=done, image=self._write_samples()))
                if main and done % self.settings.save_every == 0 and done != target:
                    self._save(self._resume_point())
                emit(Progress(stage="train", step=done - first, total=target - first,
                              elapsed=time.monotonic() - started, loss=parts["loss"],
                              losses={k: v for k, v in parts.items() if k != "loss"}))
            except KeyboardInterrupt:
                if main:
                    self._stopped(self._resume_point() if stepped else point)
                raise
            except (torch.OutOfMemoryError, RuntimeError, MemoryError) as error:
                if not is_out_of_memory(error):
                    raise
                self._out_of_memory(self._resume_point() if stepped else point)
        if main:
            self._save(self._resume_point())
        return TrainResult(self.run_folder, self.checkpoint_path, self.yaml_path, self.registered, self.step,
                           self.vqgan)

    def _stopped(self, point: Mapping[str, torch.Tensor]) -> None:
        """Ctrl-C: write the checkpoint of the last step done, unless an update was under way."""
        if self._updating:
            logger.warning("stopped during an update; %s keeps the last checkpoint written", self.checkpoint_path)
            return
        self._save(point)
        logger.info("stopped at step %d; resume with `python -m generator train vqgan --resume %s`", self.step,
                    self.run_folder)

    def _out_of_memory(self, point: Mapping[str, torch.Tensor]) -> None:
        """The device ran out of memory in a step: keep the checkpoint of the last step done and
        say what to change.

        Raises:
            OutOfMemoryError: always (one sentence).
        """
        self.optimizer.zero_grad(set_to_none=True)
        self.disc_optimizer.zero_grad(set_to_none=True)
        release_memory(self.device)
        if self.place.main and not self._updating:
            self._save(point)
        settings = self.settings
        raise OutOfMemoryError(
            f"{describe_device(self.device)} ran out of memory at step {self.step + 1} ({settings.batch_size} crops of "
            f"{settings.size} px a micro-batch); lower --batch-size (raise --accumulate to keep the batch) or --size, "
            f"then go on with --resume {self.run_folder} (its last.ckpt is step {self.step}).") from None

    def _train_step(self) -> dict[str, float]:
        settings, step = self.settings, self.step
        disc_on = self.loss.discriminator_on(step)
        totals: dict[str, float] = {}
        last_layer = self.vqgan.decoder.conv_out.weight
        place, batch = self.place, settings.batch_size
        for micro in range(settings.accumulate):
            # every process draws the combined batch from the same generator and keeps its slice
            combined = self.sampler.batch(batch * place.world)  # (N*B, 3, S, S) in [-1, 1]
            x = combined[place.rank * batch:(place.rank + 1) * batch].to(self.device)  # (B, 3, S, S)
            syncing = place.active and micro < settings.accumulate - 1
            with self.autoencoder.no_sync() if syncing else contextlib.nullcontext():  # one all-reduce a step
                with autocast(self.device, self.dtype):
                    # (B, 3, S, S), (), (B, S/f, S/f), (B, C, S/f, S/f)
                    x_rec, codebook_loss, indices, encoded = self.autoencoder(x)
                    loss, parts = self.loss.generator_loss(x, x_rec, codebook_loss, step, last_layer)
                (loss / settings.accumulate).backward()
            parts = {**parts, "loss": loss.detach()}
            self.restarts.observe(indices)
            if disc_on:
                with autocast(self.device, self.dtype):
                    d_loss, d_parts = self.loss.discriminator_loss(x, x_rec)
                (d_loss / settings.accumulate).backward()
                parts.update(d_parts)
            values = {key: float(value) for key, value in parts.items()}
            if not math.isfinite(values["loss"]) or not math.isfinite(values.get("d_loss", 0.0)):
                raise NonFiniteError(f"the loss stopped being a number at step {step + 1}; lower --lr or use "
                                     f"--precision fp32 ({self.checkpoint_path} keeps the last checkpoint written).")
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value / settings.accumulate
        if disc_on:
            place.average_gradients(self.loss.discriminator.parameters())
        self._updating = True
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if disc_on:
            self.disc_optimizer.step()
            self.disc_optimizer.zero_grad(set_to_none=True)
        if self.restarts.due(step + 1):
            totals["codes_restarted"] = float(self.restarts.restart(self.vqgan.codebook, encoded, self.optimizer,
                                                                     step + 1, place))
        self._updating = False
        usage, perplexity = codebook_statistics(indices, self.vqgan.n_codes)
        mse = ((x.float().clamp(-1, 1) - x_rec.detach().float().clamp(-1, 1)) / 2).pow(2).mean()
        totals.update(psnr=float(10 * torch.log10(1 / mse.clamp_min(1e-10))), codebook_usage=usage,
                      perplexity=perplexity)
        return place.average(totals, self.device)

    # -- outputs ----------------------------------------------------------------------------

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] through the model being trained, as it stands (in eval
        mode: no dropout, so no random draw that would change the training's)."""
        was_training = self.vqgan.training
        self.vqgan.eval()
        try:
            with autocast(self.device, self.dtype):
                h = self.vqgan.encode(x.to(self.device))
                z_q, _, _ = self.vqgan.quantize(h)
                return self.vqgan.decode(z_q).float()
        finally:
            self.vqgan.train(was_training)

    def _write_samples(self) -> Image.Image:
        reconstructed = self.reconstruct(self.samples).cpu()
        images = [tensor_to_pil((image + 1) / 2) for image in (*self.samples, *reconstructed)]
        sheet = contact_sheet(images, columns=len(self.samples))
        path = self.run_folder / f"recon-{self.step:06d}.png"
        if not path.exists():
            save_png(sheet, path)
        return sheet

    def _log(self, parts: Mapping[str, float]) -> None:
        line = {"step": self.step, "epoch": self.sampler.epoch, **{k: round(v, 6) for k, v in parts.items()},
                "lr": self.settings.lr}
        path = self.run_folder / METRICS_FILE
        try:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")
        except OSError as error:
            raise output_error(error, path) from error

    def _resume_point(self) -> dict[str, torch.Tensor]:
        """The random and data state before the next step (what resuming starts from)."""
        point = {**self.sampler.state(), **self.restarts.state(), "rng.torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            point["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return point

    def _save(self, point: Mapping[str, torch.Tensor]) -> None:
        training_state = {**point, "global_step": torch.tensor(self.step),
                          **ckpt.flatten_optimizer("optimizer", self.optimizer),
                          **ckpt.flatten_optimizer("disc_optimizer", self.disc_optimizer)}
        checkpoint = ckpt.lightning_checkpoint(ckpt.model_state(self.vqgan, self.loss), global_step=self.step,
                                               epoch=int(point["data.epoch"]), training_state=training_state)
        ckpt.save_checkpoint(checkpoint, self.checkpoint_path)
        ckpt.register(self.name, checkpoint, self._yaml(), self.settings.weights_dir)
        logger.info("step %d: wrote %s and %s", self.step, self.checkpoint_path, self.registered)

    def _yaml(self) -> str:
        loss = replace(self.loss.settings, perceptual_weight=self.loss.settings.perceptual_weight
                       if self.loss.has_perceptual else 0.0)
        base_lr = self.settings.lr / (self.settings.batch_size * self.settings.accumulate)
        return ckpt.yaml_text(ckpt.upstream_yaml(self.vqgan.config, loss.upstream_params(),
                                                 base_learning_rate=base_lr))

    def _write_config(self, replace_file: bool = False) -> None:
        record = {"kind": RUN_PREFIX, "settings": self.settings.to_dict(), "perceptual": self.loss.has_perceptual,
                  "device": str(self.device), "precision": str(self.dtype or torch.float32).removeprefix("torch."),
                  "checkpoint": CHECKPOINT_FILE, "yaml": self.yaml_path.name, "registered": str(self.registered)}
        path = self.run_folder / CONFIG_FILE
        if replace_file:
            ckpt.write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
        else:
            save_json(record, path)


@contextlib.contextmanager
def _compiled_backward_retained(enabled: bool) -> Iterator[None]:
    """Compiled backward passes that may run more than once: the adaptive weight takes two
    gradients at the decoder's last layer (``retain_graph``) before the full backward, which
    buffers donated to a compiled backward would forbid."""
    if not enabled:
        yield
        return
    import torch._functorch.config as functorch_config

    with functorch_config.patch(donated_buffer=False):
        yield


class _Autoencoder(nn.Module):
    """The VQGAN's training pass as one module (what DistributedDataParallel wraps): encode,
    quantise with the straight-through estimator, decode."""

    def __init__(self, vqgan: VQGAN, beta: float) -> None:
        super().__init__()
        self.vqgan = vqgan
        self.beta = beta

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.vqgan.quant_conv(self.vqgan.encoder(x))  # (B, C, S/f, S/f)
        quantized = quantize_for_training(h, self.vqgan.codebook, self.beta)
        # (B, 3, S, S), (), (B, h, w), (B, C, h, w)
        return self.vqgan.decode(quantized.z_st), quantized.loss, quantized.indices, h.detach()


def _quiet(event: Event) -> None:
    """The events of a process that does not report."""


def held_out_crops(folder: ImageFolder, settings: VQGANTrainSettings) -> torch.Tensor:
    """The fixed crops of the reconstruction grids, (4, 3, S, S), drawn by a generator of their
    own (the training's draws are untouched).

    Raises:
        InputError: no image of the folder can be read.
    """
    return CropSampler(folder, settings.size, random.Random(f"samples-{settings.seed}")).batch(SAMPLE_COUNT)


def _check_crop(settings: VQGANTrainSettings, config: VQGANConfig) -> None:
    factor = config.downsample_factor
    if settings.size % factor:
        lower = max(factor, settings.size // factor * factor)
        raise ConfigError(f"--size {settings.size} is not a multiple of the VQGAN's downsampling factor {factor}; use "
                          f"{lower} or {lower + factor}.")
    smallest = discriminator_min_size(settings.disc_layers)
    if settings.size < smallest:
        raise ConfigError(f"--size {settings.size} is too small for a discriminator of {settings.disc_layers} layers, "
                          f"which needs {smallest} pixels or more; use a larger --size or fewer --disc-layers.")


def _load_strictly(vqgan: VQGAN, loss: VQGANLoss, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    own = {key: value for key, value in state.items() if not key.startswith("loss.")}
    losses = {key.removeprefix("loss."): value for key, value in state.items() if key.startswith("loss.")}
    try:
        vqgan.load_state_dict(own, strict=True)
        loss.load_state_dict(losses, strict=True)
    except RuntimeError:
        raise CheckpointError(f"{source} does not fit the architecture its run's {CONFIG_FILE} describes; the run "
                              "folder's files belong to different runs.") from None


def _new_run_folder(out: Path, name: str) -> Path:
    folder = new_folder(out, f"{RUN_PREFIX}-{name}-{datetime.now():%Y%m%d-%H%M%S}")
    logger.info("writing the run into %s", folder)
    return folder


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the metric lines of steps after ``step`` (written after the checkpoint, then redone)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    ckpt.write_text(path, "".join(f"{line}\n" for line in kept))


def train_vqgan(settings: VQGANTrainSettings, on_event: Callable[[Event], None] | None = None) -> TrainResult:
    """Start a run and train it to ``settings.steps`` (see :class:`VQGANTraining`)."""
    return VQGANTraining.start(settings).run(on_event=on_event)
