"""The ESRGAN stage: upscalers loaded through spandrel, run in seamless memory-bounded tiles."""
