"""Ray in tests: the module (None where it is not installed, which CI does not allow) and a
local two-CPU cluster as a module-scoped fixture (import ``local_ray`` into a test module)."""

from __future__ import annotations

import os

import pytest

try:
    import ray
except ImportError:  # CI installs the ray extra (make test), so there it must run
    if os.environ.get("CI") == "true":
        raise
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install .[ray])")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with two CPUs (and no GPU, also on a machine that has one), shut down whatever happens."""
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
