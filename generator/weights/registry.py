"""The registry's data: every official file the generator knows, with its facts.

Facts come from the official releases (see ``weights/README.md``). Sizes and hashes are
None where none was published: such files are reported as "unverified" and the hash
observed on download is logged. The lookup and download functions are in
:mod:`generator.weights.store`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

KINDS = ("vqgan", "clip", "upscaler", "transformer", "config")
"""What a registry file is for."""


def _freeze(value: Any) -> Any:
    """Read-only copy of nested mappings/lists (mappings -> MappingProxyType, lists -> tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


@dataclass(frozen=True)
class WeightFile:
    """One downloadable file of the registry.

    Attributes:
        name: Registry name (lower_snake_case), used on the command line and in configs.
        filename: File name inside the weights directory.
        urls: Mirrors tried in order (for ``manual`` entries: the share page to open).
        kind: One of :data:`KINDS`.
        size: Size in bytes, or None when no exact size was published.
        sha256: Lowercase hex digest, or None when no hash was published.
        config: Architecture facts (read-only), e.g. ``VQGANConfig.to_dict()`` fields.
        companions: Registry names fetched along with this file (e.g. its yaml).
        default: Fetched on first use by the default pipeline.
        manual: The URL is a share page, not a direct file: the user downloads it by hand.
        description: One line for listings.
        source_file: For ``manual`` entries, which file to take from the share page.
    """

    name: str
    filename: str
    urls: tuple[str, ...]
    kind: str
    size: int | None = None
    sha256: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict, hash=False)
    companions: tuple[str, ...] = ()
    default: bool = False
    manual: bool = False
    description: str = ""
    source_file: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        object.__setattr__(self, "urls", tuple(self.urls))
        object.__setattr__(self, "companions", tuple(self.companions))
        object.__setattr__(self, "config", _freeze(self.config))


_HEIBOX = "https://heibox.uni-heidelberg.de"
_CKPT = "files/?p=%2Fckpts%2Flast.ckpt&dl=1"
_MEHDIDC = "https://github.com/mehdidc/feed_forward_vqgan_clip/releases/download/0.1"
_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"


def _vqgan_arch(n_embed: int, ch_mult: list[int], attn: list[int], quantizer: str) -> dict:
    """``VQGANConfig(...).to_dict()`` of an official VQGAN, written out (no torch import)."""
    return {
        "embed_dim": 256, "n_embed": n_embed, "double_z": False, "z_channels": 256,
        "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128, "ch_mult": ch_mult,
        "num_res_blocks": 2, "attn_resolutions": attn, "dropout": 0.0,
        "quantizer": quantizer, "norm_num_groups": 32,
    }


def _vqgan(name: str, folder: str, arch: dict, description: str, *, urls: tuple = (),
           **facts: Any) -> WeightFile:
    """A taming VQGAN checkpoint; its architecture is recorded here, so no yaml is needed."""
    return WeightFile(name, f"{name}.ckpt", urls or (f"{_HEIBOX}/d/{folder}/{_CKPT}",), "vqgan",
                      config=arch, description=description, **facts)


def _esrgan(filename: str, release: str, size: int | None, sha256: str | None,
            arch: str, config: dict, description: str) -> WeightFile:
    """A Real-ESRGAN release asset; the registry name is the lower_snake_case file name."""
    name = filename.lower().replace("-", "_")
    return WeightFile(name, f"{filename}.pth", (f"{_ESRGAN}/{release}/{filename}.pth",),
                      "upscaler", size=size, sha256=sha256, config={"architecture": arch, **config},
                      default=name == "realesrgan_x4plus", description=description)


def _transformer(name: str, share_url: str, config: dict, description: str, *,
                 ckpt_in_share: str = "", yaml_in_share: str = "",
                 size: int | None = None) -> list[WeightFile]:
    """A taming transformer (share page only, so fetched by hand) and its project yaml."""
    yaml_name = f"{name}_config"
    return [
        WeightFile(name, f"{name}.ckpt", (share_url,), "transformer", size=size,
                   config=config, companions=(yaml_name,), manual=True,
                   source_file=ckpt_in_share or "the checkpoint (last.ckpt)",
                   description=description),
        WeightFile(yaml_name, f"{name}.yaml", (share_url,), "config", manual=True,
                   source_file=yaml_in_share or "the project yaml (configs/*-project.yaml)",
                   description=f"project yaml of {name}"),
    ]


def _gpt(block_size: int, n_embd: int) -> dict:
    """Published GPT sizes of the released taming transformers (vocab 1024, 24 layers, 16 heads)."""
    return {"vocab_size": 1024, "block_size": block_size, "n_layer": 24, "n_head": 16,
            "n_embd": n_embd}


_RRDB = "RRDBNet"
_SRVGG = "SRVGGNetCompact"

_ENTRIES: list[WeightFile] = [
    _vqgan(
        "vqgan_imagenet_f16_16384", "a7530b09fed84f80a887",
        _vqgan_arch(16384, [1, 1, 2, 2, 4], [16], "vq"),
        "ImageNet VQGAN, 16x downsampling, 16384 codes (the VQGAN+CLIP default)",
        urls=(f"{_HEIBOX}/f/867b05fc8c4841768640/?dl=1",
              f"{_MEHDIDC}/vqgan_imagenet_f16_16384.ckpt"),
        size=980_092_370, default=True,
        sha256="845a68805098cb666420d5db93df53f3a3b6dd443e6dd85c05759c5b998cd663",
    ),
    _vqgan(
        "vqgan_imagenet_f16_1024", "8088892a516d4e3baf92",
        _vqgan_arch(1024, [1, 1, 2, 2, 4], [16], "vq"),
        "ImageNet VQGAN, 16x downsampling, 1024 codes (about 958 MB)",
    ),
    _vqgan(
        "vqgan_gumbel_f8", "2e5662443a6b4307b470",
        _vqgan_arch(8192, [1, 1, 2, 4], [32], "gumbel"),
        "OpenImages Gumbel VQGAN, 8x downsampling, 8192 codes (about 376 MB)",
    ),
    WeightFile(
        "clip_vit_b_32_openai", "ViT-B-32.pt",
        ("https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be"
         "219cc2a73407c4526f58eba950af/ViT-B-32.pt",),
        "clip", size=353_976_522,
        sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        config={"architecture": "ViT-B-32-quickgelu", "format": "openai-jit"}, default=True,
        description="OpenAI CLIP ViT-B/32 (TorchScript, fp16)",
    ),
    WeightFile(
        "clip_vit_b_32_laion2b_e16", "vit_b_32-laion2b_e16-af8dbd0c.pth",
        ("https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/"
         "vit_b_32-laion2b_e16-af8dbd0c.pth",),
        "clip", config={"architecture": "ViT-B-32", "format": "open_clip"},
        description="open_clip ViT-B/32 trained on LAION-2B, 16 epochs (about 605 MB)",
    ),
    _esrgan("RealESRGAN_x4plus", "v0.1.0", 67_040_989,
            "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1", _RRDB,
            {"scale": 4, "num_feat": 64, "num_grow_ch": 32, "num_block": 23},
            "Real-ESRGAN x4 for general photos (the default upscaler)"),
    _esrgan("RealESRGAN_x2plus", "v0.2.1", 67_061_725,
            "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb", _RRDB,
            {"scale": 2}, "Real-ESRGAN x2 for general photos (pixel-unshuffled input)"),
    _esrgan("RealESRNet_x4plus", "v0.1.1", None, None, _RRDB, {"scale": 4, "num_block": 23},
            "Real-ESRNet x4 (no GAN loss: smoother, fewer artefacts; about 64 MB)"),
    _esrgan("RealESRGAN_x4plus_anime_6B", "v0.2.2.4", 17_938_799,
            "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da", _RRDB,
            {"scale": 4, "num_block": 6}, "Real-ESRGAN x4 for anime illustrations (6 blocks)"),
    _esrgan("realesr-animevideov3", "v0.2.5.0", 2_504_012, None, _SRVGG,
            {"scale": 4, "num_feat": 64, "num_conv": 16, "act_type": "prelu"},
            "Real-ESRGAN compact x4 for anime video (no settled hash)"),
    _esrgan("realesr-general-x4v3", "v0.2.5.0", 4_885_111,
            "8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292", _SRVGG,
            {"scale": 4, "num_feat": 64, "num_conv": 32, "act_type": "prelu"},
            "Real-ESRGAN compact x4 for general scenes (small and fast)"),
    _esrgan("realesr-general-wdn-x4v3", "v0.2.5.0", 4_885_111,
            "1641f8c4464b9f097c9fdda5589273713f67cf59f3d909e0bd688f0cee269dca", _SRVGG,
            {"scale": 4, "num_feat": 64, "num_conv": 32, "act_type": "prelu"},
            "denoising partner of realesr_general_x4v3 (blended for denoise strength)"),
    *_transformer("ffhq_transformer", "https://k00.fr/yndvfu95",
                  {"conditioning": "sos", "gpt": _gpt(256, 1664)},
                  "unconditional FFHQ faces prior (FID 9.6)",
                  ckpt_in_share="2021-04-23T18-19-01_ffhq_transformer/checkpoints/last.ckpt",
                  yaml_in_share="2021-04-23T18-19-01_ffhq_transformer/configs/"
                                "2021-04-23T18-19-01-project.yaml"),
    *_transformer("celebahq_transformer", "https://k00.fr/2xkmielf",
                  {"conditioning": "sos", "gpt": _gpt(256, 1664)},
                  "unconditional CelebA-HQ faces prior (FID 10.2)",
                  ckpt_in_share="2021-04-23T18-11-19_celebahq_transformer/checkpoints/last.ckpt",
                  yaml_in_share="2021-04-23T18-11-19_celebahq_transformer/configs/*-project.yaml"),
    *_transformer("cin_transformer", "https://k00.fr/s511rwcv", {"conditioning": "class"},
                  "class-conditional ImageNet prior (1.4B parameters)",
                  ckpt_in_share="2021-04-03T19-39-50_cin_transformer/checkpoints/last.ckpt",
                  yaml_in_share="2021-04-03T19-39-50_cin_transformer/configs/*-project.yaml"),
    *_transformer("faceshq_transformer", "https://k00.fr/qqfl2do8",
                  {"conditioning": "coord", "gpt": _gpt(512, 1024)},
                  "FacesHQ faces prior conditioned on position (coord)",
                  ckpt_in_share="2020-11-13T21-41-45_faceshq_transformer/checkpoints/last.ckpt",
                  yaml_in_share="configs/faceshq_transformer.yaml of the taming-transformers "
                                "repository, if the folder has no project yaml"),
    *_transformer("sflckr_transformer", f"{_HEIBOX}/d/73487ab6e5314cb5adba/",
                  {"conditioning": "segmentation", "gpt": _gpt(512, 1024)},
                  "S-FLCKR landscapes prior conditioned on segmentation maps",
                  ckpt_in_share="checkpoints/last.ckpt",
                  yaml_in_share="configs/2020-11-09T13-31-51-project.yaml",
                  size=4_263_525_412),
    *_transformer("drin_transformer", "https://k00.fr/39jcugc5",
                  {"conditioning": "depth", "gpt": _gpt(512, 1024)},
                  "D-RIN ImageNet prior conditioned on depth maps"),
    *_transformer("coco_transformer", "https://k00.fr/2zz6i2ce",
                  {"conditioning": "segmentation"},
                  "COCO-Stuff prior conditioned on segmentation maps (about 8.4 GB)"),
    *_transformer("ade20k_transformer", "https://k00.fr/ot46cksa",
                  {"conditioning": "segmentation"},
                  "ADE20k prior conditioned on segmentation maps"),
]


REGISTRY: dict[str, WeightFile] = {entry.name: entry for entry in _ENTRIES}
"""Every known file by registry name."""

