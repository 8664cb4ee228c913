"""Audio features per video frame, for audio-reactive keyframes (``--zoom "1 + 0.04*bass"``).

Frame ``k`` of a video at ``fps`` frames per second covers the time ``[k/fps, (k+1)/fps)``: the
samples from ``round(k * rate / fps)`` up to the next frame's first, so frames never drift from
the sound however long the video. Per frame:

- ``loudness``: the RMS level of the frame's samples (the sound's mean removed);
- ``bass``, ``mid``, ``treble``: the RMS level over the frame of the sound's 20-250 Hz,
  250-4000 Hz and 4000 Hz-and-up parts. Each band is cut from the whole sound at once (one FFT,
  a brick-wall mask, an inverse FFT; the sound fades in and out over :data:`FADE_SECONDS`
  first), so a tone stays in its band instead of leaking into the others as it would through
  windows a frame long;
- ``onset``: how much the sound rises at the frame, the positive spectral flux: the spectrum of
  exactly the frame's samples (an STFT whose windows are the frames, so nothing of a click
  reaches the frame before it), its level in nine bands (edges :data:`ONSET_EDGES`), and the
  rises of those levels from the frame before, summed (a beat, a click, a note that starts).

Each feature is then normalised to [0, 1] over the clip: divided by its 99th percentile (or
half its maximum when that is larger, so that a few isolated clicks still reach 1) and clipped.
The divisor is never under :data:`SILENCE` (full scale is 1), nor 40 dB under the clip's
loudness: silence gives zeros, never NaN, and a band the sound barely has stays near 0. Frames
after the end of the sound have zeros.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from generator.io.audio import SAMPLE_RATE, read_audio

FEATURES = ("loudness", "bass", "mid", "treble", "onset")
"""The audio features, each 0 to 1 at every frame."""
BANDS = {"bass": (20.0, 250.0), "mid": (250.0, 4000.0), "treble": (4000.0, math.inf)}
"""The bands of ``bass``, ``mid`` and ``treble`` in Hz: from the first, up to (not including) the second."""
ONSET_EDGES = (20.0, 60.0, 120.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, math.inf)
"""The edges in Hz of the bands whose rises make ``onset`` (they also split bass, mid and treble)."""
SILENCE = 1e-3
"""An RMS level (full scale 1, so -60 dBFS) under which a feature counts as silent."""
QUIET = 1e-2
"""A band this far under the clip's loudness (-40 dB) counts as silent."""
FADE_SECONDS = 0.01
"""The sound fades in and out over this long before the bands are cut, so that its abrupt ends
do not spread over every band."""


@dataclass(frozen=True, eq=False)
class AudioFeatures:
    """The audio features of every frame of a video.

    Attributes:
        fps: the video's frames per second.
        values: each feature's values, one per frame, in [0, 1].
        source: the file the sound came from (None: samples given directly).
    """

    fps: float
    values: dict[str, np.ndarray] = field(repr=False)
    source: Path | None = None

    @property
    def frames(self) -> int:
        """How many frames have features."""
        return len(self.values[FEATURES[0]])

    def at(self, frame: int) -> dict[str, float]:
        """Every feature at ``frame`` (zeros past the last frame), rounded to 6 decimals."""
        if not 0 <= frame < self.frames:
            return {name: 0.0 for name in FEATURES}
        return {name: round(float(self.values[name][frame]), 6) for name in FEATURES}


def audio_features(path: str | Path, *, fps: float, frames: int) -> AudioFeatures:
    """Decode the sound of ``path`` (as long as the ``frames`` frames last) and compute the
    features of every frame.

    Raises:
        InputError: the file is missing, not a sound file or a video with sound, or not decodable.
    """
    samples = read_audio(path, seconds=frames / fps + 1 / fps, rate=SAMPLE_RATE)
    return frame_features(samples, SAMPLE_RATE, fps=fps, frames=frames, source=Path(path))


def frame_features(samples: np.ndarray, rate: int, *, fps: float, frames: int,
                   source: Path | None = None) -> AudioFeatures:
    """The features of ``frames`` frames at ``fps`` of the mono ``samples`` (``(n,)`` at ``rate``
    per second; shorter sound is followed by silence, longer is cut)."""
    if fps <= 0 or frames < 1:
        raise ValueError(f"fps must be positive and frames 1 or more, not {fps} and {frames}")
    edges = np.round(np.arange(frames + 1) * (rate / fps)).astype(np.int64)  # frame k: edges[k] .. edges[k+1]
    used = min(int(edges[-1]), len(samples))
    covered = int(np.count_nonzero(edges[:-1] < used))  # the frames that start before the sound ends
    raw = {name: np.zeros(frames) for name in FEATURES}  # frames after the sound: silence
    if covered:
        edges = edges[:covered + 1]
        total = int(edges[-1])
        sound = np.zeros(total, np.float32)  # (total,)
        kept = np.nan_to_num(np.asarray(samples[:used], np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        sound[:used] = kept - kept.mean()
        widths = np.maximum(np.diff(edges), 1)  # (covered,) samples per frame

        def level(signal: np.ndarray) -> np.ndarray:
            """The RMS of ``signal`` over each frame's samples, (covered,)."""
            sums = np.concatenate([[0.0], np.cumsum(np.square(signal[:total], dtype=np.float64))])  # (total + 1,)
            return np.sqrt(np.maximum(sums[edges[1:]] - sums[edges[:-1]], 0) / widths)

        raw["loudness"][:covered] = level(sound)
        for name, band in _band_levels(sound, used, rate, level).items():
            raw[name][:covered] = band
        raw["onset"][:covered] = _onsets(sound, edges, widths, rate)
    floor = max(SILENCE, QUIET * _reference(raw["loudness"]))
    values = {name: _normalise(raw[name], floor) for name in FEATURES}
    return AudioFeatures(float(fps), values, source)


def _band_levels(sound: np.ndarray, used: int, rate: int, level: Callable[[np.ndarray], np.ndarray]
                 ) -> dict[str, np.ndarray]:
    """The level of bass, mid and treble per frame: each band cut from the whole sound (faded in
    and out) by one FFT and a brick-wall mask."""
    faded = sound.copy()
    fade = min(int(FADE_SECONDS * rate), used // 2)
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)  # (fade,)
        faded[:fade] *= ramp
        faded[used - fade:used] *= ramp[::-1]
    length = _fast_length(len(sound))
    spectrum = np.fft.rfft(faded, length)  # (length // 2 + 1,)
    frequencies = np.fft.rfftfreq(length, 1 / rate)
    return {name: level(np.fft.irfft(np.where((frequencies >= low) & (frequencies < high), spectrum, 0), length))
            for name, (low, high) in BANDS.items()}


def _onsets(sound: np.ndarray, edges: np.ndarray, widths: np.ndarray, rate: int) -> np.ndarray:
    """The positive spectral flux per frame: the spectrum of exactly each frame's samples (an
    STFT whose windows are the frames, so nothing of a click reaches the frame before it), its
    level in each band of :data:`ONSET_EDGES`, and the rises of those levels summed."""
    size = 1 << int(max(widths.max(), 2) - 1).bit_length()
    frequencies = np.fft.rfftfreq(size, 1 / rate)
    bands = [(frequencies >= low) & (frequencies < high) for low, high in itertools.pairwise(ONSET_EDGES)]
    counts = np.full(size // 2 + 1, 2.0)
    counts[0] = 1.0
    if size % 2 == 0:
        counts[-1] = 1.0
    padded = np.concatenate([sound, np.zeros(size, sound.dtype)])
    chunk = max(1, (1 << 21) // size)  # frames at a time: a few tens of MB
    previous = np.zeros(len(bands))
    rises = np.zeros(len(widths))
    for first in range(0, len(widths), chunk):
        spans = widths[first:first + chunk]
        starts = edges[first:first + len(spans)]
        offsets = np.arange(size)
        windows = np.where(offsets < spans[:, None], padded[starts[:, None] + offsets], 0)  # (chunk, size)
        power = np.abs(np.fft.rfft(windows, axis=1)) ** 2 * counts / (size * spans[:, None])  # mean square per bin
        levels = np.sqrt(np.stack([power[:, band].sum(1) for band in bands], axis=1))  # (chunk, bands)
        steps = np.diff(levels, axis=0, prepend=previous[None])
        rises[first:first + chunk] = np.maximum(steps, 0).sum(1)
        previous = levels[-1]
    return rises


def _reference(raw: np.ndarray) -> float:
    """The level that becomes 1: the 99th percentile, or half the maximum when that is larger."""
    return float(max(np.percentile(raw, 99), raw.max() / 2)) if raw.size else 0.0


def _normalise(raw: np.ndarray, floor: float) -> np.ndarray:
    """``raw`` / its reference level (at least ``floor``), clipped to [0, 1], as float32."""
    return np.clip(raw / max(_reference(raw), floor), 0, 1).astype(np.float32)


def _fast_length(n: int) -> int:
    """The least length of at least ``n`` (and 2) whose only prime factors are 2, 3 and 5 (fast FFTs)."""
    best = 1 << max(n - 1, 1).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35
            while size < n:
                size *= 2
            best = min(best, max(size, 2))
            power35 *= 3
        power5 *= 5
    return best
