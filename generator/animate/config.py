"""The config of an animation (``python -m generator animate``): every text-to-image setting,
plus the frames, their motion (keyframed zoom, angle and translation) and a video to restyle."""

from __future__ import annotations

from dataclasses import dataclass, field

from generator.config import GenerationConfig, ensure

BORDERS = ("reflect", "outpaint")


@dataclass(frozen=True)
class MotionConfig:
    """How each animation frame moves the previous one, about the image's centre.

    Every value is a constant (``"1.02"``) or keyframes ``"FRAME:VALUE, FRAME:VALUE"``
    (``"0:1.0, 60:1.04"``), interpolated between keyframes and held after the last (see
    generator/animate/keyframes.py; the grammar is checked when a run starts).

    Attributes:
        zoom: scale per frame (above 1 zooms in); more than 0 at every frame.
        angle: rotation per frame in degrees, counter-clockwise.
        translate_x: shift per frame in pixels, to the right.
        translate_y: shift per frame in pixels, downward.
        smooth: ease in and out of every keyframe (cosine) instead of straight lines.
        border: what fills the pixels a motion brings in from outside the frame (zooming out,
            turning, shifting): ``reflect`` (the frame mirrored, then optimised with the rest)
            or ``outpaint`` (only those pixels are made anew, continuing the frame, which is
            kept as it is: an endless zoom out).
    """

    zoom: str = "1.0"
    angle: str = "0"
    translate_x: str = "0"
    translate_y: str = "0"
    smooth: bool = False
    border: str = "reflect"

    def __post_init__(self) -> None:
        ensure(self.border in BORDERS, f"border must be one of {', '.join(BORDERS)}, not {self.border!r}.")


@dataclass(frozen=True)
class RestyleConfig:
    """Video restyle: each input frame stylised by the prompts.

    Attributes:
        video_init: a video file or a folder of frames (None: no restyle).
        every: take every K-th input frame (the output's frame rate is the input's divided by K).
        blend: how much of the previous output frame is mixed into each input frame (0..1).
    """

    video_init: str | None = None
    every: int = 1
    blend: float = 0.0

    def __post_init__(self) -> None:
        ensure(self.every >= 1, f"every must be 1 or more, not {self.every}.")
        ensure(0 <= self.blend <= 1, f"blend must be between 0 and 1, not {self.blend}.")


@dataclass(frozen=True)
class AnimationConfig(GenerationConfig):
    """Everything that decides an animation (``python -m generator animate``): every
    text-to-image setting, plus the frames, their motion and the video.

    In this mode ``change_prompt_every`` counts *frames* per ``^`` story phrase (0: the
    phrases split the frames evenly), ``steps`` is the first frame's steps unless
    ``first_frame_steps`` is given, and ``output.save_every`` is not used (every frame is saved).

    Attributes:
        frames: frames to make (None: 60, or every selected input frame of a restyle).
        steps_per_frame: optimisation steps of every frame after the first.
        first_frame_steps: steps of the first frame (None: ``steps``; ``steps_per_frame`` in a restyle).
        frame_init_weight: weight of the MSE that holds each frame near the latent it started from
            (the transformed previous frame): temporal coherence.
        prompt_at: keyframed prompts ``FRAME=PROMPT``: from that frame on, PROMPT (in the
            usual prompt grammar) replaces the prompts.
        interpolate: multiply the frame rate by this with motion-compensated interpolation.
        video_length: seconds the video lasts (0: ``fps`` decides); the frame rate is chosen to fit.
        motion: zoom, angle and translation per frame.
        restyle: the input video of a restyle.
    """

    frames: int | None = None
    steps_per_frame: int = 10
    first_frame_steps: int | None = None
    frame_init_weight: float = 0.0
    prompt_at: tuple[str, ...] = ()
    interpolate: int = 1
    video_length: float = 0.0
    motion: MotionConfig = field(default_factory=MotionConfig)
    restyle: RestyleConfig = field(default_factory=RestyleConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        ensure(self.frames is None or 1 <= self.frames <= 100_000,
               f"frames must be between 1 and 100000, not {self.frames}.")
        ensure(0 <= self.steps_per_frame <= 100_000,
               f"steps_per_frame must be 0 to 100000, not {self.steps_per_frame}.")
        ensure(self.first_frame_steps is None or 0 <= self.first_frame_steps <= 100_000,
               f"first_frame_steps must be 0 to 100000, not {self.first_frame_steps}.")
        ensure(self.frame_init_weight >= 0, f"frame_init_weight must be 0 or more, not {self.frame_init_weight}.")
        ensure(1 <= self.interpolate <= 16, f"interpolate must be between 1 and 16, not {self.interpolate}.")
        ensure(self.video_length >= 0, f"video_length must be 0 (off) or a number of seconds, not {self.video_length}.")
