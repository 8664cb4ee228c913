"""Animations: zoom, pan and rotate videos with keyframes, prompts that change at frames,
video restyle, smooth output and resumable runs (``python -m generator animate``)."""
