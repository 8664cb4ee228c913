"""Audio features per frame from WAV files made here (clicks land on their frames, tones in their
band, silence is zeros), one sentence for sound that cannot be used, and ``--audio`` end to end:
the zoom follows the bass and the video gets the sound."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from generator.animate.audio import FEATURES, audio_features
from generator.cli.main import main
from generator.errors import InputError
from generator.io.audio import probe_audio, read_audio
from generator.io.video_input import count_frames, probe_video
from tests.animate.conftest import ffmpeg, frame_paths

RATE = 44100  # decoded at 22050: the resampling is part of what is tested
FAST = ["--size", "32", "32", "--cutn", "4", "--precision", "fp32"]


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Mono 16-bit PCM."""
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(pcm.tobytes())
    return path


def clicks(seconds: float, times: list[float]) -> np.ndarray:
    """Silence with a 0.5 ms click at each time."""
    sound = np.zeros(int(seconds * RATE))
    for time in times:
        start = int(round(time * RATE))
        sound[start:start + RATE // 2000] = 0.9
    return sound


def tone(seconds: float, frequency: float, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * frequency * np.arange(int(seconds * RATE)) / RATE)


def test_onsets_and_loudness_peak_on_the_frames_of_the_clicks(tmp_path: Path) -> None:
    fps, frames = 12.0, 24
    # early, late and mid-frame clicks: each must land in its own frame, not a neighbour
    where = {3: 0.05, 8: 0.93, 15: 0.5, 20: 0.1}
    path = write_wav(tmp_path / "clicks.wav", clicks(2.0, [(frame + part) / fps for frame, part in where.items()]))
    features = audio_features(path, fps=fps, frames=frames)
    onset, loudness = features.values["onset"], features.values["loudness"]
    others = [frame for frame in range(frames) if frame not in where]
    assert onset[list(where)].min() >= 0.9 and onset[others].max() <= 0.1, np.round(onset, 2)
    assert loudness[list(where)].min() >= 0.9 and loudness[others].max() <= 0.1, np.round(loudness, 2)
    assert features.frames == frames and features.at(3)["onset"] == pytest.approx(float(onset[3]), abs=1e-6)


def test_frames_keep_their_time_over_a_long_clip_at_a_fractional_frame_rate(tmp_path: Path) -> None:
    fps, frames = 30000 / 1001, 600  # 29.97 fps: 735.735 samples a frame at 22050 Hz, 20 seconds
    # 3 ms inside frames 500 and 550: a frame length rounded to whole samples drifts by 6 ms by then
    times = [500 / fps + 0.003, 551 / fps - 0.003]
    path = write_wav(tmp_path / "late.wav", clicks(frames / fps, times))
    onset = audio_features(path, fps=fps, frames=frames).values["onset"]
    assert sorted(np.argsort(onset)[-2:].tolist()) == [500, 550] and onset[[499, 501, 549, 551]].max() <= 0.1


@pytest.mark.parametrize(("frequency", "band", "others"), [(60, "bass", ("mid", "treble")),
                                                           (5000, "treble", ("bass", "mid")),
                                                           (1000, "mid", ("bass", "treble"))])
def test_a_pure_tone_lands_in_its_band(tmp_path: Path, frequency: float, band: str, others: tuple[str, ...]) -> None:
    path = write_wav(tmp_path / f"{frequency}.wav", tone(1.0, frequency))
    values = audio_features(path, fps=10, frames=10).values
    inside = slice(1, 9)  # the first and last frames hold the sound's start and end
    assert values[band][inside].min() >= 0.95 and values["loudness"][inside].min() >= 0.95
    for other in others:
        assert values[other][inside].max() <= 0.05, (other, np.round(values[other], 3))
    assert values["onset"][inside].max() <= 0.1  # a steady tone does not rise


def test_silence_gives_zeros_and_frames_after_the_sound_are_silent(tmp_path: Path) -> None:
    quiet = audio_features(write_wav(tmp_path / "silence.wav", np.zeros(RATE)), fps=10, frames=12)
    assert all(np.array_equal(quiet.values[name], np.zeros(12, np.float32)) for name in FEATURES)
    short = audio_features(write_wav(tmp_path / "short.wav", tone(0.3, 440)), fps=10, frames=6)
    assert short.values["mid"][1] >= 0.95 and short.values["mid"][3:].max() == 0 and short.at(10)["mid"] == 0
    assert len(read_audio(tmp_path / "short.wav")) == round(0.3 * 22050)


def test_sound_that_cannot_be_used_gets_one_sentence(tmp_path: Path) -> None:
    noise = tmp_path / "noise.wav"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    silent_video = tmp_path / "silent.mp4"
    assert ffmpeg("-f", "lavfi", "-i", "testsrc=size=32x32:rate=10:duration=0.3", "-c:v", "libx264", "-pix_fmt",
                  "yuv420p", "-y", str(silent_video)).returncode == 0
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{write_wav(tmp_path / 'a.wav', tone(1, 440))}"
                        "\n#EXT-X-ENDLIST\n")
    expected = {
        noise: f"{noise} cannot be decoded as sound (Invalid data found when processing input); give --audio an "
               "intact sound file (WAV, MP3, FLAC, Ogg, M4A, AAC, AIFF, or a video with sound).",
        silent_video: f"{silent_video} has no sound track; give --audio a file with sound (WAV, MP3, FLAC, Ogg, M4A, "
                      "AAC, AIFF, or a video with sound).",
        playlist: f"{playlist} is not a sound file this tool reads (WAV, MP3, FLAC, Ogg, M4A, AAC, AIFF, or a video "
                  "with sound); playlists and lists of other files are refused, so give the sound file itself to "
                  "--audio.",
        tmp_path / "gone.wav": f"the audio file {tmp_path / 'gone.wav'} does not exist; check its path.",
    }
    for path, sentence in expected.items():
        for read in (probe_audio, lambda path: audio_features(path, fps=10, frames=3)):
            with pytest.raises(InputError) as raised:
                read(path)
            assert str(raised.value) == sentence


def test_the_zoom_follows_the_bass_of_the_audio_and_the_video_gets_the_sound(tiny_files, tmp_path: Path) -> None:
    # a 60 Hz tone growing louder frame by frame over frames 0-3; frame 4 comes after the sound (0.4 s)
    loudness = np.repeat([0.1, 0.3, 0.6, 0.9], RATE // 10)
    sound = write_wav(tmp_path / "bass.wav", tone(0.4, 60, 1.0) * loudness)
    out = tmp_path / "out"
    code = main(["animate", "a drum", *tiny_files.cli_args(), *FAST, "--frames", "5", "--steps", "1",
                 "--steps-per-frame", "1", "--fps", "10", "--audio", str(sound), "--zoom", "1 + 0.04*bass",
                 "--seed", "3", "--out", str(out)])
    assert code == 0
    (folder,) = out.iterdir()
    records = [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]
    bass = audio_features(sound, fps=10, frames=5).values["bass"]
    assert bass[1] < bass[2] < bass[3] and bass[4] == 0
    assert [record["zoom"] for record in records] == pytest.approx([1.0, *(1 + 0.04 * bass[1:4]), 1.0])
    assert records[3]["zoom"] > 1.03  # it moved with the loud bass
    assert len(frame_paths(folder)) == 5
    video = folder / "video.mp4"
    assert probe_video(video).has_audio and count_frames(video) == 5  # the shorter sound did not cut the video


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zoom", "1 + 0.04*bass"], "--zoom '1 + 0.04*bass' uses the audio feature 'bass', but there is no sound "
                                      "to follow; pass --audio FILE (or restyle a video that has sound)."),
        (["--angle", "2*onset", "--audio", "NOISE"], "cannot be decoded as sound"),
        (["--translate-x", "__import__('os')"], "has a string"),
    ],
)
def test_audio_settings_are_checked_before_anything_runs(tiny_files, tmp_path: Path, capsys, args: list[str],
                                                         message: str) -> None:
    noise = tmp_path / "noise.mp3"
    noise.write_bytes(np.random.default_rng(1).bytes(2048))
    args = [str(noise) if arg == "NOISE" else arg for arg in args]
    code = main(["animate", "a cat", *args, *tiny_files.cli_args(), *FAST, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("error: ") and message in err[-1], err
    assert not (tmp_path / "out").exists()


def test_the_animate_tabs_plot_shows_the_motion_the_sound_drives(tmp_path: Path, tiny_files) -> None:
    from generator.animate.config import AnimationConfig
    from generator.animate.tab import motion_tables
    from tests.factories import tiny_run_config

    sound = write_wav(tmp_path / "beat.wav", np.concatenate([np.zeros(RATE // 2), tone(0.5, 60.0)]))
    config = AnimationConfig.from_dict({**tiny_run_config(tiny_files).to_dict(), "frames": 12, "output": {"fps": 10},
                                        "motion": {"zoom": "1 + 0.04*bass", "audio": str(sound)}})
    motion, features = motion_tables(config)
    assert set(motion["series"]) == {"zoom"}  # only what changes; angle and pans stay 0
    bass = features[features["series"] == "bass"]["value"].to_numpy()
    assert set(features["series"]) == set(FEATURES) and len(bass) == 12
    assert bass[:4].max() < 0.1 and bass[5:9].min() > 0.9  # the tone starts at 0.5 s: frame 5 at 10 fps
    zoom = motion["value"].to_numpy()
    assert np.allclose(zoom[1:], 1 + 0.04 * bass[1:], atol=1e-6)
    silent, none = motion_tables(config.replace(motion=config.motion.__class__(zoom="1.01")))
    assert none.empty and list(silent["value"]) == [1.01] * 12
