"""The config of an animation (``python -m generator animate``): every text-to-image setting,
plus the frames, their motion (keyframed zoom, angle and translation) and a video to restyle."""

from __future__ import annotations

from dataclasses import dataclass, field

from generator.animate.flow import FLOW_METHODS, OFF
from generator.config import GenerationConfig, ensure

BORDERS = ("reflect", "outpaint")
FLOW_WEIGHT = 10.0
"""The default weight of the temporal consistency loss (``--flow-weight``)."""


@dataclass(frozen=True)
class MotionConfig:
    """How each animation frame moves the previous one, about the image's centre.

    Every value is a constant (``"1.02"``) or keyframes ``"FRAME:VALUE, FRAME:VALUE"``
    (``"0:1.0, 60:1.04"``), interpolated between keyframes and held after the last (see
    generator/animate/keyframes.py; the grammar is checked when a run starts). The setting,
    or a keyframe's value, may be an expression over ``t`` (seconds), ``frame`` and the audio
    features ``loudness``, ``bass``, ``mid``, ``treble`` and ``onset`` (0 to 1 at each frame):
    ``"1 + 0.04*bass"`` (generator/animate/expressions.py).

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
        audio: a sound file (or a video with sound) whose features the expressions follow
            and whose sound the video gets (None: a restyled video's own sound, if any).
    """

    zoom: str = "1.0"
    angle: str = "0"
    translate_x: str = "0"
    translate_y: str = "0"
    smooth: bool = False
    border: str = "reflect"
    audio: str | None = None

    def __post_init__(self) -> None:
        ensure(self.border in BORDERS, f"border must be one of {', '.join(BORDERS)}, not {self.border!r}.")


@dataclass(frozen=True)
class RestyleConfig:
    """Video restyle: each input frame stylised by the prompts.

    Attributes:
        video_init: a video file or a folder of frames (None: no restyle).
        every: take every K-th input frame (the output's frame rate is the input's divided by K).
        blend: how much of the previous output frame (moved by the animation's motion) is mixed
            into each input frame (0..1); used with ``flow`` off.
        flow: how the content of the input video is followed: ``dis`` or ``farneback`` (OpenCV's
            optical flow; each frame then starts from the previous output warped by the
            input's flow where that holds, and from the input frame where it was hidden), or
            ``off`` (each frame starts from its input frame, with ``blend``); ``raft``: the RAFT
            network ``flow_model`` instead of OpenCV.
        flow_model: the RAFT weights of ``flow`` ``raft``: ``raft_small``, ``raft_large`` or a file.
    """

    video_init: str | None = None
    every: int = 1
    blend: float = 0.0
    flow: str = "dis"
    flow_model: str = "raft_small"

    def __post_init__(self) -> None:
        ensure(self.every >= 1, f"every must be 1 or more, not {self.every}.")
        ensure(0 <= self.blend <= 1, f"blend must be between 0 and 1, not {self.blend}.")
        ensure(self.flow in (*FLOW_METHODS, OFF), f"flow must be one of {', '.join((*FLOW_METHODS, OFF))}, "
                                                  f"not {self.flow!r}.")


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
        flow_weight: weight of the temporal consistency loss: the MSE that holds each frame's
            pixels to the previous frame moved onto it (by the input's flow in a restyle with
            ``restyle.flow``, by the motion in an animation) where that holds (not occluded,
            not brought in from outside the frame); 0 turns it off.
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
    flow_weight: float = FLOW_WEIGHT
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
        ensure(self.flow_weight >= 0, f"flow_weight must be 0 (off) or more, not {self.flow_weight}.")
        ensure(1 <= self.interpolate <= 16, f"interpolate must be between 1 and 16, not {self.interpolate}.")
        ensure(self.video_length >= 0, f"video_length must be 0 (off) or a number of seconds, not {self.video_length}.")
