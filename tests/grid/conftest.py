"""The grid tests run torch on one thread, as the batch tests do (tiny models gain nothing from two,
and on a busy two-core machine two threads per process spin against each other)."""

from tests.batch.conftest import _one_torch_thread  # noqa: F401 - the same autouse fixture
