"""Load a frozen CLIP through open_clip: any architecture with a pretrained tag, a registry
name or a local weights file, read without running code from it.

The architecture is an open_clip name (``ViT-B-32``) or an open_clip model-config JSON file.
Weights are an open_clip state dict (``.pt``/``.pth``/``.bin``/``.safetensors``, optionally
wrapped in ``{"state_dict": ...}`` with ``module.`` prefixes), an OpenAI state dict, or an
OpenAI TorchScript archive (``ViT-B-32.pt``). open_clip only builds the network and fetches
files; every file is opened with :func:`generator.weights.checkpoints.open_checkpoint` (pickles
only ever parsed by its limited child) and loaded strictly. Input size, mean and std are read
back from the built model, never from constants.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
from huggingface_hub import try_to_load_from_cache
from open_clip.model import convert_to_custom_text_state_dict
from open_clip.pretrained import (
    download_pretrained,
    get_pretrained_cfg,
    list_pretrained_tags_by_model,
)
from torch import nn

from generator.errors import CheckpointError, ConfigError, WeightsError, summary
from generator.text_to_image.clip import ClipModel
from generator.weights import store
from generator.weights.checkpoints import ROOT, Checkpoint, open_checkpoint
from generator.weights.download import ProgressCallback
from generator.weights.state_dicts import StateDict, load_strict, state_dict_from

logger = logging.getLogger(__name__)

# open_clip (architecture, tag) pairs whose file is a registry entry (checked sha256, resumable).
TAG_REGISTRY = {
    ("ViT-B-32", "openai"): "clip_vit_b_32_openai",
    ("ViT-B-32-quickgelu", "openai"): "clip_vit_b_32_openai",
    ("ViT-B-32", "laion2b_e16"): "clip_vit_b_32_laion2b_e16",
}
# Tensors an OpenAI TorchScript archive stores that are not parameters of the network.
_OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
_NO_WEIGHTS = (None, "", "none", "random")


def load_clip(
    model: str | os.PathLike[str],
    pretrained: str | os.PathLike[str] | None = "openai",
    *,
    device: str | torch.device = "cpu",
    weights_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    progress: ProgressCallback | None = None,
    quick_gelu: bool | None = None,
) -> ClipModel:
    """Build an open_clip model and load its weights strictly and safely.

    Args:
        model: open_clip architecture name (``ViT-B-32``, ``RN50``) or the path of an open_clip
            model-config JSON (``embed_dim``/``vision_cfg``/``text_cfg``, or ``model_cfg`` plus
            ``preprocess_cfg`` as in ``open_clip_config.json``).
        pretrained: None/"none" (random weights), a local weights file, a registry name of kind
            clip, or an open_clip pretrained tag of ``model`` (``openai``, ``laion2b_e16``...).
        device: where the model goes.
        weights_dir, offline, progress: as in :func:`generator.weights.store.resolve`; weights of
            tags without a registry entry are cached in ``<weights_dir>/open_clip``.
        quick_gelu: force QuickGELU on (True) or off (False); None decides from the tag, the
            registry entry or the TorchScript archive, else keeps the architecture's own.

    Raises:
        ConfigError: unknown architecture or tag, or an unreadable config file.
        WeightsError: weights missing and not downloadable (offline) or the download failed.
        CheckpointError: the file is not a CLIP checkpoint or does not fit the architecture.
    """
    architecture = _architecture(model)
    arch, preprocess = architecture.name, architecture.preprocess
    path, tag_cfg, auto_quick, label = _weights_source(arch, pretrained, weights_dir, offline, progress)
    checkpoint = open_checkpoint(path, weights_dir=weights_dir) if path is not None else None
    try:
        if checkpoint is not None and checkpoint.kind == "torchscript" and auto_quick is None:
            auto_quick = _archive_quick_gelu(checkpoint)
        if tag_cfg:
            preprocess = {**preprocess, "mean": tag_cfg["mean"], "std": tag_cfg["std"]}
        quick = quick_gelu if quick_gelu is not None else auto_quick
        network, tokenizer = _build(architecture, quick, preprocess, force_off=quick_gelu is False)
        if checkpoint is not None:
            state = _clip_state_dict(checkpoint, network, source=Path(path).name)
            load_strict(network, state, source=Path(path).name, what=f"CLIP {arch}",
                        likely_cause=f"these weights are for a different CLIP architecture than {arch}",
                        remedy="pass the architecture (or model-config JSON) the weights were trained with")
    finally:
        if checkpoint is not None:
            checkpoint.close()
    network = network.float().to(device)
    return ClipModel(network, tokenizer, name=f"{arch}/{label}", embed_dim=architecture.embed_dim)


@dataclass(frozen=True)
class _Architecture:
    """What network to build: an open_clip architecture, or the model config of a JSON file.

    Attributes:
        name: the open_clip name, or ``<stem>-<hash of the config>`` for a file.
        cfg: a file's model config (None for a built-in architecture).
        preprocess: mean and std a file's ``preprocess_cfg`` sets.
    """

    name: str
    cfg: dict[str, Any] | None = None
    preprocess: dict[str, Any] = field(default_factory=dict)

    @property
    def embed_dim(self) -> int:
        return int((self.cfg or open_clip.get_model_config(self.name))["embed_dim"])


def _architecture(model: str | os.PathLike[str]) -> _Architecture:
    """The architecture an architecture name or a model-config JSON file names."""
    text = os.fspath(model).strip()
    path = Path(text).expanduser()
    if path.is_file() or text.lower().endswith(".json"):
        return _read_config(path)
    known = open_clip.list_models()
    name = {k.lower(): k for k in known}.get(text.replace("/", "-").lower(), text)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=4, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(
            f"{text!r} is not an open_clip architecture; {hint}use a name from "
            "open_clip.list_models() or the path of a model-config JSON file."
        )
    return _Architecture(name)


def _read_config(path: Path) -> _Architecture:
    """A model-config JSON, named ``<stem>-<hash of its contents>`` in labels. It is never
    added to open_clip's global registry: the network is built from a private copy."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"CLIP config file {path} does not exist; check the path.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path} is not a readable JSON file ({error}); give an open_clip model config.") from None
    cfg = data.get("model_cfg", data) if isinstance(data, dict) else None
    if not isinstance(cfg, dict) or not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ConfigError(
            f"{path} is not an open_clip model config (it needs embed_dim, vision_cfg and text_cfg); "
            "give a file like open_clip's model_configs/ViT-B-32.json."
        )
    preprocess = {k: v for k, v in (data.get("preprocess_cfg") or {}).items() if k in ("mean", "std")}
    canonical = json.dumps(cfg, sort_keys=True)
    return _Architecture(f"{path.stem}-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}", cfg, preprocess)


def _weights_source(
    arch: str, pretrained: Any, weights_dir: Any, offline: bool | None, progress: ProgressCallback | None,
) -> tuple[Path | None, dict[str, Any], bool | None, str]:
    """(weights file or None, tag config, QuickGELU implied by the source, label)."""
    text = None if pretrained is None else os.fspath(pretrained).strip()
    if text is None or text.lower() in _NO_WEIGHTS:
        return None, {}, None, "random"
    tag = text.lower().replace("-", "_")
    entry_name = text if text in store.REGISTRY else TAG_REGISTRY.get((arch, tag))
    if entry_name is not None:
        entry = store.get(entry_name)
        entry_arch = str(entry.config.get("architecture", "")) if entry.kind == "clip" else ""
        builtin = (Path(open_clip.__file__).parent / "model_configs" / f"{arch}.json").is_file()
        if builtin and entry_arch and arch.removesuffix("-quickgelu") != entry_arch.removesuffix("-quickgelu"):
            raise ConfigError(
                f"{entry_name} holds weights for {entry_arch}, not {arch}; pass "
                f"model={entry_arch.removesuffix('-quickgelu')!r} or other weights."
            )
        path = store.resolve(entry_name, kind="clip", weights_dir=weights_dir, offline=offline,
                               progress=progress)
        tag_cfg = next((get_pretrained_cfg(a, t) for (a, t), n in TAG_REGISTRY.items() if n == entry_name), {})
        return path, tag_cfg, entry_arch.endswith("-quickgelu") or None, text
    tag_cfg = get_pretrained_cfg(arch, tag)
    if tag_cfg:
        return _fetch_tag(arch, tag, tag_cfg, weights_dir, offline), tag_cfg, tag_cfg.get("quick_gelu"), tag
    if Path(text).expanduser().is_file():
        return Path(text).expanduser(), {}, None, Path(text).name
    if os.sep in text or "/" in text or text.lower().endswith(_WEIGHT_SUFFIXES):
        store.resolve(text, kind="clip")  # raises the file-does-not-exist error
    tags = list_pretrained_tags_by_model(arch)
    known = f"its tags are {', '.join(tags)}" if tags else "it has no open_clip pretrained tags"
    raise ConfigError(
        f"{text!r} is not a pretrained tag of {arch} ({known}), a registry CLIP name or an existing "
        "file; pass one of those, or none for random weights."
    )


def _fetch_tag(arch: str, tag: str, cfg: Mapping[str, Any], weights_dir: Any, offline: bool | None) -> Path:
    """The file of an open_clip tag, fetched by open_clip into ``<weights_dir>/open_clip`` (it
    verifies and reuses what it has); offline, only a file already there is used."""
    cache = store.weights_dir(weights_dir) / "open_clip"
    if not store.offline_mode(offline):
        logger.info("fetching open_clip weights %s/%s into %s", arch, tag, cache)
        try:
            return Path(download_pretrained(dict(cfg), cache_dir=str(cache)))
        except Exception as error:  # urllib, huggingface_hub and OS errors alike
            raise WeightsError(
                f"downloading the open_clip weights {arch}/{tag} failed ({summary(error)}); "
                "check the network and try again, or pass a local weights file."
            ) from None
    candidates = [Path(cfg["file"])] if cfg.get("file") else []
    if cfg.get("url"):
        candidates.append(cache / os.path.basename(cfg["url"]))
    if cfg.get("hf_hub"):  # open_clip prefers the hub; its files sit in the hub's cache layout
        repo, filename = os.path.split(cfg["hf_hub"])
        names = (Path(filename).stem + ".safetensors", filename) if filename else \
            ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
        for name in names:
            found = try_to_load_from_cache(repo, name, cache_dir=str(cache))
            candidates.append(Path(found) if isinstance(found, str) else cache / "-")
    cached = next((path for path in candidates if path.is_file()), None)
    if cached is None:
        raise WeightsError(
            f"the open_clip weights {arch}/{tag} are not in {cache} and offline mode forbids "
            "downloading them; run once while online, or pass a local weights file as pretrained."
        )
    return cached


def _build(architecture: _Architecture, quick: bool | None, preprocess: Mapping[str, Any], *,
           force_off: bool) -> tuple[nn.Module, Any]:
    """(network with random weights, tokenizer). open_clip logs "No pretrained weights loaded"
    here: the weights are loaded right after (the command line's log handler leaves that out)."""
    kwargs: dict[str, Any] = {"quick_gelu": False} if force_off else {}
    options = dict(pretrained=None, force_quick_gelu=bool(quick), pretrained_text=False,
                   force_preprocess_cfg=dict(preprocess) or None, **kwargs)
    try:
        if architecture.cfg is None:
            return open_clip.create_model(architecture.name, **options), open_clip.get_tokenizer(architecture.name)
        with tempfile.TemporaryDirectory(prefix="clip-config-") as folder:
            (Path(folder) / "open_clip_config.json").write_text(json.dumps({"model_cfg": architecture.cfg}))
            source = f"local-dir:{folder}"
            return open_clip.create_model(source, **options), open_clip.get_tokenizer(source)
    except (RuntimeError, OSError, ValueError, ImportError) as error:
        raise ConfigError(f"open_clip could not build {architecture.name} ({summary(error)}); "
                          "check the architecture.") from None


def _clip_state_dict(checkpoint: Checkpoint, model: nn.Module, *, source: str) -> StateDict:
    """An open_clip state dict for ``model`` from a checkpoint (an OpenAI TorchScript archive's
    tensors by attribute name, or a state dict), read once its keys are known, with the safe
    adjustments of ``open_clip.factory.load_checkpoint`` (no positional-embedding resizing: a
    different grid is reported as a shape mismatch)."""
    if checkpoint.kind == "torchscript":
        state = dict(checkpoint.containers.get(ROOT, {}))
    else:
        state = state_dict_from(checkpoint, source=source, containers=("state_dict", "model"))
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    if not any(key.startswith("visual.") for key in state):
        raise CheckpointError(
            f"{source} is not a CLIP checkpoint (it has no visual.* tensors); give open_clip or "
            "OpenAI CLIP weights."
        )
    expected = model.state_dict()
    # Non-tensor-parameter attributes an archive may hold: OpenAI's extras, attention masks.
    transient = {n.rsplit(".", 1)[-1] for n, _ in model.named_buffers() if n not in expected}
    transient.update(_OPENAI_EXTRAS)
    state = {k: v for k, v in state.items() if k in expected or k.rsplit(".", 1)[-1] not in transient}
    held = sum(t.numel() * t.element_size() for t in state.values())
    wanted = sum(t.numel() * t.element_size() for t in expected.values())
    if held > 4 * wanted + 2**20:
        raise CheckpointError(f"{source} holds {held / 1e9:.1f} GB of tensors for a CLIP of {wanted / 1e9:.1f} GB; "
                              "give the weights of this architecture.")
    state = checkpoint.read(state)
    state = open_clip.convert.convert_state_dict(model, state)  # third-party layouts (MobileCLIP)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    for key in ("logit_scale", "logit_bias"):
        if key in state and key in expected and state[key].ndim != expected[key].ndim:
            state[key] = state[key].reshape(expected[key].shape)
    if "logit_bias" in expected and "logit_bias" not in state and "logit_scale" in state:
        state["logit_bias"] = torch.zeros_like(expected["logit_bias"])
    if "text.transformer.embeddings.position_ids" not in expected:  # gone from newer transformers
        state.pop("text.transformer.embeddings.position_ids", None)
    return state


def _archive_quick_gelu(checkpoint: Checkpoint) -> bool:
    """Whether an archive's network uses QuickGELU, from its modules' class names; True when
    none is named (OpenAI's archives were all trained with QuickGELU)."""
    names = set(checkpoint.classes)
    return "QuickGELU" in names or "GELU" not in names
