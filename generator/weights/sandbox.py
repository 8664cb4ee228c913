"""Run :mod:`generator.weights.safe_copy` in a child process with hard limits, and turn how it
ended into one sentence.

The child gets no environment beyond what starting Python needs (no tokens or keys of the
parent), no standard input, no inherited file descriptors, its own session (so it and anything
it starts are killed together), and limits it sets on itself before it reads the file
(:class:`ReaderLimits`: private memory, CPU seconds, the size of the file it may write, open
files, no core file); the parent adds a wall-clock limit. A child stopped by a limit, or one
that crashes, becomes a :class:`CheckpointError` such as "x.ckpt needs more than 2.1 GB of
memory to read: it is damaged or hostile, so it was not loaded".
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from generator.errors import CheckpointError, UnsafeCheckpointError
from generator.weights.pickle_scan import shown
from generator.weights.safe_copy import DIGEST_PREFIX

logger = logging.getLogger(__name__)

MEMORY_ENV = "GENERATOR_READER_MEMORY_MB"
SECONDS_ENV = "GENERATOR_READER_SECONDS"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the generator package
_KEPT_ENV = ("PATH", "LD_LIBRARY_PATH", "SYSTEMROOT", "LANG", "LC_ALL")
_CHILD = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
          "from generator.weights.safe_copy import main; sys.exit(main())")
_HOSTILE = "it is damaged or hostile, so it was not loaded; use the model's file from its official source"


@dataclass(frozen=True)
class ReaderLimits:
    """What the child reading one pickled checkpoint may use.

    Attributes:
        memory_mb: private memory for Python and torch themselves (about 0.8 GB) and a small file ...
        memory_factor: ... plus this many times the file's size (its bytes, the parsed tensors, a copy).
        seconds: CPU seconds for a small file ...
        seconds_per_gb: ... plus this many per GB of file.
        wall_factor: the wall-clock limit is this many times the CPU limit (a busy machine).
    """

    memory_mb: int = 1536
    memory_factor: float = 3.0
    seconds: int = 30
    seconds_per_gb: int = 60
    wall_factor: float = 3.0

    @classmethod
    def from_env(cls) -> ReaderLimits:
        """The defaults, with ``$GENERATOR_READER_MEMORY_MB`` and ``$GENERATOR_READER_SECONDS``
        (positive integers) for the base memory and CPU seconds where set."""
        values = {}
        for env, name in ((MEMORY_ENV, "memory_mb"), (SECONDS_ENV, "seconds")):
            text = os.environ.get(env, "").strip()
            if text.isdigit() and int(text) > 0:
                values[name] = int(text)
        return cls(**values)

    def memory(self, size: int) -> int:
        """Bytes of private memory for a file of ``size`` bytes."""
        return int(self.memory_mb * 2**20 + self.memory_factor * size)

    def cpu(self, size: int) -> int:
        """CPU seconds for a file of ``size`` bytes."""
        return int(self.seconds + self.seconds_per_gb * size / 1e9)

    def wall(self, size: int) -> float:
        """Wall-clock seconds for a file of ``size`` bytes."""
        return self.wall_factor * self.cpu(size) + 10

    @staticmethod
    def write(size: int) -> int:
        """The largest copy the child may write (tensors never grow past twice the file)."""
        return 2 * size + 128 * 2**20


@dataclass(frozen=True)
class CopyOutcome:
    """How a child's attempt at a safe copy ended.

    Attributes:
        digest: the sha256 of the bytes it read (None if it did not get that far).
        error: why there is no copy (None: ``<copies>/<digest>.safetensors`` exists).
        lasting: the refusal comes from the file's bytes and these limits alone (not from a
            wall-clock limit that a less busy machine might not have hit), so it holds for
            every later load of the same bytes under limits no larger.
        limits: the memory and CPU seconds the child had, for a refusal by a limit.
    """

    digest: str | None
    error: CheckpointError | None = None
    lasting: bool = False
    limits: tuple[int, int] | None = None


def make_safe_copy(source: Path, copies: Path, limits: ReaderLimits | None = None) -> CopyOutcome:
    """Have a limited child write ``<copies>/<sha256>.safetensors`` for the pickled checkpoint
    ``source`` (unless that copy exists). Never raises for anything the file does: every
    refusal (:class:`UnsafeCheckpointError` for a pickle that tries to run code, a
    :class:`CheckpointError` sentence otherwise) comes back in the outcome."""
    limits = limits or ReaderLimits.from_env()
    size = source.stat().st_size
    job = {"source": os.path.abspath(source), "copies": os.path.abspath(copies), "memory": limits.memory(size),
           "cpu": limits.cpu(size), "write": limits.write(size)}
    env = {key: os.environ[key] for key in _KEPT_ENV if key in os.environ}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "0",
                "HOME": str(copies), "TMPDIR": str(copies)})
    command = [sys.executable, "-I", "-c", _CHILD, str(_PACKAGE_ROOT), json.dumps(job)]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=copies, env=env, close_fds=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=limits.wall(size))
    except subprocess.TimeoutExpired:
        _kill(process)
        return CopyOutcome(None, CheckpointError(f"{source.name} needs more than {limits.wall(size):.0f} s to read: "
                                                 f"{_HOSTILE}."))
    finally:
        _kill(process)
    answer = _last_json(out)
    used = (limits.memory(size), limits.cpu(size))
    if answer is not None and "sha256" not in answer and isinstance(answer.get("message"), str):
        return CopyOutcome(None, CheckpointError(answer["message"]))  # it could not read the file at all
    if answer is None or "sha256" not in answer:
        stopped = _ended(source.name, process.returncode, err.decode("utf-8", "replace"), limits, size)
        digest = _digest_line(err)
        return CopyOutcome(digest, stopped, lasting=digest is not None and _by_limit(process.returncode), limits=used)
    digest = str(answer["sha256"])
    if answer.get("ok"):
        return CopyOutcome(digest)
    if answer.get("error") == "MemoryError":
        return CopyOutcome(digest, CheckpointError(_memory_sentence(source.name, limits, size)), lasting=True,
                           limits=used)
    kind = UnsafeCheckpointError if answer.get("error") == "UnsafeCheckpointError" else CheckpointError
    return CopyOutcome(digest, kind(str(answer.get("message") or f"{source.name} could not be read.")), lasting=True)


def _digest_line(err: bytes) -> str | None:
    """The digest the child announces on stderr before it parses (so a child stopped by a limit
    still says which bytes it was reading)."""
    for line in err.decode("utf-8", "replace").splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line.removeprefix(DIGEST_PREFIX).strip() or None
    return None


def _by_limit(code: int | None) -> bool:
    """Whether the child was stopped by its CPU limit or ran out of memory (not the wall clock)."""
    return code in (-signal.SIGXCPU, -signal.SIGKILL)


def _kill(process: subprocess.Popen) -> None:
    """End the child and everything it started (its own session), if it still runs."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()


def _last_json(out: bytes) -> dict | None:
    lines = out.decode("utf-8", "replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _memory_sentence(name: str, limits: ReaderLimits, size: int) -> str:
    return f"{name} needs more than {limits.memory(size) / 1e9:.1f} GB of memory to read: {_HOSTILE}."


def _ended(name: str, code: int | None, stderr: str, limits: ReaderLimits, size: int) -> CheckpointError:
    """The sentence for a child that ended without an answer: stopped by a limit or crashed."""
    logger.debug("the checkpoint reader for %s ended with %s: %s", name, code, stderr[-2000:])
    code = code or 0
    if code in (-signal.SIGXCPU, -signal.SIGKILL) and "MemoryError" not in stderr:
        if code == -signal.SIGXCPU:
            return CheckpointError(f"{name} needs more than {limits.cpu(size)} s of processing to read: {_HOSTILE}.")
        return CheckpointError(_memory_sentence(name, limits, size))  # the kernel's out-of-memory killer
    if code == -signal.SIGXFSZ:
        return CheckpointError(f"{name} would make a copy far larger than itself: {_HOSTILE}.")
    if "MemoryError" in stderr or "can't allocate memory" in stderr:
        return CheckpointError(_memory_sentence(name, limits, size))
    if code < 0:
        return CheckpointError(f"{name} crashed the process reading it ({signal.Signals(-code).name}): {_HOSTILE}.")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = shown(lines[-1], 120) if lines else f"exit status {code}"
    return CheckpointError(f"{name} could not be read ({reason}); it is damaged or not a checkpoint, so it was not "
                           "loaded; download it again.")
