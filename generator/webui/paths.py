"""Which server paths a web user may point the generator at.

On a server that only this computer can reach (``--host 127.0.0.1`` or ``localhost``, no
``--share``) every path is fine, as on the command line. Served to a network, the model and
yaml fields take only catalogue names (registry names, open_clip architectures and tags) and
files under the weights folder; the image fields take http(s) addresses and the files this
visitor may read (``may_read``: what it uploaded or was sent, and its own runs); anything
else is refused with one sentence per field that is the same whether the path exists, is a
folder or is not an image, so a refusal tells nothing about the server's files (and no file
is opened to find out). Paths are compared after resolving symlinks and ``..``, and the
accepted value is the resolved path, so the file checked is the file loaded.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from generator.config import ModelsConfig
from generator.errors import GeneratorError, InputError
from generator.io import fetch
from generator.io.masks import ALPHA
from generator.text_to_image.prompts import parse_prompts, parse_story
from generator.webui.forms import clip_models_text, parse_clip_models
from generator.weights import store

MayRead = Callable[[Path], bool]
"""Whether the visitor of a request may read a server file (resolved path)."""
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Host names a server listens on when only this computer can reach it."""
UPLOADS_ENV = "GRADIO_TEMP_DIR"
_URL_PREFIXES = ("http://", "https://")
_NAME_PREFIXES = ("hf-hub:",)  # open_clip model names that contain a slash
_MODEL_FIELDS = {"vqgan": "VQGAN", "vqgan_config": "VQGAN yaml", "prior": "prior", "prior_config": "prior yaml",
                 "model": "prior", "transformer_config": "project yaml", "upscale_model": "upscaler",
                 "flow_model": "flow model"}
"""Leaf names of the configs' model and yaml fields, with their labels."""
_IMAGE_FIELDS = {"init_image": "init image", "mask": "mask", "image": "image", "condition": "condition map",
                 "complete": "image to complete", "video_init": "video to restyle", "audio": "sound",
                 "init_latent": "run to continue"}
"""Leaf names of the configs' image (video, sound, run folder) fields, with their labels."""


def is_local_only(host: str | None, share: bool = False) -> bool:
    """Whether a server on ``host`` (None: Gradio's default, 127.0.0.1) is reachable from
    this computer only: a loopback host and no ``--share`` link."""
    return not share and (host or "127.0.0.1").strip().lower().strip("[]") in LOCAL_HOSTS


def gradio_upload_dir() -> Path:
    """Where Gradio 6 stores uploaded files (and copies of the files it serves):
    ``$GRADIO_TEMP_DIR``, else ``<system temp>/gradio``."""
    return Path(os.environ.get(UPLOADS_ENV) or Path(tempfile.gettempdir()) / "gradio")


def _real(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``~``, symlinks and ``..`` resolved (relative to the working directory)."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def is_registry_name(value: str) -> bool:
    """Whether ``value`` names a registry file (also by another tool's name for it, or a
    prior's short name such as ``ffhq``), never a path."""
    if not value or any(sep in value for sep in ("/", "\\", os.sep)) or value.startswith((".", "~")):
        return False
    try:
        store.get(value)
    except GeneratorError:
        return f"{value}_transformer" in store.REGISTRY
    return True


def _nobody(_: Path) -> bool:
    return False


@dataclasses.dataclass(frozen=True)
class PathPolicy:
    """What paths the web UI's fields accept.

    Args:
        weights_dir: the weights folder (``--weights-dir``); model and yaml fields take its files.
        open: accept any path (a server reachable from this computer only).
        server_files: model files the server was started with (``--vqgan my.ckpt``...): the
            admin's choice, accepted wherever they are.
    """

    weights_dir: Path
    open: bool = False
    server_files: tuple[str, ...] = ()
    _root: Path = dataclasses.field(init=False, repr=False, compare=False)
    _own: frozenset[Path] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights_dir", Path(self.weights_dir))
        object.__setattr__(self, "_root", _real(self.weights_dir))
        object.__setattr__(self, "_own", frozenset(_real(path) for path in self.server_files if path))

    @classmethod
    def for_server(cls, host: str | None, share: bool, *, weights_dir: str | os.PathLike[str] | None = None,
                   models: ModelsConfig | None = None) -> PathPolicy:
        """The policy of a server started with ``--host host`` (``--share``): open when it is
        reachable from this computer only (:func:`is_local_only`), else limited to catalogue
        names, the weights folder (:func:`generator.weights.store.weights_dir` of
        ``weights_dir``) and the files of ``models`` (the server's own) for models, and to
        what each visitor may read for images."""
        files: list[str] = []
        if models is not None:
            files += [models.vqgan, models.vqgan_config or "", models.prior or "", models.prior_config or ""]
            for clip in models.clip_models:
                files += [clip.model, clip.pretrained or ""]
        return cls(store.weights_dir(weights_dir), open=is_local_only(host, share),
                   server_files=tuple(f for f in files if f and Path(f).expanduser().is_file()))

    def guard_fetches(self) -> None:
        """For a closed policy, make this process fetch image addresses from public internet
        addresses only (:data:`generator.io.fetch.PUBLIC_ONLY_ENV`), so a web user cannot make
        the server request its own ports, its network or a cloud metadata service. An open
        policy (this computer only) leaves fetching as on the command line."""
        if not self.open:
            os.environ[fetch.PUBLIC_ONLY_ENV] = "1"

    def refusal(self, field: str, *, image: bool = False) -> str:
        """The one sentence a refused value of ``field`` (an image field: ``image``) gets; it
        names no path and is the same for every refused value."""
        if image:
            return (f"the {field} field takes an upload, one of your results or an http(s) address on the "
                    "internet; other server paths are refused.")
        return (f"the {field} field takes a model name from the menu or a file in the weights folder; other "
                "server paths are refused.")

    def allows(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path``, with symlinks and ``..`` resolved, lies in the weights folder or is
        one of the server's own model files (always True when the policy is open)."""
        if self.open:
            return True
        try:
            real = _real(path)
        except (OSError, ValueError):  # a NUL byte, a symlink loop
            return False
        return real in self._own or _inside(real, (self._root,))

    def check(self, value: str | os.PathLike[str] | None, field: str) -> str:
        """The value a model or yaml field may use.

        Args:
            value: a registry name or a path (None or empty: the field is unset).
            field: the field's label in the UI, for the refusal sentence (``"VQGAN"``).

        Returns:
            ``""`` for an empty value; the value as given when the policy is open or it is a
            registry name; else the resolved path (symlinks and ``..`` resolved), so the file
            checked is the file used.

        Raises:
            InputError: :meth:`refusal` of ``field``, the same sentence whatever the refused
                path is (missing, a folder, a file that is not what the field wants).
        """
        text = os.fspath(value or "").strip()
        if not text or self.open or is_registry_name(text):
            return text
        if self.allows(text):
            return str(_real(text))
        raise InputError(self.refusal(field))

    def check_image(self, value: str | os.PathLike[str] | None, field: str, may_read: MayRead = _nobody) -> str:
        """The value an image (or video) field may use: an http(s) address (fetched when used)
        or, served to a network, a file ``may_read`` allows (never a registry name).

        Raises:
            InputError: :meth:`refusal` of an image field.
        """
        text = os.fspath(value or "").strip()
        if not text or self.open or text.lower().startswith(_URL_PREFIXES):
            return text
        try:
            resolved = _real(text)
        except (OSError, ValueError):
            raise InputError(self.refusal(field, image=True)) from None
        if not is_registry_name(text) and may_read(resolved):
            return str(resolved)
        raise InputError(self.refusal(field, image=True))

    def check_image_prompts(self, text: str | None, field: str = "image prompts", may_read: MayRead = _nobody) -> str:
        """Check every path of an image-prompt field (``path:weight:stop | url | ...``).

        The text is parsed with the prompt grammar (so weights, stops and addresses keep
        working); files are not opened.

        Returns:
            The text as given when the policy is open or it is empty; else the entries again in
            prompt grammar, each path resolved.

        Raises:
            InputError: bad grammar (the parser's sentence), or a refused path (:meth:`refusal`
                of an image field).
        """
        if not (text or "").strip() or self.open:
            return text or ""
        prompts = parse_prompts(text, kind="image prompt")
        checked = [type(prompt)(self.check_image(prompt.text, field, may_read), prompt.weight, prompt.stop)
                   for prompt in prompts]
        return " | ".join(str(prompt) for prompt in checked)

    def check_prompt_regions(self, text: str | None, may_read: MayRead = _nobody) -> str:
        """Check the region mask of every prompt (``text @ mask.png``) as an image field.

        Returns:
            The text as given when the policy is open or no prompt has a region; else the story
            again in prompt grammar, each region's path resolved.

        Raises:
            InputError: bad grammar (the parser's sentence), or a refused region (:meth:`refusal`).
        """
        story = parse_story(text or "")
        if not any(prompt.region for phrase in story for prompt in phrase):
            return text or ""
        return " ^ ".join(" | ".join(str(dataclasses.replace(prompt, region=self.check_image(
            prompt.region, "region mask", may_read))) if prompt.region else str(prompt) for prompt in phrase)
            for phrase in story)

    def check_generation_form(self, form: dict[str, Any], may_read: MayRead = _nobody) -> dict[str, Any]:
        """A copy of the text-to-image form (widget values by config field) with every server
        path it names checked: models, yaml, init image, an edit's mask (``alpha``, which names
        no file, is kept), the region masks of the prompts, image prompts, CLIP models.

        Raises:
            InputError: the refusal sentence of the first refused field.
        """
        form = dict(form)
        for name, label in (("vqgan", "VQGAN"), ("vqgan_config", "VQGAN yaml"), ("prior", "prior"),
                            ("upscale_model", "upscaler")):
            form[name] = self.check(form.get(name), label)
        form["init_image"] = self.check_image(form.get("init_image"), "init image", may_read) or None
        if "mask" in form and form["mask"] != ALPHA:
            form["mask"] = self.check_image(form["mask"], "mask", may_read) or None
        form["prompts"] = self.check_prompt_regions(form.get("prompts"), may_read)
        form["image_prompts"] = self.check_image_prompts(form.get("image_prompts"), may_read=may_read)
        form["clip_models"] = self.check_clip_models(form.get("clip_models"))
        return form

    def check_sample_form(self, form: dict[str, Any], may_read: MayRead = _nobody) -> dict[str, Any]:
        """A copy of the prior form with every server path it names checked: prior, yaml,
        upscaler, condition map, image to complete and its mask (``alpha``, which names no file,
        is kept).

        Raises:
            InputError: the refusal sentence of the first refused field.
        """
        form = dict(form)
        for name, label in (("model", "prior"), ("transformer_config", "project yaml"), ("upscale_model", "upscaler")):
            form[name] = self.check(form.get(name), label)
        for name, label in (("condition", "condition map"), ("complete", "image to complete"), ("mask", "mask")):
            if name != "mask" or form.get(name) != ALPHA:
                form[name] = self.check_image(form.get(name), label, may_read) or None
        return form

    def check_settings(self, plain: Mapping[str, Any], may_read: MayRead = _nobody) -> dict[str, Any]:
        """A copy of a plain (nested, ``--from`` JSON) config of any mode with every server path
        it names checked, found by the leaf names the configs share: models and yamls as model
        fields, images, masks, videos, sounds and latents as image fields, the region masks of
        prompts, image prompts and CLIP models (as the forms check them).

        Raises:
            InputError: the refusal sentence of the first refused field.
        """
        checked: dict[str, Any] = {}
        for name, value in plain.items():
            if isinstance(value, Mapping):
                checked[name] = self.check_settings(value, may_read)
            elif value is None or value == "":
                checked[name] = value
            elif name in _MODEL_FIELDS:
                checked[name] = self.check(value, _MODEL_FIELDS[name])
            elif name in _IMAGE_FIELDS and not (name == "mask" and value == ALPHA):
                checked[name] = self.check_image(value, _IMAGE_FIELDS[name], may_read)
            elif name == "prompts" and isinstance(value, str):
                checked[name] = self.check_prompt_regions(value, may_read)
            elif name == "image_prompts" and isinstance(value, str):
                checked[name] = self.check_image_prompts(value, may_read=may_read)
            elif name == "clip_models" and isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
                checked[name] = parse_clip_models(self.check_clip_models(clip_models_text(value)))
            else:
                checked[name] = value
        return checked

    def check_clip_models(self, text: str | None, field: str = "CLIP models") -> str:
        """Check a CLIP models field (lines of ``MODEL [PRETRAINED [WEIGHT]]``): served to a
        network, a model must be an open_clip architecture (or ``hf-hub:`` name) and pretrained
        weights an open_clip tag of it, a registry name or ``none``; anything else is taken as a
        path and must be in the weights folder (a bare word that names a file in the server's
        working folder is refused, never read).

        Returns:
            The text, with allowed paths resolved when the policy is closed.

        Raises:
            InputError: :meth:`refusal` of ``field`` for a refused value.
        """
        if self.open or not (text or "").strip():
            return text or ""
        lines = []
        for line in (text or "").splitlines():
            words = line.split()
            if words and not _is_clip_architecture(words[0]):
                words[0] = self._check_file(words[0], field)
            if len(words) > 1 and not _is_clip_weights_name(words[0], words[1]):
                words[1] = self._check_file(words[1], field)
            lines.append(" ".join(words))
        return "\n".join(lines)

    def _check_file(self, word: str, field: str) -> str:
        """``word`` as a file in the weights folder (resolved), else the field's refusal."""
        if self.allows(word) and not is_registry_name(word):
            return str(_real(word))
        raise InputError(self.refusal(field))


def _is_clip_architecture(word: str) -> bool:
    """Whether a CLIP model word names an open_clip architecture (any spelling open_clip takes)."""
    import open_clip

    if word.startswith(_NAME_PREFIXES):
        return True
    known = {name.lower() for name in open_clip.list_models()}
    return word.replace("/", "-").lower() in known


def _is_clip_weights_name(model: str, word: str) -> bool:
    """Whether a pretrained word is a name rather than a file: ``none``/``random``, a registry
    name, or an open_clip tag (of ``model``, or of any architecture when ``model`` is a file)."""
    from open_clip.pretrained import list_pretrained

    if word.lower() in ("none", "random") or is_registry_name(word):
        return True
    tag = word.lower().replace("-", "_")
    return any(tag == known.lower() for _, known in list_pretrained())
