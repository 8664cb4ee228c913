"""The grid tests run torch on one thread, as the batch tests do (tiny models gain nothing from two,
and on a busy two-core machine two threads per process spin against each other)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
