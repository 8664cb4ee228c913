"""The weights registry, ensure/resolve and ``python -m generator download``.

Registry-backed tests put a temporary entry into ``store.REGISTRY`` that points at the
local server of tests/weights/test_download.py, and use ``tmp_path`` as the weights directory.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import pytest

from generator.cli.main import main
from generator.config import ModelsConfig, UpscaleConfig
from generator.errors import WeightsError
from generator.weights import digests, download, store
from generator.weights.store import WeightFile
from tests.http_server import FileServer

DEFAULT_VQGAN = ModelsConfig().vqgan
DEFAULT_CLIP = "clip_vit_b_32_openai"  # the registry file of ViT-B-32/openai, the default CLIP
DEFAULT_UPSCALER = UpscaleConfig().upscale_model
HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(store.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(store.WEIGHTS_DIR_ENV, raising=False)


def _entry(server: FileServer, name: str = "test_vqgan", *, kind: str = "vqgan",
           sha: bool = True, size: bool = True, **extra: object) -> WeightFile:
    """A registry entry for /file.bin of the local server, installed by the caller."""
    body = server.files["/file.bin"]
    return WeightFile(
        name, f"{name}.ckpt", (server.url("/file.bin"),), kind,
        size=len(body) if size else None,
        sha256=hashlib.sha256(body).hexdigest() if sha else None,
        sha256_source="the test" if sha or size else "", **extra,
    )


@pytest.fixture
def entry(file_server: FileServer, monkeypatch: pytest.MonkeyPatch) -> WeightFile:
    item = _entry(file_server)
    monkeypatch.setitem(store.REGISTRY, item.name, item)
    return item


def _quiet(done: int, total: int | None) -> None:
    pass


# --- the registry itself ------------------------------------------------------------------


def test_every_registry_entry_is_well_formed():
    filenames = [entry.filename for entry in store.REGISTRY.values()]
    assert len(filenames) == len(set(filenames))
    for name, entry in store.REGISTRY.items():
        assert entry.name == name and re.fullmatch(r"[a-z0-9_]+", name), name
        assert entry.kind in store.KINDS, name
        assert entry.urls and all(url.startswith("https://") for url in entry.urls), name
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{8,64}", entry.sha256), name
        assert bool(entry.sha256_source) == bool(entry.sha256 or entry.size), name
        assert all(alias != entry.filename and "/" not in alias for alias in entry.aliases), name
        assert entry.size is None or entry.size > 0, name
        assert all(c in store.REGISTRY and c != name for c in entry.companions), name
        assert entry.description, name
        assert "/" not in entry.filename and entry.filename.strip() == entry.filename, name
        if entry.manual:
            assert entry.kind in ("transformer", "config") and not entry.default, name
        with pytest.raises(TypeError):
            entry.config["architecture"] = "changed"  # type: ignore[index]
    defaults = {entry.kind: name for name, entry in store.REGISTRY.items() if entry.default}
    assert defaults == {"vqgan": DEFAULT_VQGAN, "clip": DEFAULT_CLIP, "upscaler": DEFAULT_UPSCALER}
    for name in defaults.values():
        entry = store.REGISTRY[name]
        assert not entry.manual and entry.sha256 is not None and entry.size is not None


def test_vqgan_configs_build_the_model_config():
    from models.vqgan import VQGANConfig

    factors = {}
    for name in [n for n, e in store.REGISTRY.items() if e.kind == "vqgan" and e.config]:
        config = store.REGISTRY[name].config
        plain = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
        built = VQGANConfig(**plain)
        assert built.to_dict() == plain, name
        factors[name] = (built.downsample_factor, built.n_embed, built.quantizer)
    assert factors == {
        "vqgan_imagenet_f16_16384": (16, 16384, "vq"),
        "vqgan_imagenet_f16_1024": (16, 1024, "vq"),
        "vqgan_gumbel_f8": (8, 8192, "gumbel"),
        "wikiart_16384": (16, 16384, "vq"),
        "wikiart_1024": (16, 1024, "vq"),
    }


def test_registry_facts_of_the_defaults():
    vqgan = store.get("vqgan_imagenet_f16_16384")
    assert vqgan.urls[0] == "https://heibox.uni-heidelberg.de/f/867b05fc8c4841768640/?dl=1"
    assert vqgan.urls[1].startswith("https://github.com/mehdidc/")
    assert vqgan.size == 980092370 and vqgan.sha256.endswith("cd663")
    clip = store.get("clip_vit_b_32_openai")
    assert clip.sha256 in clip.urls[0] and clip.config["architecture"] == "ViT-B-32-quickgelu"
    assert store.get("realesr_animevideov3").sha256.startswith("b8a83768")
    assert store.get("realesrgan_x4plus").config["architecture"] == "RRDBNet"
    assert store.get("ffhq_transformer").manual


def test_weights_dir_and_offline_mode_precedence(tmp_path, monkeypatch):
    repo_default = Path(store.__file__).resolve().parents[2] / "weights"
    assert store.weights_dir() == repo_default
    monkeypatch.setenv(store.WEIGHTS_DIR_ENV, str(tmp_path / "env"))
    assert store.weights_dir() == tmp_path / "env"
    assert store.weights_dir(tmp_path / "flag") == tmp_path / "flag"
    assert store.offline_mode() is False
    for value, expected in (("1", True), ("TRUE", True), ("on", True), ("0", False), ("", False)):
        monkeypatch.setenv(store.OFFLINE_ENV, value)
        assert store.offline_mode() is expected
    assert store.offline_mode(False) is False and store.offline_mode(True) is True


def test_get_unknown_name_suggests_close_names():
    with pytest.raises(WeightsError) as info:
        store.get("vqgan_imagenet_f16_16385")
    message = str(info.value)
    assert "vqgan_imagenet_f16_16384" in message and "download --list" in message
    assert "\n" not in message


# --- status and ensure ----------------------------------------------------------------------


def test_status_reports_each_state(entry, file_server, tmp_path, monkeypatch):
    body = file_server.files["/file.bin"]
    path = tmp_path / entry.filename
    assert path == tmp_path / entry.filename
    assert store.status(entry.name, tmp_path) == "missing"
    download.part_path(path).write_bytes(body[:10])
    assert store.status(entry.name, tmp_path) == "partial"
    path.write_bytes(body)
    assert store.status(entry.name, tmp_path) == "verified"
    path.write_bytes(body[:-1] + bytes([body[-1] ^ 1]))  # same size, other hash
    assert store.status(entry.name, tmp_path) == "corrupt"
    path.write_bytes(body[:100])
    assert store.status(entry.name, tmp_path) == "corrupt"
    monkeypatch.setitem(store.REGISTRY, entry.name, _entry(file_server, sha=False, size=False))
    assert store.status(entry.name, tmp_path) == "unverified"


def test_ensure_downloads_once_then_uses_the_verified_file(entry, file_server, tmp_path,
                                                           monkeypatch):
    path = store.ensure(entry.name, weights_dir=tmp_path, offline=False, progress=_quiet)
    assert path == tmp_path / entry.filename
    assert path.read_bytes() == file_server.files["/file.bin"]
    assert len(file_server.requests) == 1
    hashed: list[object] = []
    monkeypatch.setattr(digests, "sha256_of", lambda p: hashed.append(p) or "0" * 64)
    assert store.status(entry.name, tmp_path) == "verified"  # from the download's sidecar
    assert hashed == []
    assert store.ensure(entry.name, weights_dir=tmp_path, offline=False, progress=_quiet) == path
    assert len(file_server.requests) == 1


def test_ensure_offline_refuses_without_any_request(entry, file_server, tmp_path, monkeypatch):
    with pytest.raises(WeightsError) as info:
        store.ensure(entry.name, weights_dir=tmp_path, offline=True)
    message = str(info.value)
    for part in (entry.name, entry.filename, "300.0 kB", str(tmp_path),
                 f"python -m generator download {entry.name}", "local file path"):
        assert part in message
    monkeypatch.setenv(store.OFFLINE_ENV, "1")
    with pytest.raises(WeightsError, match=f"python -m generator download {entry.name}"):
        store.ensure(entry.name, weights_dir=tmp_path)
    assert file_server.requests == []
    assert not (tmp_path / entry.filename).exists()


def test_a_file_that_fails_its_check_is_moved_aside_not_deleted_and_fetched_again(entry, file_server, tmp_path,
                                                                                  caplog):
    path = tmp_path / entry.filename
    path.write_bytes(b"the user's own model")
    with caplog.at_level(logging.WARNING, logger="generator.weights.store"):
        store.ensure(entry.name, weights_dir=tmp_path, offline=False, progress=_quiet)
    assert path.read_bytes() == file_server.files["/file.bin"]
    aside = tmp_path / f"{entry.filename}.rejected"
    assert aside.read_bytes() == b"the user's own model"
    assert any("renamed" in r.getMessage() and aside.name in r.getMessage() for r in caplog.records)
    assert len(file_server.requests) == 1


def test_a_file_that_fails_its_check_offline_is_moved_aside_and_the_error_says_so(entry, file_server, tmp_path):
    path = tmp_path / entry.filename
    path.write_bytes(b"not the model")
    with pytest.raises(WeightsError, match="not the expected.*renamed .*rejected.*python -m generator download"):
        store.ensure(entry.name, weights_dir=tmp_path, offline=True)
    assert not path.exists() and (tmp_path / f"{entry.filename}.rejected").exists() and file_server.requests == []


def test_an_unhashed_download_records_its_hash_and_later_runs_check_it(file_server, tmp_path, monkeypatch,
                                                                          caplog):
    item = _entry(file_server, "test_unhashed", sha=False, size=False)
    monkeypatch.setitem(store.REGISTRY, item.name, item)
    path = tmp_path / item.filename
    path.write_bytes(b"placed by hand")  # without a published hash, a present file is taken as it is
    assert store.status(item.name, tmp_path) == "unverified"
    path.unlink()
    with caplog.at_level(logging.INFO, logger="generator.weights.store"):
        store.ensure(item.name, weights_dir=tmp_path, offline=False, progress=_quiet)
    digest = hashlib.sha256(file_server.files["/file.bin"]).hexdigest()
    assert any("no published hash" in r.getMessage() and digest in r.getMessage() for r in caplog.records)
    assert digests.observed_hash(tmp_path, item.name)["sha256"] == digest
    assert store.status(item.name, tmp_path) == "verified"
    path.write_bytes(file_server.files["/file.bin"][:-1] + b"!")  # same size, changed later
    assert store.status(item.name, tmp_path) == "corrupt"
    with pytest.raises(WeightsError, match=f"its sha256 is [0-9a-f]{{64}} but was {digest}"):
        store.ensure(item.name, weights_dir=tmp_path, offline=True)


@pytest.mark.parametrize(("content_type", "body"), [
    ("text/html; charset=utf-8", b"<!DOCTYPE html><html><body>Sign in to download</body></html>"),
    ("application/octet-stream", b"<html><body>This link has expired.</body></html>\n"),
    ("application/octet-stream", b'{"error": "rate limited"}'),
])
def test_a_web_page_instead_of_a_binary_file_is_refused_and_the_next_mirror_used(
        file_server, tmp_path, monkeypatch, content_type, body):
    file_server.files["/page"] = body
    file_server.content_types["/page"] = content_type
    item = WeightFile("test_paged", "test_paged.ckpt", (file_server.url("/page"), file_server.url("/file.bin")),
                      "vqgan")
    monkeypatch.setitem(store.REGISTRY, item.name, item)
    path = store.ensure(item.name, weights_dir=tmp_path, offline=False, progress=_quiet)
    assert path.read_bytes() == file_server.files["/file.bin"]
    only_page = WeightFile("test_page_only", "test_page_only.ckpt", (file_server.url("/page"),), "vqgan")
    monkeypatch.setitem(store.REGISTRY, only_page.name, only_page)
    with pytest.raises(WeightsError, match="instead of the file") as info:
        store.ensure(only_page.name, weights_dir=tmp_path, offline=False, progress=_quiet)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "test_page_only.ckpt").exists() and not download.part_path(tmp_path / "x").exists()
    yaml_entry = WeightFile("test_text_yaml", "test_text.yaml", (file_server.url("/page"),), "config")
    monkeypatch.setitem(store.REGISTRY, yaml_entry.name, yaml_entry)  # text is what a yaml is
    assert store.ensure(yaml_entry.name, weights_dir=tmp_path, offline=False, progress=_quiet).read_bytes() == body


def test_files_saved_under_another_tools_names_are_found_and_verified(file_server, tmp_path, monkeypatch):
    """nerdyrodent's download_models.sh saves vqgan_gumbel_f8 as vqgan_gumbel_f8_8192.ckpt
    and the S-FLCKR transformer as sflckr.ckpt: --weights-dir checkpoints finds them."""
    item = _entry(file_server, "test_gumbel", aliases=("nerdy_gumbel_8192.ckpt",))
    monkeypatch.setitem(store.REGISTRY, item.name, item)
    placed = tmp_path / "nerdy_gumbel_8192.ckpt"
    placed.write_bytes(file_server.files["/file.bin"])
    assert store.status(item.name, tmp_path) == "verified"
    assert store.ensure(item.name, weights_dir=tmp_path, offline=True) == placed
    assert store.resolve("nerdy_gumbel_8192", kind="vqgan", weights_dir=tmp_path, offline=True) == placed
    assert file_server.requests == []
    assert store.get("vqgan_gumbel_f8_8192").name == "vqgan_gumbel_f8"
    assert store.get("sflckr").name == "sflckr_transformer"
    assert "sflckr.yaml" in store.get("sflckr_transformer_config").aliases


def test_a_transformer_serves_as_a_vqgan_by_its_first_stage(file_server, tmp_path, monkeypatch):
    item = _entry(file_server, "test_prior", kind="transformer")
    monkeypatch.setitem(store.REGISTRY, item.name, item)
    assert store.resolve(item.name, kind="vqgan", weights_dir=tmp_path, offline=False, progress=_quiet).is_file()
    assert "sflckr_transformer" in store.names_of_kind("vqgan")
    assert "sflckr_transformer" not in store.names_of_kind("clip")
    with pytest.raises(WeightsError, match="transformer weights, not clip weights"):
        store.resolve(item.name, kind="clip", weights_dir=tmp_path)


def test_a_zip_download_keeps_only_its_checkpoint(file_server, tmp_path, monkeypatch):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("vq-f8/model.ckpt", file_server.files["/file.bin"])
        archive.writestr("vq-f8/README.txt", "not needed")
    file_server.files["/vq-f8.zip"] = buffer.getvalue()
    item = WeightFile("test_ldm", "test_ldm.ckpt", (file_server.url("/vq-f8.zip"),), "vqgan",
                      archive_member="model.ckpt")
    monkeypatch.setitem(store.REGISTRY, item.name, item)
    path = store.ensure(item.name, weights_dir=tmp_path, offline=False, progress=_quiet)
    assert path.read_bytes() == file_server.files["/file.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["observed-sha256.json", "test_ldm.ckpt",
                                                          "test_ldm.ckpt.sha256"]
    assert store.status(item.name, tmp_path) == "verified"


def test_the_general_upscaler_brings_its_denoise_partner():
    assert store.get("realesr_general_x4v3").companions == ("realesr_general_wdn_x4v3",)


def test_every_automatic_file_with_public_facts_has_a_size_a_hash_and_their_source():
    with_facts = ("vqgan_gumbel_f8", "realesrnet_x4plus", "realesr_animevideov3", "clip_vit_b_32_laion2b_e16",
                  "sflckr_transformer", "wikiart_16384", "vqgan_imagenet_f16_16384_config")
    for name in with_facts:
        entry = store.get(name)
        assert entry.sha256 and entry.sha256_source and not entry.manual, name
    assert store.get("vqgan_imagenet_f16_1024").sha256 is None


def test_companions_are_fetched_along(file_server, tmp_path, monkeypatch):
    file_server.files["/model.yaml"] = b"model: {}\n"
    companion = WeightFile("test_yaml", "test.yaml", (file_server.url("/model.yaml"),), "config")
    main_entry = _entry(file_server, companions=("test_yaml",))
    monkeypatch.setitem(store.REGISTRY, companion.name, companion)
    monkeypatch.setitem(store.REGISTRY, main_entry.name, main_entry)
    store.ensure(main_entry.name, weights_dir=tmp_path, offline=False, progress=_quiet)
    assert (tmp_path / "test.yaml").read_bytes() == b"model: {}\n"
    assert sorted(path for path, _ in file_server.requests) == ["/file.bin", "/model.yaml"]


def test_manual_entry_is_never_fetched(file_server, tmp_path, monkeypatch):
    item = _entry(file_server, "test_manual", kind="transformer", manual=True,
                  source_file="checkpoints/last.ckpt")
    monkeypatch.setitem(store.REGISTRY, item.name, item)
    with pytest.raises(WeightsError) as info:
        store.ensure(item.name, weights_dir=tmp_path, offline=False)
    message = str(info.value)
    assert "by hand" in message and item.urls[0] in message
    assert str(tmp_path / item.filename) in message and "checkpoints/last.ckpt" in message
    assert file_server.requests == []
    placed = tmp_path / item.filename
    placed.write_bytes(b"a different file")
    with pytest.raises(WeightsError, match="not the expected test_manual file"):
        store.ensure(item.name, weights_dir=tmp_path)
    assert placed.exists()  # a hand-fetched file is never deleted
    placed.write_bytes(file_server.files["/file.bin"])
    assert store.ensure(item.name, weights_dir=tmp_path) == placed


# --- resolve --------------------------------------------------------------------------------


def test_resolve_existing_local_file_uses_no_network(tmp_path, monkeypatch):
    custom = tmp_path / "my_vqgan.ckpt"
    custom.write_bytes(b"weights")
    monkeypatch.setattr(download, "download_file", lambda *a, **k: pytest.fail("network used"))
    assert store.resolve(str(custom), kind="vqgan", offline=True) == custom
    assert store.resolve(custom, kind="clip") == custom


def test_resolve_missing_path_wrong_kind_and_unknown_name(tmp_path):
    with pytest.raises(WeightsError, match=r"^file .*nothere\.ckpt does not exist"):
        store.resolve(str(tmp_path / "nothere.ckpt"), kind="vqgan")
    with pytest.raises(WeightsError, match="does not exist"):
        store.resolve("model.ckpt", kind="vqgan")
    with pytest.raises(WeightsError) as info:
        store.resolve(DEFAULT_CLIP, kind="vqgan", weights_dir=tmp_path)
    assert "clip weights, not vqgan" in str(info.value)
    assert DEFAULT_VQGAN in str(info.value)
    with pytest.raises(WeightsError) as info:
        store.resolve("no_such_model", kind="upscaler")
    message = str(info.value)
    assert "no_such_model" in message and DEFAULT_UPSCALER in message
    assert DEFAULT_VQGAN not in message


def test_resolve_registry_name_ensures_it(entry, file_server, tmp_path):
    path = store.resolve(entry.name, kind="vqgan", weights_dir=tmp_path, offline=False,
                           progress=_quiet)
    assert path == tmp_path / entry.filename and path.exists()
    with pytest.raises(WeightsError, match="vqgan weights, not clip"):
        store.resolve(entry.name, kind="clip", weights_dir=tmp_path)


# --- python -m generator download -----------------------------------------------------------


def test_cli_list_offline_shows_every_entry_missing(tmp_path, capsys):
    assert main(["download", "--list", "--offline", "--weights-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name, entry in store.REGISTRY.items():
        row = next(line for line in lines if line.split()[:1] == [name])
        assert "missing" in row and entry.filename in row
        assert ("manual" in row) == entry.manual
    assert list(tmp_path.iterdir()) == []


def test_cli_list_shows_verified_file_and_kind_filter(entry, file_server, tmp_path, capsys):
    (tmp_path / entry.filename).write_bytes(file_server.files["/file.bin"])
    args = ["download", "--list", "--offline", "--weights-dir", str(tmp_path), "--kind", "vqgan"]
    assert main(args) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(entry.name + " "))
    assert "verified" in row and "300.0 kB" in row
    assert DEFAULT_CLIP not in out and DEFAULT_VQGAN in out
    assert file_server.requests == []


def test_cli_download_name_fetches_it(entry, file_server, tmp_path, capsys):
    assert main(["download", entry.name, "--weights-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / entry.filename).read_bytes() == file_server.files["/file.bin"]
    assert f"{entry.name}: verified" in out


def test_cli_download_manual_prints_instructions_and_exits_1(tmp_path, capsys):
    code = main(["download", "ffhq_transformer", "--weights-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "https://k00.fr/yndvfu95" in out and str(tmp_path / "ffhq_transformer.ckpt") in out
    assert str(tmp_path / "ffhq_transformer.yaml") in out


def test_cli_unknown_name_is_one_error_line(tmp_path, capsys):
    assert main(["download", "nope", "--weights-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    error_lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "nope" in error_lines[0]
    assert captured.out == ""


def test_cli_offline_default_download_names_the_command(tmp_path, capsys):
    assert main(["download", "--offline", "--weights-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "python -m generator download" in err and "offline" in err


def test_weights_readme_lists_every_registry_entry():
    from generator.cli.download import markdown_table

    readme = (Path(store.__file__).resolve().parents[2] / "weights" / "README.md").read_text()
    table = markdown_table(list(store.REGISTRY))
    assert readme.endswith(table), "stale table in weights/README.md: `python -m generator download --list --markdown`"
    for name in store.REGISTRY:
        assert f"`{name}`" in table
