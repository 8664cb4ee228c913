"""Training a transformer prior (Taming's GPT over VQGAN code indices) on a folder of images.

The images are encoded once into code grids (:mod:`generator.train.codes`, reused by a resumed
run and by a later run on the same data, size and VQGAN). The GPT learns the next code in
raster order after one condition token, as Taming's ``Net2NetTransformer`` does: the start
token of an unconditional prior (``sos``), or the image's class (its sub-folder) for a
class-conditional one (``class``; class tokens share the codebook's vocabulary, as ImageNet
cIN's do). Loss: cross-entropy of every code given the ones before it; AdamW with weight decay
on the linear layers only and betas (0.9, 0.95), gradient clipping, a constant learning rate.

A run folder ``<out>/train-prior-<name>-<YYYYMMDD-HHMMSS>/`` holds ``config.json`` (the
resolved settings), ``codes.safetensors``, ``metrics.jsonl`` (one line per step: ``train_loss``,
and ``val_loss`` on the held-out images every ``val_every`` steps and at step 0),
``samples-<step>.png`` (grids sampled every ``sample_every`` steps, a row per class),
``train-state.safetensors`` (the GPT and AdamW's moments, every ``save_every`` steps and when
stopped), ``<name>_transformer.ckpt`` + ``.yaml`` (the prior in the official formats) and
``run.json``. The finished prior is also copied into the weights folder as
``<name>_transformer.ckpt`` + ``.yaml`` (``-2``, ``-3``... when the name is taken; a resumed run
replaces its own copy), where the menus list it.

Reproducible by construction: every random draw (the initial weights, the held-out split, the
order of the training sequences, the sampled grids) comes from a generator seeded by the run's
seed and the step or epoch it serves, never from a shared stream. So ``--resume`` continues
exactly the trajectory of an uninterrupted run from the saved weights and optimiser state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from generator.decoder.loader import load_vqgan_by_name
from generator.devices import autocast, describe_device, is_out_of_memory, release_memory
from generator.errors import CheckpointError, ConfigError, InputError, OutOfMemoryError, summary
from generator.events import Event, Notice, Preview, Progress, drain
from generator.io.atomic_files import output_error, replace_bytes_atomic
from generator.io.images import contact_sheet, png_bytes, tensor_to_pil
from generator.io.outputs import new_folder, slugify
from generator.sample.sampling import SamplingSettings, sample_in_window
from generator.train import codes as code_cache
from generator.train.codes import CodeSet
from generator.train.data import ImageFolder, scan_images
from generator.train.distributed import Distributed
from generator.train.prior_checkpoint import register_prior, save_prior
from generator.train.prior_settings import CONFIG_FILE, FOLDER_PREFIX, RUN_FILE, RUN_KIND, PriorTrainingConfig
from models.gpt import GPT
from models.vqgan import VQGAN

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
STATE_FILE = "train-state.safetensors"
STATE_FORMAT = "vqgan-studio-prior-state/1"
SOS_TOKEN = 0
MAX_SAMPLE_CLASSES = 8  # classes shown in a sample grid (one row each)
DECODE_CHUNK = 4


@dataclass(frozen=True)
class PriorTrainingResult:
    """A finished training: where its files are and how it ended."""

    folder: Path
    checkpoint: Path
    config_file: Path
    registered: Path
    step: int
    train_loss: float | None
    val_loss: float | None
    classes: tuple[str, ...] = ()


def derived_seed(seed: int, purpose: str, index: int = 0) -> int:
    """A 63-bit seed for one purpose and index (a step, an epoch), independent of the others."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def init_gpt(gpt: GPT, seed: int) -> GPT:
    """minGPT's initialisation (as Taming's): linear and embedding weights from N(0, 0.02), biases
    0, layer norms 1 and 0, position embeddings 0, drawn from a generator of ``seed``."""
    generator = torch.Generator().manual_seed(derived_seed(seed, "init"))
    with torch.no_grad():
        for module in gpt.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                module.weight.copy_(torch.empty_like(module.weight, device="cpu").normal_(0.0, 0.02,
                                                                                        generator=generator))
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        gpt.pos_emb.zero_()
    return gpt


def make_optimizer(gpt: GPT, config: PriorTrainingConfig) -> torch.optim.AdamW:
    """AdamW as Taming's transformer: weight decay on the linear layers' weights only."""
    decay = {f"{name}.weight" for name, module in gpt.named_modules() if isinstance(module, nn.Linear)}
    params = dict(gpt.named_parameters())
    groups = [{"params": [params[n] for n in sorted(params) if n in decay], "weight_decay": config.weight_decay},
              {"params": [params[n] for n in sorted(params) if n not in decay], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))


def sequence_loss(gpt: nn.Module, cond: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of every code given the condition token and the codes before it
    (``gpt``: the GPT, or the DistributedDataParallel wrapping it).

    Args:
        cond: (B, 1) condition tokens.
        codes: (B, L) code sequences in raster order.
    """
    logits = gpt(torch.cat([cond, codes[:, :-1]], dim=1))  # (B, L, vocab): position t predicts code t
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), codes.reshape(-1))


def _precision_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


class PriorTraining:
    """One training run of a prior, new or resumed; :meth:`run` does the work.

    Args:
        config: the settings (for a resumed run, see :func:`resume_config`).
        out_dir: the parent of a new run folder.
        device: where the GPT and the VQGAN run.
        weights_dir, offline: how a registry VQGAN is found.
        resume: the run folder to continue (its settings must be ``config``).
    """

    def __init__(self, config: PriorTrainingConfig, *, out_dir: str | Path = "outputs",
                 device: str | torch.device = "cpu", weights_dir: str | Path | None = None,
                 offline: bool | None = None, resume: str | Path | None = None):
        self.config = config if config.seed is not None else replace(config, seed=random.randrange(2**31))
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.weights_dir, self.offline = weights_dir, offline
        self.resume = Path(resume) if resume is not None else None
        self.folder: Path | None = self.resume
        self._orders: dict[int, torch.Tensor] = {}
        self._previous_run: dict[str, Any] = {}
        self.place = Distributed()

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> Generator[Event, None, PriorTrainingResult]:
        """Check the inputs, encode (or reuse) the codes, train, and write the prior.

        Yields :class:`Notice` events, ``Progress("encode", ...)`` while the images are encoded,
        ``Progress("train", step, steps, loss=train loss, losses={"val_loss": ...})`` per step and a
        :class:`Preview` per sample grid; returns a :class:`PriorTrainingResult`. A stop (Ctrl-C,
        ``close()``) saves the training state of the last finished step before it ends the run.

        Raises:
            InputError: an empty or missing folder, no readable image, class conditioning
                without sub-folders.
            ConfigError: a ``--vqgan`` that is not a VQGAN, a ``--size`` that does not fit it.
        """
        self.place = place = Distributed.current(self.device)  # under torchrun: this process's place
        self.device = place.device(self.device)
        self.config = config = replace(self.config, seed=place.share(self.config.seed))
        folder_images = None if self.resume is not None else self._check_data()
        vqgan = self._load_vqgan()
        factor = vqgan.downsample_factor
        if config.size % factor:
            lower = config.size // factor * factor
            fits = f"{lower} or {lower + factor}" if lower else str(factor)
            raise ConfigError(f"--size {config.size} is not a multiple of the VQGAN's downsample factor {factor}; "
                              f"use {fits}.")
        if folder_images is not None and config.conditioning == "class" and len(folder_images.classes) > vqgan.n_codes:
            raise ConfigError(
                f"{folder_images.root} has {len(folder_images.classes)} classes, but class tokens share the "
                f"VQGAN's {vqgan.n_codes} codes as vocabulary (as in Taming), so at most {vqgan.n_codes} fit; use "
                "fewer sub-folders or a VQGAN with more codes.")
        digest = code_cache.vqgan_digest(vqgan)
        if not place.main:  # the first process writes the files and reports; the others train
            return drain(self._follow(vqgan, digest))
        if self.folder is None:
            self.folder = self._create_folder()
            self._write_json(CONFIG_FILE, config.to_dict())
        self._previous_run = self._read_json(RUN_FILE)  # a resumed run's record, {} for a new run
        yield Notice(f"writing the training run into {self.folder}")
        codes = yield from self._codes(vqgan, digest, folder_images)
        place.share((self.folder, self._previous_run))  # the codes are in the run folder: the others go on
        if config.conditioning == "class" and len(codes.classes) > vqgan.n_codes:
            raise ConfigError(f"the encoded images have {len(codes.classes)} classes, more than the VQGAN's "
                              f"{vqgan.n_codes} codes; use fewer classes.")
        return (yield from self._train(vqgan, digest, codes))

    def _follow(self, vqgan: VQGAN, digest: str) -> Generator[Event, None, PriorTrainingResult]:
        """Another process than the first: train on the codes the first one wrote."""
        self.folder, self._previous_run = self.place.share(None)
        assert self.folder is not None
        return (yield from self._train(vqgan, digest, code_cache.load_codes(self.folder / code_cache.CODES_FILE)))

    def _check_data(self) -> ImageFolder:
        images = scan_images(self.config.data)
        if self.config.conditioning == "class" and not images.classes:
            raise InputError(
                f"--conditioning class needs the images of each class in a sub-folder of {images.root} named after "
                "it, and the folder holds its images directly; move each class into its own sub-folder, or train "
                "an unconditional prior.")
        return images

    def _load_vqgan(self) -> VQGAN:
        config = self.config
        try:
            vqgan = load_vqgan_by_name(config.vqgan, config.vqgan_config, device=self.device,
                                       weights_dir=self.weights_dir, offline=self.offline)
        except CheckpointError as error:
            raise ConfigError(f"--vqgan {config.vqgan}: {summary(error)}") from None
        if vqgan.image_channels != 3:
            raise ConfigError(f"--vqgan {config.vqgan} encodes {vqgan.image_channels}-channel maps, not RGB images; "
                              "give a VQGAN of images.")
        return vqgan

    def _create_folder(self) -> Path:
        return new_folder(self.out_dir, f"{FOLDER_PREFIX}{self._name()}-{datetime.now():%Y%m%d-%H%M%S}")

    def _codes(self, vqgan: VQGAN, digest: str,
               images: ImageFolder | None) -> Generator[Event, None, CodeSet]:
        assert self.folder is not None
        path = self.folder / code_cache.CODES_FILE
        size = self.config.size
        if path.is_file():  # a resumed run
            codes = code_cache.load_codes(path)
            if self._recorded_digest() not in (None, digest):
                raise ConfigError(f"the VQGAN {self.config.vqgan} is not the one this run was trained with (its "
                                  "weights changed); resume with that VQGAN, or start a new run.")
            return codes
        images = images or self._check_data()
        fingerprint = code_cache.fingerprint(images, size, digest)
        cached = code_cache.find_cached_codes(self.out_dir, fingerprint)
        if cached is not None:
            codes = code_cache.load_codes(cached)
            yield Notice(f"reusing the images encoded by {cached.parent.name} (same images, size and VQGAN)")
        else:
            codes = yield from code_cache.encode_folder(images, vqgan, size, fingerprint=fingerprint,
                                                        device=self.device)
            if images.skipped:
                yield Notice(f"{len(images.skipped)} of {len(images.files)} images could not be read and were "
                             "left out")
        code_cache.save_codes(codes, path)
        return codes

    # --- training -----------------------------------------------------------------------------

    def _train(self, vqgan: VQGAN, digest: str, codes: CodeSet) -> Generator[Event, None, PriorTrainingResult]:
        config, device, folder = self.config, self.device, self.folder
        assert folder is not None and config.seed is not None
        rows, cols = codes.grid
        sequences = codes.codes.reshape(len(codes), rows * cols)  # (N, L)
        conditions = codes.labels if config.conditioning == "class" else torch.full((len(codes),), SOS_TOKEN)
        n_classes = max(len(codes.classes), 1)
        train_ids, val_ids = self._split(len(codes))
        if not len(val_ids):
            yield Notice("no image is held out (one image, or --val-fraction 0), so there is no validation loss")
        gpt = init_gpt(GPT(config.gpt_config(vocab_size=vqgan.n_codes, block_size=rows * cols)), config.seed)
        gpt.to(device).train()
        optimizer = make_optimizer(gpt, config)
        start = self._load_state(gpt, optimizer, digest)
        place, main = self.place, self.place.main
        # DistributedDataParallel averages the gradients over the processes, each of which takes its
        # slice of the combined batch: N processes of batch B train the weights of one of batch N x B
        model = DistributedDataParallel(gpt, device_ids=[device.index] if device.type == "cuda" else None) \
            if place.active else gpt
        if start >= config.steps:
            raise ConfigError(f"this run has already trained {start} steps; give --steps with more than {start} to "
                              "train further.")
        if self.resume is not None and main:
            self._write_json(CONFIG_FILE, config.to_dict())  # its --steps may have changed
        if start:
            yield Notice(f"resuming at step {start} of {config.steps}")
        if main:
            self._trim_metrics(start)
        dtype = _precision_dtype(device, config.precision)
        checkpoint = folder / f"{self._name()}_transformer.ckpt"
        val_loss = train_loss = None
        if start == 0 and len(val_ids) and main:
            val_loss = self._val_loss(gpt, sequences, conditions, val_ids, dtype)
            self._append_metrics({"step": 0, "val_loss": val_loss})
        step = done = start  # done: the steps whose update is complete
        if main:
            self._write_run("running", step, None)
        started = time.perf_counter()
        try:
            for step in range(start + 1, config.steps + 1):
                size = config.batch_size
                batch = self._batch(step, train_ids)[place.rank * size:(place.rank + 1) * size]  # (B,) ids
                codes_batch = sequences[batch].to(device)
                cond_batch = conditions[batch].to(device)[:, None]
                with autocast(device, dtype):
                    loss = sequence_loss(model, cond_batch, codes_batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    nn.utils.clip_grad_norm_(gpt.parameters(), config.grad_clip)
                optimizer.step()
                done = step
                train_loss = place.average({"loss": float(loss.detach())}, device)["loss"]
                if not math.isfinite(train_loss):
                    raise ConfigError(f"the training loss stopped being a number at step {step}; lower --lr "
                                      "(or use --precision fp32) and start again.")
                line: dict[str, Any] = {"step": step, "train_loss": train_loss}
                last = step == config.steps
                if not main:
                    continue
                if len(val_ids) and (last or (config.val_every and step % config.val_every == 0)):
                    val_loss = line["val_loss"] = self._val_loss(gpt, sequences, conditions, val_ids, dtype)
                self._append_metrics(line)
                if last or (config.sample_every and step % config.sample_every == 0):
                    grid = self._samples(gpt, vqgan, codes, step)
                    yield Preview("train", step, grid)
                if config.save_every and step % config.save_every == 0 and not last:
                    self._save_state(gpt, optimizer, step, digest)
                yield Progress("train", step, config.steps, time.perf_counter() - started, loss=train_loss,
                               losses={"val_loss": val_loss} if val_loss is not None else {})
        except (KeyboardInterrupt, GeneratorExit):
            # exact at a yield (close(), or the CLI's Ctrl-C, which waits for the step to end); a
            # KeyboardInterrupt inside optimizer.step() itself would leave a half-updated state
            if main:
                self._save_state(gpt, optimizer, done, digest)
                self._write_run("stopped", done, None)
            raise
        except (torch.OutOfMemoryError, RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                if main:
                    self._write_run("failed", step, summary(error))
                raise
            optimizer.zero_grad(set_to_none=True)
            release_memory(device)
            said = (f"{describe_device(device)} ran out of memory at step {done + 1} ({config.batch_size} sequences of "
                    f"{rows * cols} codes a batch); lower --batch-size, --n-embd or --n-layer, then go on with "
                    f"--resume {folder} (its state is step {done}).")
            if main:
                self._save_state(gpt, optimizer, done, digest)
                self._write_run("failed", done, said)
            raise OutOfMemoryError(said) from None
        except BaseException as error:
            if main:
                self._write_run("failed", step, summary(error))
            raise
        if not main:
            checkpoint, config_file, registered = place.share(None)
            return PriorTrainingResult(folder, checkpoint, config_file, registered, config.steps, train_loss, None,
                                       codes.classes)
        self._save_state(gpt, optimizer, config.steps, digest)
        checkpoint, config_file = save_prior(gpt.eval(), vqgan, checkpoint, conditioning=config.conditioning,
                                             n_classes=n_classes, sos_token=SOS_TOKEN, step=config.steps,
                                             epoch=(config.steps * config.batch_size) // max(len(train_ids), 1))
        previous = self._previous_run.get("metrics", {}).get("registered")
        registered = register_prior(checkpoint, config_file, Path(previous).stem if previous else checkpoint.stem,
                                    weights_dir=self.weights_dir, replace=bool(previous))
        self._write_run("done", config.steps, None, train_loss=train_loss, val_loss=val_loss,
                        seconds=time.perf_counter() - started, checkpoint=checkpoint.name, registered=str(registered),
                        classes=list(codes.classes))
        place.share((checkpoint, config_file, registered))
        return PriorTrainingResult(folder, checkpoint, config_file, registered, config.steps, train_loss, val_loss,
                                   codes.classes)

    def _split(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(training ids, held-out ids): a seeded permutation, the first ``val_fraction`` held out."""
        assert self.config.seed is not None
        order = torch.randperm(count, generator=torch.Generator().manual_seed(derived_seed(self.config.seed, "split")))
        held = 0 if count < 2 or not self.config.val_fraction else \
            min(count - 1, max(1, round(count * self.config.val_fraction)))
        return order[held:], order[:held]

    def _batch(self, step: int, train_ids: torch.Tensor) -> torch.Tensor:
        """The training ids of ``step`` (1-based): consecutive slices of one seeded permutation of
        the training set per epoch, so a step's batch depends on nothing but the seed and the step."""
        assert self.config.seed is not None
        size, count = self.config.batch_size * self.place.world, len(train_ids)  # the combined batch
        positions = range((step - 1) * size, step * size)
        picked = []
        for position in positions:
            epoch, index = divmod(position, count)
            if epoch not in self._orders:
                if len(self._orders) > 2:
                    self._orders.pop(min(self._orders))
                seed = derived_seed(self.config.seed, "epoch", epoch)
                self._orders[epoch] = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
            picked.append(int(self._orders[epoch][index]))
        return train_ids[picked]

    @torch.no_grad()
    def _val_loss(self, gpt: GPT, sequences: torch.Tensor, conditions: torch.Tensor, val_ids: torch.Tensor,
                  dtype: torch.dtype | None) -> float:
        """The mean cross-entropy per code of the held-out sequences."""
        total, count = 0.0, 0
        for first in range(0, len(val_ids), self.config.batch_size):
            ids = val_ids[first : first + self.config.batch_size]
            with autocast(self.device, dtype):
                loss = sequence_loss(gpt, conditions[ids].to(self.device)[:, None], sequences[ids].to(self.device))
            total += float(loss) * len(ids)
            count += len(ids)
        return total / count

    def _samples(self, gpt: GPT, vqgan: VQGAN, codes: CodeSet, step: int) -> Any:
        """A grid of images sampled at ``step`` (a row per class), written as ``samples-<step>.png``."""
        assert self.folder is not None and self.config.seed is not None
        rows, cols = codes.grid
        if self.config.conditioning == "class":
            shown = min(len(codes.classes), MAX_SAMPLE_CLASSES)
            labels = [label for label in range(shown) for _ in range(self.config.sample_count)]
            columns = self.config.sample_count
        else:
            labels = [SOS_TOKEN] * self.config.sample_count
            columns = None
        cond = torch.tensor(labels, dtype=torch.long, device=self.device)[:, None]  # (B, 1)
        tokens = torch.zeros(len(labels), rows * cols, dtype=torch.long, device=self.device)
        generator = torch.Generator(self.device).manual_seed(derived_seed(self.config.seed, "samples", step))
        was_training = gpt.training
        gpt.eval()
        for _ in sample_in_window(gpt, cond, tokens, cols, start=0, settings=SamplingSettings(),
                                  generator=generator):
            pass
        gpt.train(was_training)
        images = []
        with torch.inference_mode():
            for first in range(0, len(labels), DECODE_CHUNK):
                grids = tokens[first : first + DECODE_CHUNK].view(-1, rows, cols)
                pixels = vqgan.decode_indices(grids).float().add(1).div(2)  # (b, 3, H, W) in [0, 1]
                images += [tensor_to_pil(image) for image in pixels]
        sheet = contact_sheet(images, columns=columns)
        replace_bytes_atomic(self.folder / f"samples-{step:06d}.png", png_bytes(sheet, None))
        return sheet

    # --- files of the run folder ---------------------------------------------------------------

    def _name(self) -> str:
        """The slug of the run's name: ``--name``, else the data folder's name."""
        return slugify(self.config.name or Path(self.config.data).resolve().name or "prior")

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        assert self.folder is not None
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        replace_bytes_atomic(self.folder / name, text.encode("utf-8"))

    def _read_json(self, name: str) -> dict[str, Any]:
        assert self.folder is not None
        try:
            data = json.loads((self.folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_run(self, status: str, step: int, error: str | None, **metrics: Any) -> None:
        registered = self._previous_run.get("metrics", {}).get("registered")
        metrics = {**({"registered": registered} if registered else {}), **metrics}  # a resumed run's copy
        self._write_json(RUN_FILE, {"mode": RUN_KIND, "label": f"{self.config.name or Path(self.config.data).name} "
                                    "prior", "status": status, "step": step, "total": self.config.steps,
                                    "seed": self.config.seed, "error": error, "metrics": metrics})

    def _append_metrics(self, line: dict[str, Any]) -> None:
        assert self.folder is not None
        path = self.folder / METRICS_FILE
        try:
            with path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(line) + "\n")
        except OSError as error:
            raise output_error(error, path, self.folder) from error

    def _trim_metrics(self, step: int) -> None:
        """Drop the metrics of steps after ``step`` (a stop may come after the last saved state)."""
        assert self.folder is not None
        path = self.folder / METRICS_FILE
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except (ValueError, AttributeError):
                continue  # a line cut short by a crash
        replace_bytes_atomic(path, "".join(line + "\n" for line in kept).encode("utf-8"))

    def _recorded_digest(self) -> str | None:
        assert self.folder is not None
        path = self.folder / STATE_FILE
        if not path.is_file():
            return None
        try:
            with safe_open(path, framework="pt") as opened:
                return (opened.metadata() or {}).get("vqgan_sha256")
        except (OSError, SafetensorError):
            return None

    def _save_state(self, gpt: GPT, optimizer: torch.optim.Optimizer, step: int, digest: str) -> None:
        """The GPT's weights and AdamW's state after ``step`` steps, in ``train-state.safetensors``."""
        assert self.folder is not None
        tensors = {f"gpt.{key}": value.detach().to("cpu").clone() for key, value in gpt.state_dict().items()}
        state = optimizer.state_dict()
        for index, values in state["state"].items():
            for key, value in values.items():
                tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().to("cpu").clone()
        groups = [{key: value for key, value in group.items()} for group in state["param_groups"]]
        metadata = {"format": STATE_FORMAT, "step": str(step), "vqgan_sha256": digest,
                    "param_groups": json.dumps(groups)}
        replace_bytes_atomic(self.folder / STATE_FILE, save_safetensors(tensors, metadata=metadata))

    def _load_state(self, gpt: GPT, optimizer: torch.optim.Optimizer, digest: str) -> int:
        """Restore a saved state into ``gpt`` and ``optimizer``; the step it was saved at (0: none)."""
        assert self.folder is not None
        path = self.folder / STATE_FILE
        if not path.is_file():
            return 0
        try:
            tensors = load_safetensors(path.read_bytes())
            with safe_open(path, framework="pt") as opened:
                metadata = opened.metadata() or {}
            if metadata.get("format") != STATE_FORMAT:
                raise ValueError("not a training state")
            if metadata.get("vqgan_sha256") != digest:
                raise ConfigError(f"the VQGAN {self.config.vqgan} is not the one this run was trained with (its "
                                  "weights changed); resume with that VQGAN, or start a new run.")
            gpt.load_state_dict({key.removeprefix("gpt."): value for key, value in tensors.items()
                                 if key.startswith("gpt.")}, strict=True)
            moments: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                if key.startswith("optimizer."):
                    _, index, name = key.split(".", 2)
                    moments.setdefault(int(index), {})[name] = value
            optimizer.load_state_dict({"state": moments, "param_groups": json.loads(metadata["param_groups"])})
            return int(metadata["step"])
        except (OSError, SafetensorError, ValueError, KeyError, RuntimeError) as error:
            if isinstance(error, ConfigError):
                raise
            raise InputError(f"the training state {path} cannot be read ({type(error).__name__}); the run cannot be "
                             "resumed, start a new one.") from None
