"""generator.io.outputs: run folders, slugs, atomic no-clobber writes, PNG metadata, RunWriter."""

from __future__ import annotations

import errno
import json
import os
import re
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.errors import InputError, OutputError
from generator.io import atomic_files, outputs
from generator.io.outputs import RunWriter

NOW = datetime(2024, 1, 2, 3, 4, 5)
SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def _image(color: tuple[int, int, int] = (10, 20, 30), size: tuple[int, int] = (8, 6)) -> Image.Image:
    return Image.new("RGB", size, color)


def _entries(folder: Path) -> list[str]:
    """Every name under ``folder`` (recursively), temporary files included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _chunk_types(path: Path) -> list[bytes]:
    data, pos, types = path.read_bytes(), 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        types.append(data[pos + 4:pos + 8])
        pos += 12 + length
    return types


@pytest.mark.parametrize(("text", "expected"), [
    ("City at Night", "city-at-night"),
    ("Café crème brûlée", "cafe-creme-brulee"),
    ("Straße in Ærø, Łódź", "strasse-in-aero-lodz"),
    ("🌃 city   at night 🌃!!", "city-at-night"),
    ("../../etc/passwd", "etc-passwd"),
    ("C:\\Windows\\System32\\", "c-windows-system32"),
    ("ｆｕｌｌ ｗｉｄｔｈ", "full-width"),
    ("", "untitled"),
    ("日本語のプロンプト", "untitled"),
    ("...///---", "untitled"),
    ("con", "con-x"),
    ("NUL", "nul-x"),
    ("com1", "com1-x"),
    ("LPT9 ", "lpt9-x"),
    ("console", "console"),
])
def test_slugify_tricky_prompts(text, expected):
    assert outputs.slugify(text) == expected


def test_slugify_long_prompts_are_cut_at_a_word_boundary():
    text = "a painting of a lighthouse in a storm by ivan aivazovsky, trending on artstation"
    full = outputs.slugify(text, max_length=1000)
    slug = outputs.slugify(text)
    assert len(slug) <= 40 and SLUG.fullmatch(slug)
    assert full.startswith(slug + "-")  # whole words only
    assert slug == "a-painting-of-a-lighthouse-in-a-storm-by"
    assert outputs.slugify("x" * 100) == "x" * 40  # one long word: a hard cut
    assert len(outputs.slugify("ab " * 50, max_length=9)) <= 9
    with pytest.raises(ValueError):
        outputs.slugify("x", max_length=3)


def test_run_folder_name_with_a_fixed_time(tmp_path):
    out = tmp_path / "deep" / "outputs"
    folder = outputs.create_run_folder(out, prompt="City at Night ✨", seed=42, now=NOW)
    assert folder == out / "20240102-030405-city-at-night-42"
    assert folder.is_dir() and list(folder.iterdir()) == []  # frames/ is created lazily


def test_two_runs_in_the_same_second_get_their_own_folders(tmp_path):
    first = outputs.create_run_folder(tmp_path, prompt="same", seed=1, now=NOW)
    (first / "final.png").write_bytes(b"first run")
    second = outputs.create_run_folder(tmp_path, prompt="same", seed=1, now=NOW)
    third = outputs.create_run_folder(tmp_path, prompt="same", seed=1, now=NOW)
    assert [second.name, third.name] == [f"{first.name}-2", f"{first.name}-3"]
    assert (first / "final.png").read_bytes() == b"first run"
    assert list(second.iterdir()) == [] and list(third.iterdir()) == []


def test_run_folder_inside_a_file_is_an_output_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("keep me")
    with pytest.raises(OutputError, match="--out"):
        outputs.create_run_folder(blocker, prompt="x", seed=1, now=NOW)
    assert blocker.read_text() == "keep me"


def test_final_png_is_never_overwritten(tmp_path):
    writer = RunWriter(tmp_path / "run")
    final = writer.write_final(_image((1, 2, 3)), config={"steps": 5}, prompt="a", seed=7, mode="text-to-image")
    before = final.read_bytes()
    with pytest.raises(OutputError) as caught:
        writer.write_final(_image((200, 0, 0)), config={"steps": 9}, prompt="b", seed=8, mode="text-to-image")
    message = str(caught.value)
    assert "already exists and is never overwritten" in message and str(writer.folder) in message
    assert final.read_bytes() == before
    assert json.loads((writer.folder / "config.json").read_text()) == {"steps": 5}
    assert _entries(writer.folder) == ["config.json", "final.png"]  # no temporary files left


def test_write_bytes_atomic_refuses_an_existing_file_and_keeps_the_umask(tmp_path):
    path = outputs.write_bytes_atomic(tmp_path / "a.bin", b"one")
    with pytest.raises(OutputError, match="never overwritten"):
        outputs.write_bytes_atomic(path, b"two")
    assert path.read_bytes() == b"one" and _entries(tmp_path) == ["a.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_file_appearing_while_writing_is_not_overwritten(tmp_path, monkeypatch, hard_links):
    if not hard_links:
        monkeypatch.setattr(os, "link", _no_links)
    path = tmp_path / "final.png"
    with (pytest.raises(OutputError, match="never overwritten"),
          atomic_files.atomic_path(path) as tmp):
        tmp.write_bytes(b"ours")
        path.write_bytes(b"another process")  # a concurrent writer wins the name
    assert path.read_bytes() == b"another process" and _entries(tmp_path) == ["final.png"]


def _no_links(src, dst):
    raise OSError(errno.EPERM, "Operation not permitted")


def test_without_hard_links_the_fallback_still_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "link", _no_links)
    path = outputs.write_bytes_atomic(tmp_path / "a.bin", b"one")
    assert path.read_bytes() == b"one"
    with pytest.raises(OutputError, match="never overwritten"):
        outputs.write_bytes_atomic(path, b"two")
    assert path.read_bytes() == b"one" and _entries(tmp_path) == ["a.bin"]


def test_png_text_round_trip_with_non_latin1_text_and_a_large_config(tmp_path):
    config = {f"key_{i:04d}": "value " * 3 + "日本" for i in range(600)}
    config_text = json.dumps(config, sort_keys=True, ensure_ascii=False)
    assert len(config_text.encode()) > 20_000
    text = {"latin": "café au lait", "emoji": "🌃 city ≠ 街", outputs.CONFIG_KEY: config_text}
    path = outputs.save_png(_image(), tmp_path / "x.png", text=text)
    assert outputs.read_png_text(path) == text
    types = _chunk_types(path)
    assert b"tEXt" in types and b"iTXt" in types
    assert outputs.config_from_png(path) == config


def test_sixteen_bit_and_rgba_images_are_kept(tmp_path):
    grey = np.array([[0, 300, 65535], [1000, 40000, 7]], dtype=np.uint16)
    path16 = outputs.save_png(Image.fromarray(grey), tmp_path / "g.png")
    with Image.open(path16) as back:
        assert back.mode.startswith("I") and np.array_equal(np.asarray(back).astype(np.uint16), grey)
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 77))
    path_rgba = outputs.save_png(rgba, tmp_path / "a.png")
    with Image.open(path_rgba) as back:
        assert back.mode == "RGBA" and back.getpixel((1, 1)) == (10, 20, 30, 77)


def test_final_png_embeds_prompt_seed_and_config_and_config_json_matches(tmp_path):
    writer = RunWriter(tmp_path)
    config = {"prompts": "川の夜景", "steps": 3, "nested": {"lr": 0.1}}
    final = writer.write_final(_image(), config=config, prompt="川の夜景", seed=123, mode="text-to-image")
    text = outputs.read_png_text(final)
    assert text[outputs.PROMPT_KEY] == "川の夜景" and text[outputs.SEED_KEY] == "123"
    assert text["Software"] == "vqgan-studio"
    assert outputs.config_from_png(final) == config
    assert outputs.config_from_png(writer.folder / "config.json") == config
    assert writer.written == [final, writer.folder / "config.json"]


def test_config_from_a_png_without_config(tmp_path):
    path = outputs.save_png(_image(), tmp_path / "plain.png", text={"prompt": "x"})
    with pytest.raises(InputError, match=r"has no embedded generator config; .*config\.json"):
        outputs.config_from_png(path)


@pytest.mark.parametrize("kind", ["jpeg", "text", "truncated", "missing", "empty"])
def test_config_from_unreadable_files_names_them(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    if kind == "jpeg":
        _image().save(path, format="JPEG")
    elif kind == "text":
        path.write_text("hello")
    elif kind == "truncated":
        big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
        data = outputs.save_png(big, tmp_path / "full.png", text={"a": "b"}).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    with pytest.raises(InputError) as caught:
        outputs.config_from_png(path)
    assert str(path) in str(caught.value)
    with pytest.raises(InputError):
        outputs.read_png_text(path)


def test_config_json_is_accepted_and_bad_json_is_an_input_error(tmp_path):
    good = tmp_path / "config.json"
    good.write_text(json.dumps({"steps": 4, "prompts": "ü"}), encoding="utf-8")
    assert outputs.config_from_png(good) == {"steps": 4, "prompts": "ü"}
    for name, body in [("broken.json", "{not json"), ("list.json", "[1, 2]")]:
        (tmp_path / name).write_text(body)
        with pytest.raises(InputError, match=re.escape(str(tmp_path / name))):
            outputs.config_from_png(tmp_path / name)


def test_frames_are_named_by_step_and_sorted_numerically(tmp_path):
    writer = RunWriter(tmp_path / "run")
    assert writer.frames() == [] and writer.write_video() == []
    steps = (100, 5, 1_000_000, 999_999, 10)
    paths = [writer.write_frame(step, _image((step % 256, 0, 0))) for step in steps]
    assert [p.name for p in paths] == ["000100.png", "000005.png", "1000000.png", "999999.png",
                                       "000010.png"]
    assert all(p.parent == writer.folder / "frames" for p in paths)
    assert [int(p.stem) for p in writer.frames()] == sorted(steps)
    assert writer.written == paths
    with pytest.raises(OutputError, match="never overwritten"):
        writer.write_frame(5, _image())
    with pytest.raises(ValueError):
        writer.write_frame(-1, _image())


def test_write_image_takes_plain_png_names_only(tmp_path):
    writer = RunWriter(tmp_path)
    assert writer.write_image(_image(), "final_x4.png", text={"scale": "4"}).exists()
    for bad in ["../evil.png", "sub/x.png", ".hidden.png", "x.jpg", ".png"]:
        with pytest.raises(ValueError):
            writer.write_image(_image(), bad)
    assert _entries(tmp_path) == ["final_x4.png"]


def _fail_after(monkeypatch, count: int, error: OSError, only_png: bool = False) -> None:
    real = atomic_files._write_file
    calls = {"n": 0}

    def write(tmp, data):
        calls["n"] += 1
        if calls["n"] > count and (not only_png or data.startswith(b"\x89PNG")):
            raise error
        real(tmp, data)

    monkeypatch.setattr(atomic_files, "_write_file", write)


def test_disk_full_is_an_output_error_and_earlier_files_are_kept(tmp_path, monkeypatch):
    writer = RunWriter(tmp_path / "run")
    _fail_after(monkeypatch, 1, OSError(errno.ENOSPC, "No space left on device"))
    first = writer.write_frame(1, _image())
    with pytest.raises(OutputError) as caught:
        writer.write_frame(2, _image())
    message = str(caught.value)
    assert "disk is full" in message and "frames/000002.png" in message
    assert f"already written in {writer.folder} are kept" in message
    assert first.exists() and _entries(writer.folder) == ["frames", "frames/000001.png"]


def test_disk_full_on_final_png_still_saves_config_json(tmp_path, monkeypatch):
    writer = RunWriter(tmp_path)
    _fail_after(monkeypatch, 0, OSError(errno.EDQUOT, "Disk quota exceeded"), only_png=True)
    with pytest.raises(OutputError, match="disk is full while writing final.png"):
        writer.write_final(_image(), config={"steps": 2}, prompt="p", seed=1, mode="text-to-image")
    assert _entries(tmp_path) == ["config.json"]
    assert outputs.config_from_png(tmp_path / "config.json") == {"steps": 2}


@pytest.mark.parametrize(("code", "words"), [(errno.EACCES, "permission denied"),
                                             (errno.EROFS, "read-only file system")])
def test_unwritable_folder_errors_suggest_out(tmp_path, monkeypatch, code, words):
    writer = RunWriter(tmp_path)
    _fail_after(monkeypatch, 0, OSError(code, os.strerror(code)))
    with pytest.raises(OutputError) as caught:
        writer.write_image(_image(), "x.png")
    message = str(caught.value)
    assert words in message and "--out" in message and str(tmp_path) in message
    assert message.count(";") == 1 and message.endswith(".")
    assert _entries(tmp_path) == []


def test_read_only_folder_really_refuses(tmp_path):
    writer = RunWriter(tmp_path / "run")
    frame = writer.write_frame(1, _image())
    os.chmod(writer.folder, 0o555)
    try:
        probe = writer.folder / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("chmod does not stop this user (root) from writing")
        with pytest.raises(OutputError, match="permission denied.*--out"):
            writer.write_final(_image(), config={}, prompt="p", seed=1, mode="text-to-image")
        assert frame.exists()
    finally:
        os.chmod(writer.folder, 0o755)


def test_zip_frames_holds_every_frame_in_order(tmp_path):
    writer = RunWriter(tmp_path / "run")
    for step in (20, 3, 100):
        writer.write_frame(step, _image((step, step, step)))
    dest = outputs.zip_frames(writer.folder, tmp_path / "frames.zip")
    with zipfile.ZipFile(dest) as archive:
        assert archive.namelist() == ["000003.png", "000020.png", "000100.png"]
        for frame in writer.frames():
            assert archive.read(frame.name) == frame.read_bytes()
    with pytest.raises(OutputError, match="never overwritten"):
        outputs.zip_frames(writer.folder, dest)
    with pytest.raises(InputError, match="no frames"):
        outputs.zip_frames(tmp_path / "empty-run", tmp_path / "other.zip")
