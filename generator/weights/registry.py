"""The registry's data: every official file the generator knows, with its facts.

Each entry says where its hash comes from (``sha256_source``): published upstream, part of
the download URL, or a named public manifest. Sizes and hashes are None where none was
found: such a file is checked to be binary, and the hash observed on its first download is
recorded and checked from then on. ``aliases`` are the names other tools save the same file
under (nerdyrodent's ``download_models.sh``), so their folders work as a weights directory.
The lookup and download functions are in :mod:`generator.weights.store`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

KINDS = ("vqgan", "clip", "upscaler", "transformer", "flow", "config")
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
        sha256: Lowercase hex digest, a leading part of it (a prefix is all some sources
            publish), or None when no hash was found.
        sha256_source: Where the hash (and size) come from.
        config: Architecture facts (read-only), e.g. ``VQGANConfig.to_dict()`` fields; empty
            when the architecture is read from the companion yaml or the tensor shapes.
        companions: Registry names fetched along with this file (e.g. its yaml).
        aliases: Other file names the same file is saved under by other tools.
        archive_member: For a zip download, the file inside it to keep (under ``filename``).
        default: Fetched on first use by the default pipeline.
        manual: The URL is a share page, not a direct file: the user downloads it by hand.
        description: One line for listings.
        licence: The weights' licence as far as published (shown in listings).
        source_file: For ``manual`` entries, which file to take from the share page.
    """

    name: str
    filename: str
    urls: tuple[str, ...]
    kind: str
    size: int | None = None
    sha256: str | None = None
    sha256_source: str = ""
    config: Mapping[str, Any] = field(default_factory=dict, hash=False)
    companions: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    archive_member: str = ""
    default: bool = False
    manual: bool = False
    description: str = ""
    licence: str = ""
    source_file: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if (self.sha256 or self.size) and not self.sha256_source:
            raise ValueError(f"{self.name}: say where its size and hash come from (sha256_source)")
        object.__setattr__(self, "urls", tuple(self.urls))
        object.__setattr__(self, "companions", tuple(self.companions))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(self, "config", _freeze(self.config))

    @property
    def binary(self) -> bool:
        """Whether the file is binary (a text or HTML download is then an error page)."""
        return self.kind != "config"


_HEIBOX = "https://heibox.uni-heidelberg.de"
_CKPT = "files/?p=%2Fckpts%2Flast.ckpt&dl=1"
_YAML = "files/?p=%2Fconfigs%2Fmodel.yaml&dl=1"
_MEHDIDC = "https://github.com/mehdidc/feed_forward_vqgan_clip/releases/download/0.1"
_PIXRAY = "https://github.com/pixray/pixray/releases/download/v1.7.1"
_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_TORCHVISION = "https://download.pytorch.org/models"
_TAMING = "MIT code; checkpoint terms not stated"
_LDM = "MIT code; weights terms not stated"
# Where hashes come from (see weights/README.md).
_UPSTREAM = "published upstream"
_IN_URL = "part of the download URL (checked by the upstream loader too)"
_MANIFESTS = "third-party manifests and download scripts that agree (not published upstream)"
_REALESRGAN = "third-party manifests that agree (many Real-ESRGAN packagers)"
_LFS = "the release asset's Git LFS pointer (size); third-party manifests (sha256)"
_PYTTI = "PyTTI-Portable's model list and a PDDP run log (they agree)"
_NOTEBOOK = "the wget log in taming-transformers' own notebook (size); PyTTI-Portable's list (sha256)"


def _vqgan_arch(n_embed: int, ch_mult: list[int], attn: list[int], quantizer: str) -> dict:
    """``VQGANConfig(...).to_dict()`` of an official VQGAN, written out (no torch import)."""
    return {
        "embed_dim": 256, "n_embed": n_embed, "double_z": False, "z_channels": 256,
        "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128, "ch_mult": ch_mult,
        "num_res_blocks": 2, "attn_resolutions": attn, "dropout": 0.0,
        "quantizer": quantizer, "norm_num_groups": 32,
    }


_F16_16384 = _vqgan_arch(16384, [1, 1, 2, 2, 4], [16], "vq")
_F16_1024 = _vqgan_arch(1024, [1, 1, 2, 2, 4], [16], "vq")


def _with_yaml(name: str, filename: str, urls: tuple[str, ...], arch: dict, description: str, *,
               yaml_urls: tuple[str, ...], yaml_aliases: tuple[str, ...] = (), licence: str = _TAMING,
               yaml_facts: dict | None = None, **facts: Any) -> list[WeightFile]:
    """A VQGAN checkpoint and its upstream yaml (a companion, fetched with it)."""
    stem = filename.rsplit(".", 1)[0]
    return [
        WeightFile(name, filename, urls, "vqgan", config=arch, description=description, licence=licence,
                   companions=(f"{name}_config",), **facts),
        WeightFile(f"{name}_config", f"{stem}.yaml", yaml_urls, "config", aliases=yaml_aliases,
                   description=f"the upstream yaml of {name}", licence=licence, **(yaml_facts or {})),
    ]


def _esrgan(filename: str, release: str, size: int | None, sha256: str | None, arch: str, config: dict,
            description: str, *, source: str = _REALESRGAN, companions: tuple[str, ...] = ()) -> WeightFile:
    """A Real-ESRGAN release asset; the registry name is the lower_snake_case file name."""
    name = filename.lower().replace("-", "_")
    return WeightFile(name, f"{filename}.pth", (f"{_ESRGAN}/{release}/{filename}.pth",),
                      "upscaler", size=size, sha256=sha256, sha256_source=source if sha256 or size else "",
                      config={"architecture": arch, **config}, companions=companions,
                      default=name == "realesrgan_x4plus", description=description, licence="BSD-3-Clause")


def _transformer(name: str, share_url: str, config: dict, description: str, *,
                 ckpt_urls: tuple[str, ...] = (), yaml_urls: tuple[str, ...] = (),
                 ckpt_in_share: str = "", yaml_in_share: str = "", aliases: tuple[str, str] = ("", ""),
                 **facts: Any) -> list[WeightFile]:
    """A taming transformer and its project yaml: fetched automatically where direct links
    exist, else by hand from the share page. Its first stage also serves as ``--vqgan NAME``."""
    yaml_name = f"{name}_config"
    ckpt_alias, yaml_alias = aliases
    return [
        WeightFile(name, f"{name}.ckpt", ckpt_urls or (share_url,), "transformer",
                   config=config, companions=(yaml_name,), manual=not ckpt_urls,
                   aliases=(ckpt_alias,) if ckpt_alias else (),
                   source_file=ckpt_in_share or "the checkpoint (last.ckpt)",
                   description=description, licence=_TAMING, **facts),
        WeightFile(yaml_name, f"{name}.yaml", yaml_urls or (share_url,), "config", manual=not yaml_urls,
                   aliases=(yaml_alias,) if yaml_alias else (),
                   source_file=yaml_in_share or "the project yaml (configs/*-project.yaml)",
                   description=f"project yaml of {name}", licence=_TAMING),
    ]


def _gpt(block_size: int, n_embd: int) -> dict:
    """Published GPT sizes of the released taming transformers (vocab 1024, 24 layers, 16 heads)."""
    return {"vocab_size": 1024, "block_size": block_size, "n_layer": 24, "n_head": 16,
            "n_embd": n_embd}


_RRDB = "RRDBNet"
_SRVGG = "SRVGGNetCompact"

_ENTRIES: list[WeightFile] = [
    *_with_yaml(
        "vqgan_imagenet_f16_16384", "vqgan_imagenet_f16_16384.ckpt",
        (f"{_HEIBOX}/f/867b05fc8c4841768640/?dl=1", f"{_MEHDIDC}/vqgan_imagenet_f16_16384.ckpt",
         f"{_HEIBOX}/d/a7530b09fed84f80a887/{_CKPT}"),
        _F16_16384, "ImageNet VQGAN, 16x downsampling, 16384 codes (the VQGAN+CLIP default)",
        yaml_urls=(f"{_HEIBOX}/f/274fb24ed38341bfa753/?dl=1", f"{_MEHDIDC}/vqgan_imagenet_f16_16384.yaml",
                   f"{_HEIBOX}/d/a7530b09fed84f80a887/{_YAML}"),
        yaml_facts={"size": 692, "sha256": "00e2c6189926f1d89ecfef73e9598db77981c1982f0555fbade963ffd16143c7",
                    "sha256_source": _MANIFESTS},
        size=980_092_370, sha256="845a68805098cb666420d5db93df53f3a3b6dd443e6dd85c05759c5b998cd663",
        sha256_source=_MANIFESTS, default=True,
    ),
    *_with_yaml(
        "vqgan_imagenet_f16_1024", "vqgan_imagenet_f16_1024.ckpt",
        (f"{_HEIBOX}/f/140747ba53464f49b476/?dl=1", f"{_HEIBOX}/d/8088892a516d4e3baf92/{_CKPT}"),
        _F16_1024, "ImageNet VQGAN, 16x downsampling, 1024 codes (about 958 MB; no published hash)",
        yaml_urls=(f"{_HEIBOX}/f/6ecf2af6c658432c8298/?dl=1", f"{_HEIBOX}/d/8088892a516d4e3baf92/{_YAML}"),
    ),
    *_with_yaml(
        "vqgan_gumbel_f8", "vqgan_gumbel_f8.ckpt",
        (f"{_HEIBOX}/f/34a747d5765840b5a99d/?dl=1", f"{_HEIBOX}/d/2e5662443a6b4307b470/{_CKPT}"),
        _vqgan_arch(8192, [1, 1, 2, 4], [32], "gumbel"),
        "OpenImages Gumbel VQGAN, 8x downsampling, 8192 codes",
        yaml_urls=(f"{_HEIBOX}/d/2e5662443a6b4307b470/{_YAML}",), yaml_aliases=("vqgan_gumbel_f8_8192.yaml",),
        size=376_581_823, sha256="5cd6c74810ab97e00e942c25403f73afc081e8b19987b31ec0d9ff5b68e7ab14",
        sha256_source=_PYTTI, aliases=("vqgan_gumbel_f8_8192.ckpt",),
    ),
    *_with_yaml(
        "wikiart_16384", "wikiart_16384.ckpt", (f"{_PIXRAY}/vqgan_wikiart_16384.ckpt",), _F16_16384,
        "VQGAN trained on WikiArt, 16384 codes (EleutherAI; the original host is gone, pixray mirrors it)",
        yaml_urls=(f"{_PIXRAY}/vqgan_wikiart_16384.yaml",), licence="not stated",
        size=1_005_327_541, sha256="bd08bb46", sha256_source="PyTTI-Portable's list (an 8-hex prefix only)",
    ),
    *_with_yaml(
        "wikiart_1024", "wikiart_1024.ckpt",
        (f"{_PIXRAY}/vqgan_wikiart_1024.ckpt",
         "https://github.com/Eleiber/VQGAN-Mirrors/releases/download/0.0.1/wikiart_1024.ckpt"),
        _F16_1024, "VQGAN trained on WikiArt, 1024 codes (pixray and Eleiber mirrors; no published hash)",
        yaml_urls=(f"{_PIXRAY}/vqgan_wikiart_1024.yaml",
                   "https://github.com/Eleiber/VQGAN-Mirrors/releases/download/0.0.1/wikiart_1024.yaml"),
        licence="not stated",
    ),
    *_with_yaml(
        "ldm_vq_f8", "ldm_vq_f8.ckpt", ("https://ommer-lab.com/files/latent-diffusion/vq-f8.zip",), {},
        "latent-diffusion's OpenImages VQGAN, 8x downsampling, 16384 codes of width 4 (a zip; model.ckpt kept)",
        yaml_urls=("https://raw.githubusercontent.com/CompVis/latent-diffusion/main/models/first_stage_models/"
                   "vq-f8/config.yaml",), archive_member="model.ckpt", licence=_LDM,
    ),
    *_with_yaml(
        "ldm_vq_f8_n256", "ldm_vq_f8_n256.ckpt", ("https://ommer-lab.com/files/latent-diffusion/vq-f8-n256.zip",),
        {}, "latent-diffusion's OpenImages VQGAN, 8x downsampling, 256 codes of width 4 (a zip; model.ckpt kept)",
        yaml_urls=("https://raw.githubusercontent.com/CompVis/latent-diffusion/main/models/first_stage_models/"
                   "vq-f8-n256/config.yaml",), archive_member="model.ckpt", licence=_LDM,
    ),
    WeightFile(
        "clip_vit_b_32_openai", "ViT-B-32.pt",
        ("https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be"
         "219cc2a73407c4526f58eba950af/ViT-B-32.pt",),
        "clip", size=353_976_522,
        sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", sha256_source=_IN_URL,
        config={"architecture": "ViT-B-32-quickgelu", "format": "openai-jit"}, default=True,
        description="OpenAI CLIP ViT-B/32 (TorchScript, fp16)", licence="MIT",
    ),
    WeightFile(
        "clip_vit_b_32_laion2b_e16", "vit_b_32-laion2b_e16-af8dbd0c.pth",
        ("https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/"
         "vit_b_32-laion2b_e16-af8dbd0c.pth",),
        "clip", sha256="af8dbd0c4bf1654db018a2a70fd839c3a6e79d2fdac33303f06d0d8aae16a65c",
        sha256_source="Disco Diffusion's model list; its first 8 hex digits are in the URL",
        config={"architecture": "ViT-B-32", "format": "open_clip"},
        description="open_clip ViT-B/32 trained on LAION-2B, 16 epochs (about 605 MB)", licence="MIT",
    ),
    WeightFile("raft_small", "raft_small_C_T_V2-01064c6d.pth", (f"{_TORCHVISION}/raft_small_C_T_V2-01064c6d.pth",),
               "flow", sha256="01064c6d", sha256_source=_IN_URL, config={"architecture": "raft_small"},
               description="RAFT small (torchvision, FlyingChairs+Things): optical flow for --flow raft",
               licence="BSD-3-Clause"),
    WeightFile("raft_large", "raft_large_C_T_SKHT_V2-ff5fadd5.pth",
               (f"{_TORCHVISION}/raft_large_C_T_SKHT_V2-ff5fadd5.pth",), "flow", sha256="ff5fadd5",
               sha256_source=_IN_URL, config={"architecture": "raft_large"},
               description="RAFT large (torchvision, Chairs+Things+Sintel+Kitti+HD1K): sharper flow, slower",
               licence="BSD-3-Clause"),
    _esrgan("RealESRGAN_x4plus", "v0.1.0", 67_040_989,
            "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1", _RRDB,
            {"scale": 4, "num_feat": 64, "num_grow_ch": 32, "num_block": 23},
            "Real-ESRGAN x4 for general photos (the default upscaler)", source=_LFS),
    _esrgan("RealESRGAN_x2plus", "v0.2.1", 67_061_725,
            "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb", _RRDB,
            {"scale": 2}, "Real-ESRGAN x2 for general photos (pixel-unshuffled input)", source=_LFS),
    _esrgan("RealESRNet_x4plus", "v0.1.1", 67_040_989,
            "a820b9bde89a874d7599d545567308ce6c128fc8754a53208eda016d40aa81df", _RRDB,
            {"scale": 4, "num_block": 23}, "Real-ESRNet x4 (no GAN loss: smoother, fewer artefacts)",
            source="the AUR python-realesrgan PKGBUILD and several package registries"),
    _esrgan("RealESRGAN_x4plus_anime_6B", "v0.2.2.4", 17_938_799,
            "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da", _RRDB,
            {"scale": 4, "num_block": 6}, "Real-ESRGAN x4 for anime illustrations (6 blocks)"),
    _esrgan("realesr-animevideov3", "v0.2.5.0", 2_504_012,
            "b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d", _SRVGG,
            {"scale": 4, "num_feat": 64, "num_conv": 16, "act_type": "prelu"},
            "Real-ESRGAN compact x4 for anime video",
            source="the AUR python-realesrgan 0.3.0 PKGBUILD and five more projects (one outlier disagrees)"),
    _esrgan("realesr-general-x4v3", "v0.2.5.0", 4_885_111,
            "8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292", _SRVGG,
            {"scale": 4, "num_feat": 64, "num_conv": 32, "act_type": "prelu"},
            "Real-ESRGAN compact x4 for general scenes (small and fast; with its denoise partner)",
            companions=("realesr_general_wdn_x4v3",)),
    _esrgan("realesr-general-wdn-x4v3", "v0.2.5.0", 4_885_111,
            "1641f8c4464b9f097c9fdda5589273713f67cf59f3d909e0bd688f0cee269dca", _SRVGG,
            {"scale": 4, "num_feat": 64, "num_conv": 32, "act_type": "prelu"},
            "denoising partner of realesr_general_x4v3 (blended for denoise strength)"),
    *_transformer("ffhq_transformer", "https://k00.fr/yndvfu95",
                  {"conditioning": "sos", "gpt": _gpt(256, 1664)},
                  "unconditional FFHQ faces prior (FID 9.6)",
                  ckpt_in_share="2021-04-23T18-19-01_ffhq_transformer/checkpoints/last.ckpt",
                  yaml_in_share="2021-04-23T18-19-01_ffhq_transformer/configs/2021-04-23T18-19-01-project.yaml"),
    *_transformer("celebahq_transformer", "https://k00.fr/2xkmielf",
                  {"conditioning": "sos", "gpt": _gpt(256, 1664)},
                  "unconditional CelebA-HQ faces prior (FID 10.2)",
                  ckpt_in_share="2021-04-23T18-11-19_celebahq_transformer/checkpoints/last.ckpt",
                  yaml_in_share="2021-04-23T18-11-19_celebahq_transformer/configs/2021-04-23T18-11-19-project.yaml"),
    *_transformer("cin_transformer", "https://k00.fr/s511rwcv", {"conditioning": "class"},
                  "class-conditional ImageNet prior (1.4B parameters)",
                  ckpt_in_share="2021-04-03T19-39-50_cin_transformer/checkpoints/last.ckpt",
                  yaml_in_share="2021-04-03T19-39-50_cin_transformer/configs/2021-04-03T19-39-50-project.yaml"),
    *_transformer("faceshq_transformer", "https://k00.fr/qqfl2do8",
                  {"conditioning": "coord", "gpt": _gpt(512, 1024)},
                  "FacesHQ faces prior conditioned on position (coord); its first stage is nerdyrodent's faceshq",
                  yaml_urls=("https://raw.githubusercontent.com/CompVis/taming-transformers/master/configs/"
                             "faceshq_transformer.yaml",),
                  ckpt_in_share="2020-11-13T21-41-45_faceshq_transformer/checkpoints/last.ckpt",
                  aliases=("faceshq.ckpt", "faceshq.yaml")),
    *_transformer("sflckr_transformer", f"{_HEIBOX}/d/73487ab6e5314cb5adba/",
                  {"conditioning": "segmentation", "gpt": _gpt(512, 1024)},
                  "S-FLCKR landscapes prior conditioned on segmentation maps; its first stage is nerdyrodent's sflckr",
                  ckpt_urls=(f"{_HEIBOX}/d/73487ab6e5314cb5adba/files/?p=%2Fcheckpoints%2Flast.ckpt&dl=1",),
                  yaml_urls=(f"{_HEIBOX}/d/73487ab6e5314cb5adba/files/?p=%2Fconfigs%2F2020-11-09T13-31-51-project"
                             ".yaml&dl=1",),
                  aliases=("sflckr.ckpt", "sflckr.yaml"), size=4_263_525_412,
                  sha256="8a8adea3da8dab412675772831370dd948e0aa97bb11a9488a2f328b58dbc929", sha256_source=_NOTEBOOK),
    *_transformer("drin_transformer", "https://k00.fr/39jcugc5",
                  {"conditioning": "depth", "gpt": _gpt(512, 1024)},
                  "D-RIN ImageNet prior conditioned on depth maps",
                  ckpt_in_share="2020-11-20T12-54-32_drin_transformer/checkpoints/last.ckpt"),
    *_transformer("coco_transformer", "https://k00.fr/2zz6i2ce",
                  {"conditioning": "segmentation"},
                  "COCO-Stuff prior conditioned on segmentation maps (about 8.4 GB); its first stage is "
                  "nerdyrodent's coco",
                  ckpt_urls=("https://dl.nmkd.de/ai/clip/coco/coco.ckpt",),
                  yaml_urls=("https://dl.nmkd.de/ai/clip/coco/coco.yaml",),
                  aliases=("coco.ckpt", "coco.yaml")),
    *_transformer("ade20k_transformer", "https://k00.fr/ot46cksa",
                  {"conditioning": "segmentation"},
                  "ADE20k prior conditioned on segmentation maps",
                  ckpt_in_share="2020-11-20T21-45-44_ade20k_transformer/checkpoints/last.ckpt"),
]


REGISTRY: dict[str, WeightFile] = {entry.name: entry for entry in _ENTRIES}
"""Every known file by registry name."""
