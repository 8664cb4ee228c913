"""The bundled ffmpeg (imageio-ffmpeg's; no system ffmpeg is needed), and the options under
which it opens a file a user gave.

Besides videos, ffmpeg reads playlists (HLS ``.m3u8``) and lists of files (``ffconcat``),
which make it open other files: an uploaded playlist could restyle another user's video on
the same server, or read a media file from anywhere on it. A user's file is therefore opened
with :data:`USER_INPUT`: only the local file itself (no network protocol) and only the
containers videos come in (:data:`VIDEO_CONTAINERS`), or, for a sound file, those and the
containers of sound (:data:`USER_SOUND_INPUT`).
"""

from __future__ import annotations

import subprocess

VIDEO_CONTAINERS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "gif", "mpegts", "flv", "mpeg", "ogg", "asf")
"""ffmpeg's demuxers for MP4/MOV, MKV/WebM, AVI, GIF, MPEG-TS, FLV, MPEG-PS, Ogg and ASF/WMV."""
USER_INPUT = ["-protocol_whitelist", "file", "-format_whitelist", ",".join(VIDEO_CONTAINERS)]
"""Input options (before ``-i``) for a file a user gave."""
AUDIO_CONTAINERS = ("wav", "w64", "mp3", "flac", "aac", "aiff", "caf")
"""ffmpeg's demuxers for sound files: WAV, Wave64, MP3, FLAC, ADTS AAC, AIFF and CAF (M4A and Ogg
are among :data:`VIDEO_CONTAINERS`)."""
USER_SOUND_INPUT = ["-protocol_whitelist", "file", "-format_whitelist", ",".join(VIDEO_CONTAINERS + AUDIO_CONTAINERS)]
"""Input options (before ``-i``) for a sound file a user gave (``--audio``): a video or an audio container."""
REFUSED_FORMAT = "Format not on whitelist"
"""What ffmpeg says of an input in another container (a playlist, a list of files)."""


def ffmpeg_exe() -> str:
    """The path of the bundled ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess:
    """Run ffmpeg with ``args`` (quiet banner, no stdin), capturing its output as text."""
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args], capture_output=True, text=True,
                          check=False)
