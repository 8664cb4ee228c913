"""Which server paths a web user may point the generator at.

On a server that only this computer can reach (``--host 127.0.0.1`` or ``localhost``, no
``--share``) every path is fine, as on the command line. Served to a network, the model,
yaml and image fields take only registry names, files under the weights folder and files
this server received or wrote (Gradio's upload folder, the outputs folder); anything else
is refused with one sentence per field that is the same whether the path exists, is a
folder or is not an image, so a refusal tells nothing about the server's files. Paths are
compared after resolving symlinks and ``..``, and the accepted value is the resolved path,
so the file checked is the file loaded.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from generator.errors import GeneratorError, InputError
from generator.guidance.prompts import parse_prompts
from generator.io import fetch
from generator.weights import store

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Host names a server listens on when only this computer can reach it."""
UPLOADS_ENV = "GRADIO_TEMP_DIR"
_URL_PREFIXES = ("http://", "https://")
_NAME_PREFIXES = ("hf-hub:",)  # open_clip model names that contain a slash


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


@dataclasses.dataclass(frozen=True)
class PathPolicy:
    """What paths the web UI's fields accept.

    Args:
        weights_dir: the weights folder (``--weights-dir``); its files are accepted.
        upload_dirs: folders whose files this server received or wrote: Gradio's upload
            folder and the outputs folder ("use the latest result"); accepted in every field.
        open: accept any path (a server reachable from this computer only).
    """

    weights_dir: Path
    upload_dirs: tuple[Path, ...] = ()
    open: bool = False
    _roots: tuple[Path, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights_dir", Path(self.weights_dir))
        object.__setattr__(self, "upload_dirs", tuple(Path(folder) for folder in self.upload_dirs))
        object.__setattr__(self, "_roots", tuple(_real(folder) for folder in (self.weights_dir, *self.upload_dirs)))

    @classmethod
    def for_server(cls, host: str | None, share: bool, *, outputs_dir: str | os.PathLike[str],
                   weights_dir: str | os.PathLike[str] | None = None) -> PathPolicy:
        """The policy of a server started with ``--host host`` (``--share``): open when it is
        reachable from this computer only (:func:`is_local_only`), else limited to the weights
        folder (:func:`generator.weights.store.weights_dir` of ``weights_dir``), Gradio's
        upload folder (:func:`gradio_upload_dir`) and ``outputs_dir``."""
        return cls(store.weights_dir(weights_dir), (gradio_upload_dir(), Path(outputs_dir)),
                   open=is_local_only(host, share))

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
            return (f"the {field} field takes an upload, a result of this server or an http(s) address on the "
                    "internet; "
                    "other server paths are refused.")
        return (f"the {field} field takes a registry name, a file in the weights folder or an upload on this "
                "server; other server paths are refused.")

    def allows(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path``, with symlinks and ``..`` resolved, lies in the weights folder or an
        upload folder (always True when the policy is open)."""
        if self.open:
            return True
        try:
            return _inside(_real(path), self._roots)
        except (OSError, ValueError):  # a NUL byte, a symlink loop
            return False

    def check(self, value: str | os.PathLike[str] | None, field: str) -> str:
        """The value a model, yaml or image field may use.

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

    def check_image(self, value: str | os.PathLike[str] | None, field: str) -> str:
        """:meth:`check` for an image field, which also takes an http(s) address (fetched when
        used) and never a registry name."""
        text = os.fspath(value or "").strip()
        if not text or self.open or text.lower().startswith(_URL_PREFIXES):
            return text
        if not is_registry_name(text) and self.allows(text):
            return str(_real(text))
        raise InputError(self.refusal(field, image=True))

    def check_image_prompts(self, text: str | None, field: str = "image prompts") -> str:
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
        checked = [type(prompt)(self.check_image(prompt.text, field), prompt.weight, prompt.stop)
                   for prompt in prompts]
        return " | ".join(str(prompt) for prompt in checked)

    def check_generation_form(self, form: dict[str, Any]) -> dict[str, Any]:
        """A copy of the text-to-image form (widget values by config field) with every server
        path it names checked: models, yaml, init image, image prompts, CLIP models.

        Raises:
            InputError: the refusal sentence of the first refused field.
        """
        form = dict(form)
        for name, label in (("vqgan", "VQGAN"), ("vqgan_config", "VQGAN yaml"), ("prior", "prior"),
                            ("upscale_model", "upscaler")):
            form[name] = self.check(form.get(name), label)
        form["init_image"] = self.check_image(form.get("init_image"), "init image") or None
        form["image_prompts"] = self.check_image_prompts(form.get("image_prompts"))
        form["clip_models"] = self.check_clip_models(form.get("clip_models"))
        return form

    def check_sample_form(self, form: dict[str, Any]) -> dict[str, Any]:
        """A copy of the prior form with every server path it names checked: prior, yaml,
        upscaler, condition map and image to complete.

        Raises:
            InputError: the refusal sentence of the first refused field.
        """
        form = dict(form)
        for name, label in (("model", "prior"), ("transformer_config", "project yaml"), ("upscale_model", "upscaler")):
            form[name] = self.check(form.get(name), label)
        for name, label in (("condition", "condition map"), ("complete", "image to complete")):
            form[name] = self.check_image(form.get(name), label) or None
        return form

    def check_clip_models(self, text: str | None, field: str = "CLIP models") -> str:
        """Check the paths of a CLIP models field (lines of ``MODEL [PRETRAINED [WEIGHT]]``):
        a model or pretrained value that looks like a path (a slash, ``~`` or a file suffix)
        must be allowed; architecture names and pretrained tags pass as they are.

        Returns:
            The text, with allowed paths resolved when the policy is closed.

        Raises:
            InputError: :meth:`refusal` of ``field`` for a refused path.
        """
        if self.open or not (text or "").strip():
            return text or ""
        lines = []
        for line in (text or "").splitlines():
            words = line.split()
            for index in range(min(2, len(words))):
                if _looks_like_path(words[index]):
                    words[index] = self.check(words[index], field)
            lines.append(" ".join(words))
        return "\n".join(lines)


def _looks_like_path(word: str) -> bool:
    """Whether a CLIP model or pretrained word is meant as a file rather than a name or tag."""
    if word.startswith(_NAME_PREFIXES):
        return False
    return any(sep in word for sep in ("/", "\\", os.sep)) or word.startswith(("~", ".")) \
        or Path(word).suffix.lower() in (".json", ".pt", ".pth", ".bin", ".safetensors", ".ckpt")
