"""Widget values <-> configs. Every widget is named after a config leaf field (``cutn`` for
``cutouts.cutn``), so a form is a flat mapping of leaf names to values; only a few fields
need a widget-friendly shape (``size`` as width and height, optional numbers as -1 or 0,
``clip_models`` as lines of text)."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from generator.config import GenerationConfig, SampleConfig, clip_model_spec
from generator.config_schema import field_paths, flatten, leaf_hints, nest

# Optional integers shown as a number where this value means "not set".
_UNSET_NUMBERS = {"seed": -1, "class_label": -1, "prior_class": -1, "upscale_tile_pad": -1, "variation_seed": -1}
_UNSET_FLOATS = {"upscale_denoise": -1.0}
# Fields shown as file or image widgets: an empty one is None, not an empty string.
FILE_FIELDS = ("init_image", "condition", "complete", "mask", "audio")
# Optional numbers shown as an empty number widget when not set (None, which a number widget takes).
_EMPTY_NUMBERS = ("variation_strength",)


def clip_models_text(models: list[Mapping[str, Any]]) -> str:
    """``[{"model": "ViT-B-32", "pretrained": "openai", "weight": 1.0}]`` -> ``ViT-B-32 openai 1``."""
    return "\n".join(f"{m['model']} {m['pretrained'] or 'none'} {float(m['weight']):g}" for m in models)


def parse_clip_models(text: str) -> list[dict[str, Any]]:
    """Lines of ``MODEL [PRETRAINED [WEIGHT]]`` -> config entries (``none``: random weights)."""
    return [clip_model_spec(line.split()) for line in text.splitlines() if line.strip()]


def to_form(config: GenerationConfig | SampleConfig) -> dict[str, Any]:
    """Widget values for a config."""
    values = flatten(type(config), config.to_dict())
    size = values.pop("size")
    values["width"], values["height"] = size if size else (0, 0)
    for name, unset in {**_UNSET_NUMBERS, **_UNSET_FLOATS}.items():
        if name in values and values[name] is None:
            values[name] = unset
    if "clip_models" in values:
        values["clip_models"] = clip_models_text(values["clip_models"])
    kept = (*FILE_FIELDS, *_EMPTY_NUMBERS)
    return {name: ("" if value is None and name not in kept else value) for name, value in values.items()}


def from_form(config_cls: type, values: Mapping[str, Any]) -> Any:
    """A config from widget values (unknown names are ignored; missing ones keep defaults)."""
    paths = field_paths(config_cls)
    hints = leaf_hints(config_cls)
    nested = nest(config_cls, {name: _from_widget(name, value, hints[name])
                               for name, value in values.items() if name in paths})
    width, height = int(values.get("width") or 0), int(values.get("height") or 0)
    if "width" in values or "height" in values:
        nested["size"] = [width, height] if width and height else None
    return config_cls.from_dict(nested)


def _from_widget(name: str, value: Any, hint: Any) -> Any:
    if name == "clip_models":
        return parse_clip_models(str(value))
    if name in _UNSET_NUMBERS and value is not None and int(value) == _UNSET_NUMBERS[name]:
        return None
    if name in _UNSET_FLOATS and value is not None and float(value) == _UNSET_FLOATS[name]:
        return None
    optional = type(None) in typing.get_args(hint)
    if value == "" or value is None:
        return None if optional else ""
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if typing.get_origin(base) is tuple and isinstance(value, (list, tuple)):
        return list(value)
    return value



def preset_fields(config_cls: type, settings: Mapping[str, Any]) -> set[str]:
    """The widget names a partial config (a preset's settings) sets: its leaf fields, with
    ``size`` as ``width`` and ``height``."""
    named = set()
    for leaf, path in field_paths(config_cls).items():
        node: Any = settings
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            named |= {"width", "height"} if leaf == "size" else {leaf}
    return named
