"""A user's video is read as a video file only: playlists and lists of files, which make
ffmpeg open other files on the server, are refused; the usual containers are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.errors import InputError, OutputError
from generator.io.ffmpeg import run_ffmpeg
from generator.io.video import add_audio
from generator.io.video_input import count_frames, probe_video, read_video_frames

REFUSED = "is not a video file this tool reads"


def _make(path: Path, *args: str) -> Path:
    made = run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=32x24:rate=5:duration=1", *args, "-y", str(path)])
    assert made.returncode == 0, made.stderr
    return path


@pytest.fixture(scope="module")
def private_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another user's video with sound on the same server, in an MPEG-TS file a playlist can point at."""
    return _make(tmp_path_factory.mktemp("someone-else") / "their.ts", "-f", "lavfi", "-i",
                 "sine=frequency=440:duration=1", "-c:v", "mpeg2video", "-c:a", "mp2", "-shortest")


def test_a_playlist_naming_another_file_is_refused(private_video: Path, tmp_path: Path) -> None:
    playlist = tmp_path / "upload.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{private_video}\n#EXT-X-ENDLIST\n")
    # the attack works on a plain ffmpeg: it reads the other user's file through the playlist
    assert "Input #0, hls" in run_ffmpeg(["-i", str(playlist)]).stderr
    for read in (probe_video, count_frames, lambda path: list(read_video_frames(path))):
        with pytest.raises(InputError) as refused:
            read(playlist)
        assert str(refused.value) == (f"{playlist} is not a video file this tool reads (MP4, MOV, MKV, WebM, AVI, "
                                      "GIF, MPEG-TS, FLV, MPEG, Ogg, WMV); playlists and lists of other files are "
                                      "refused. Give a video file or a folder of frames.")


def test_a_list_of_files_is_refused(tmp_path: Path) -> None:
    _make(tmp_path / "part.ts", "-c:v", "mpeg2video")
    listed = tmp_path / "list.mp4"
    listed.write_text("ffconcat version 1.0\nfile part.ts\n")
    assert "Input #0, concat" in run_ffmpeg(["-i", str(listed)]).stderr  # a plain ffmpeg follows it
    with pytest.raises(InputError, match=REFUSED):
        probe_video(listed)
    with pytest.raises(InputError, match=REFUSED):
        count_frames(listed)


def test_a_playlist_cannot_lend_its_sound(private_video: Path, tmp_path: Path) -> None:
    video = _make(tmp_path / "mine.mp4", "-c:v", "libx264", "-pix_fmt", "yuv420p")
    playlist = tmp_path / "sound.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{private_video}\n#EXT-X-ENDLIST\n")
    with pytest.raises(OutputError):
        add_audio(video, playlist, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(("name", "args"), [
    ("clip.mp4", ("-c:v", "libx264", "-pix_fmt", "yuv420p")),
    ("clip.mov", ("-c:v", "mpeg4",)),
    ("clip.mkv", ("-c:v", "mpeg4",)),
    ("clip.avi", ("-c:v", "mpeg4",)),
    ("clip.gif", ()),
    ("clip.ts", ("-c:v", "mpeg2video",)),
])
def test_the_usual_containers_are_read(tmp_path: Path, name: str, args: tuple[str, ...]) -> None:
    path = _make(tmp_path / name, *args)
    info = probe_video(path)
    assert info.size == (32, 24) and info.fps == 5 and not info.has_audio
    frames = list(read_video_frames(path))
    assert count_frames(path) == len(frames) == 5 and frames[0].size == (32, 24)
