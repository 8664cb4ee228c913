"""Tiny random models saved in the official file formats, for tests that need no weights."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from generator.config import ClipModelConfig, GenerationConfig, ModelsConfig
from generator.config_schema import merge
from models.vqgan import VQGAN, VQGANConfig

ROOT = Path(__file__).resolve().parents[1]


def tiny_vqgan_config(**overrides: Any) -> VQGANConfig:
    """8-channel VQGAN, factor 2, attention at the second level, 16 codes of width 4."""
    values: dict[str, Any] = dict(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(128,),
                                  z_channels=4, embed_dim=4, n_embed=16, resolution=256, norm_num_groups=4)
    values.update(overrides)
    return VQGANConfig(**values)


def tiny_vqgan(seed: int = 0, **overrides: Any) -> VQGAN:
    torch.manual_seed(seed)
    model = VQGAN(tiny_vqgan_config(**overrides))
    with torch.no_grad():  # a spread-out codebook, as in a trained model
        model.codebook.copy_(torch.randn_like(model.codebook))
    return model.eval()


@contextlib.contextmanager
def foreign_class(module: str, name: str, bases: tuple[type, ...] = (), **attrs: Any) -> Iterator[type]:
    """A class that pickles as ``module.name``, as if it came from a package we lack."""
    fake_module = types.ModuleType(module)
    cls = type(name, bases, dict(attrs))
    cls.__module__ = module
    cls.__qualname__ = name
    setattr(fake_module, name, cls)
    saved = {m: sys.modules.get(m) for m in _parents(module)}
    for parent in _parents(module):
        sys.modules.setdefault(parent, types.ModuleType(parent))
    sys.modules[module] = fake_module
    try:
        yield cls
    finally:
        for m, previous in saved.items():
            if previous is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = previous


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def save_lightning_checkpoint(state: dict[str, torch.Tensor], path: Path, *, prefix: str = "",
                              loss_tensors: bool = True) -> Path:
    """Save ``state`` the way PyTorch Lightning 1.0 did: under ``state_dict``, beside training
    state that references Lightning classes (the ModelCheckpoint callback as a dict key, an
    ``argparse.Namespace`` of hyper-parameters, an unknown callback object)."""
    full = {prefix + key: value for key, value in state.items()}
    if loss_tensors:
        full["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4)
        full["loss.perceptual_loss.lin0.model.1.weight"] = torch.randn(1, 64, 1, 1)
        full["loss.logvar"] = torch.zeros(())
    with foreign_class("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint") as callback_cls, \
            foreign_class("pytorch_lightning.callbacks.early_stopping", "EarlyStopping") as early_cls:
        early = early_cls()
        early.__dict__.update(patience=3, monitor="val/rec_loss")
        checkpoint = {
            "epoch": 12,
            "global_step": 345678,
            "pytorch-lightning_version": "1.0.8",
            "callbacks": {callback_cls: {"best_model_score": torch.tensor(0.5), "best_model_path": "logs/x.ckpt"}},
            "early_stopping": early,
            "hparams": argparse.Namespace(base_learning_rate=4.5e-6, batch_size=12),
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6, "params": [0, 1]}]}],
            "lr_schedulers": [],
            "state_dict": full,
        }
        torch.save(checkpoint, path)
    return path


def upstream_vqgan_yaml(config: VQGANConfig, *, target: str | None = None) -> dict[str, Any]:
    """The ``model.yaml`` layout of taming-transformers for ``config``."""
    ddconfig = {k: v for k, v in config.to_dict().items() if k not in ("embed_dim", "n_embed", "quantizer")}
    if target is None:
        target = "taming.models.vqgan.GumbelVQ" if config.quantizer == "gumbel" else "taming.models.vqgan.VQModel"
    return {"model": {
        "base_learning_rate": 4.5e-6,
        "target": target,
        "params": {
            "embed_dim": config.embed_dim, "n_embed": config.n_embed, "monitor": "val/rec_loss",
            "ddconfig": ddconfig,
            "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                           "params": {"disc_conditional": False, "disc_in_channels": 3, "disc_start": 0,
                                      "disc_weight": 0.75, "disc_num_layers": 2, "codebook_weight": 1.0}},
        },
    }}


def write_yaml(data: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def save_tiny_vqgan(directory: Path, *, name: str = "tiny_vqgan", seed: int = 0,
                    **overrides: Any) -> tuple[Path, Path, VQGAN]:
    """A tiny VQGAN as ``<name>.ckpt`` (Lightning layout) plus ``<name>.yaml`` (upstream layout)."""
    model = tiny_vqgan(seed, **overrides)
    ckpt = save_lightning_checkpoint(model.state_dict(), directory / f"{name}.ckpt")
    config_file = write_yaml(upstream_vqgan_yaml(model.config), directory / f"{name}.yaml")
    return ckpt, config_file, model


@dataclass(frozen=True)
class TinyModelFiles:
    """Tiny random models saved in the official formats: a Lightning .ckpt + upstream .yaml
    VQGAN (factor 2, 16 codes) and an open_clip config JSON + state dict CLIP (32x32 input)."""

    vqgan: Path
    vqgan_config: Path
    clip_config: Path
    clip_weights: Path

    def models(self, clip_weight: float = 1.0) -> ModelsConfig:
        return ModelsConfig(vqgan=str(self.vqgan), vqgan_config=str(self.vqgan_config),
                            clip_models=(ClipModelConfig(str(self.clip_config), str(self.clip_weights), clip_weight),))

    def cli_args(self) -> list[str]:
        """The model flags of the command line for these files."""
        return ["--vqgan", str(self.vqgan), "--vqgan-config", str(self.vqgan_config),
                "--clip-model", str(self.clip_config), str(self.clip_weights)]


def write_tiny_models(directory: Path) -> TinyModelFiles:
    from tests.clip_factories import write_tiny_clip

    directory.mkdir(parents=True, exist_ok=True)
    vqgan, vqgan_config, _ = save_tiny_vqgan(directory, name="tiny_vqgan")
    clip_config, clip_weights = write_tiny_clip(directory, name="tiny-clip")
    return TinyModelFiles(vqgan, vqgan_config, clip_config, clip_weights)


def tiny_run_config(files: TinyModelFiles, **overrides: Any) -> GenerationConfig:
    """A fast text-to-image config for the tiny models: 32x32, 4 cutouts, 10 steps, float32
    (so that comparisons between runs are exact; precision ``auto`` has its own tests)."""
    base = {"prompts": "city at night", "size": [32, 32], "steps": 10, "seed": 3, "precision": "fp32",
            "models": GenerationConfig(models=files.models()).to_dict()["models"],
            "cutouts": {"cutn": 4}}
    return GenerationConfig.from_dict(merge(base, overrides))



def _default_sigint() -> None:
    """``preexec_fn`` for a child the test stops with SIGINT: a shell starting the suite in the
    background (``cmd &``) makes its children ignore SIGINT, and Python keeps an ignored SIGINT
    ignored, so restore the default and Ctrl-C reaches the child as KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c_cli(args: list[str], ready: Callable[[], bool], *, timeout: float = 180) -> tuple[int, str]:
    """Run ``python -m generator *args`` as a user does, press Ctrl-C (SIGINT) once ``ready()``
    holds, and return the exit code and what it printed to stderr.

    Fails the test when the run ends before ``ready()`` or ``timeout`` seconds pass first.
    """
    process = subprocess.Popen([sys.executable, "-m", "generator", *args], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"the run ended before it was interrupted: {process.communicate()[1]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the run did not get ready to interrupt within {timeout:.0f} s")
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    return process.returncode, stderr
