"""Images and videos are sized from their header and refused before anything is decoded: a
decompression bomb (a small file declaring a huge picture) costs no memory."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from generator.errors import InputError
from generator.io import input_limits
from generator.io.ffmpeg import run_ffmpeg
from generator.io.images import image_size, open_image
from generator.io.video_input import count_frames, probe_video

ROOT = Path(__file__).resolve().parents[2]


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A valid RGB PNG of ``width`` x ``height`` black pixels, a few hundred KB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row, parts = zlib.compressobj(9), b"\x00" * (1 + 3 * width), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The attack of the issue: 251 KB declaring 9400x9400 (3.2 GB once decoded to floats)."""
    return bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png", 9400, 9400)


@pytest.fixture
def server_limits(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(input_limits, "LIMITS", input_limits.InputLimits())
    monkeypatch.setattr("generator.io.images.LIMITS", input_limits.LIMITS)
    monkeypatch.setattr("generator.io.video_input.LIMITS", input_limits.LIMITS)
    return input_limits.set_input_limits(24, 50)


def test_a_decompression_bomb_is_refused_by_every_server_entry_with_peak_memory_below_200_mb(bomb: Path,
                                                                                            tmp_path: Path) -> None:
    """In a fresh process, as the served UI is set up: the image to upscale (also before its
    model is loaded), an init image, an image prompt. Peak memory grows by less than 200 MB."""
    assert bomb.stat().st_size < 400_000
    script = textwrap.dedent("""
        import json, resource, sys
        from pathlib import Path
        from generator.config import UpscaleConfig
        from generator.errors import InputError
        from generator.io.image_data import read_image_data
        from generator.io.images import open_image
        from generator.io.input_limits import set_input_limits
        from generator.webui.jobs import upscale_job
        from generator.webui.studio import Studio
        set_input_limits(24, 3000)
        bomb, out = sys.argv[1], Path(sys.argv[2])
        studio = Studio(outputs_dir=out, device="cpu")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        messages = []
        for attempt in (lambda: list(upscale_job(studio, bomb, UpscaleConfig(upscale=2.0), studio.session())),
                        lambda: list(upscale_job(studio, bomb, UpscaleConfig(), studio.session())),
                        lambda: read_image_data(bomb), lambda: open_image(bomb, what="init image")):
            try:
                attempt()
                messages.append("loaded")
            except InputError as error:
                messages.append(str(error))
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(json.dumps({"grown_kib": grown, "messages": messages}))
    """)
    result = subprocess.run([sys.executable, "-c", script, str(bomb), str(tmp_path / "out")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["grown_kib"] < 200 * 1024, report
    for message in report["messages"]:
        assert "9400x9400, larger than this server accepts (24 megapixels); resize it first." in message, message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


def test_the_command_line_refuses_images_over_its_own_limit_the_same_way(tmp_path: Path) -> None:
    huge = bomb_png(tmp_path / "huge.png", 20000, 20000)  # 400 megapixels, a 1.2 MB file
    pattern = r"huge\.png is (20000x20000, )?larger than this tool accepts \(268 megapixels\)"
    with pytest.raises(InputError, match=pattern):
        image_size(huge)
    with pytest.raises(InputError, match="larger than this tool accepts"):
        open_image(huge)


def test_a_legitimate_image_within_the_limit_still_decodes(tmp_path: Path, server_limits) -> None:
    small = bomb_png(tmp_path / "small.png", 640, 480)
    assert image_size(small) == (640, 480) and open_image(small).size == (640, 480)


def _video(path: Path, size: str, seconds: float, rate: int = 10) -> Path:
    made = run_ffmpeg(["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}", "-pix_fmt",
                       "yuv420p", "-y", str(path)])
    assert made.returncode == 0, made.stderr[-500:]
    return path


def test_a_video_is_sized_and_counted_from_its_header_before_its_frames_are_decoded(tmp_path: Path,
                                                                                   server_limits) -> None:
    large = _video(tmp_path / "large.mp4", "6016x4000", 0.1)  # 24.06 megapixels a frame
    with pytest.raises(InputError, match=r"6016x4000 frames, larger than this server accepts \(24 megapixels\)"):
        probe_video(large)
    long = _video(tmp_path / "long.mp4", "32x24", 8)  # 80 frames, over the 50 allowed
    with pytest.raises(InputError, match=r"about 80 frames, more than this server restyles \(50\)"):
        probe_video(long)
    with pytest.raises(InputError, match="more than 50 frames, more than this server restyles"):
        count_frames(long)  # should a container understate its length, counting stops past the limit
    short = _video(tmp_path / "short.mp4", "32x24", 2)
    assert probe_video(short).size == (32, 24) and count_frames(short) == 20
