"""Device choice, precision, seeding and determinism.

One seed drives every random draw: Python's ``random``, NumPy, and each image's
:class:`SeedStreams` (an explicit generator, plus the states that torch's CPU and CUDA
default generators take while that image's cutouts are augmented by kornia). On the CPU the
same seed gives the same pixels, whether an image is made alone or in a batch. On CUDA that
holds only inside :func:`deterministic` (``--deterministic``): deterministic kernels (an
operation without one raises), attention by plain matrix products, no cuDNN autotuning; the
warping augmentations (affine, perspective, rotation, elastic, thin-plate, resized crop) have
no deterministic CUDA backward and are refused there. Other GPU runs with the same seed come
out close, not bitwise identical.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from generator.errors import ConfigError

logger = logging.getLogger(__name__)


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """``cuda`` when available, else the CPU with a warning; an explicit request is checked."""
    if requested is None or str(requested) == "auto":
        if torch.cuda.is_available():
            _prepare_cublas()
            return torch.device("cuda")
        logger.warning("no CUDA GPU found: running on the CPU, which is much slower")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {requested} was asked for but no CUDA GPU is available; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {requested} does not exist (this machine has {torch.cuda.device_count()} GPUs); "
                "pick another index."
            )
        _prepare_cublas()
    elif device.type != "cpu":
        raise ConfigError(f"device {requested} is not supported; use cpu or cuda.")
    return device


def _prepare_cublas() -> None:
    """cuBLAS gives deterministic results only with this workspace setting, read when CUDA
    starts; set it (unless the user did) when a run chooses CUDA, not at import."""
    if not torch.cuda.is_initialized():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")


def check_cublas_for_determinism() -> None:
    """cuBLAS reads its workspace setting when CUDA starts; a process that started CUDA before a
    deterministic run asked for it (a web server, a notebook) cannot have deterministic cuBLAS.

    Raises:
        ConfigError: CUDA is running without a deterministic workspace setting.
    """
    if torch.cuda.is_initialized() and os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in DETERMINISTIC_CUBLAS:
        raise ConfigError("--deterministic on CUDA needs CUBLAS_WORKSPACE_CONFIG=:4096:8 before CUDA starts, and this "
                          "process started CUDA without it; start it with that variable set, or leave "
                          "--deterministic out.")


def cuda_free_bytes(device: torch.device) -> int:
    """The GPU memory this process may still take on ``device``: the device's free memory,
    capped by this process's share (``torch.cuda.set_per_process_memory_fraction``, which a
    shared server or a fractional Ray GPU sets) less what its allocator has reserved already."""
    free, total = torch.cuda.mem_get_info(device)
    fraction = torch.cuda.get_per_process_memory_fraction(device)
    share = int(fraction * total) - torch.cuda.memory_reserved(device)
    return max(0, min(free, share))


def cuda_half_dtype(device: torch.device) -> torch.dtype:
    """The half precision a GPU runs natively: bf16 from compute capability 8.0 (Ampere) on,
    fp16 before (T4, V100, RTX 20xx emulate bf16 slowly). Asks the GPU in use, not cuda:0."""
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), where bf16 convolutions
    run about twice as fast as float32."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


@dataclass(frozen=True)
class Precision:
    """How each part of a model set computes (None: float32).

    Attributes:
        decoder: the autocast dtype of the VQGAN (or another convolutional network).
        clip: the autocast dtype of the CLIP models.
        clip_weights: the dtype CLIP's weights are kept in (None: float32). On the CPU CLIP
            runs in bf16 this way rather than under autocast, which would cast every weight
            on every call.
    """

    decoder: torch.dtype | None = None
    clip: torch.dtype | None = None
    clip_weights: torch.dtype | None = None

    @property
    def half(self) -> torch.dtype | None:
        """The reduced precision in use anywhere (fp16 needs loss scaling)."""
        return self.decoder or self.clip or self.clip_weights


def precision_for(device: torch.device, precision: str) -> Precision:
    """What ``precision`` (``auto``, ``fp32``, ``bf16``, ``fp16``) means on ``device``.

    ``auto`` is each GPU's native half precision (:func:`cuda_half_dtype`) everywhere on
    CUDA. On the CPU it is bf16 where the CPU has bf16 units (measured there: the VQGAN
    decoder's forward and backward 2.7x faster at 256 px, CLIP's 2x with bf16 weights) and
    float32 elsewhere; CLIP keeps bf16 weights instead of running under autocast, which was
    slower than float32. fp16 is for GPUs only.
    """
    if precision == "fp32":
        return Precision()
    if device.type == "cuda":
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) or cuda_half_dtype(device)
        return Precision(half, half)
    if precision == "fp16":
        logger.info("precision fp16 is for GPUs; using float32 on the CPU")
        return Precision()
    if precision == "bf16" or cpu_has_native_bf16():
        return Precision(decoder=torch.bfloat16, clip_weights=torch.bfloat16)
    return Precision()


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The one autocast dtype of a network run as a whole (a prior, an upscaler), or None.

    On CUDA as :func:`precision_for`; on the CPU float32 unless bf16 is asked for.
    """
    if precision == "fp32" or (device.type != "cuda" and precision != "bf16"):
        return None
    return precision_for(device, precision).decoder


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` for ``dtype``, or nothing when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def seed_everything(seed: int) -> None:
    """Seed Python's and NumPy's generators (the run's own draws use :class:`SeedStreams`)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)


@contextlib.contextmanager
def deterministic(device: torch.device, enabled: bool) -> Iterator[None]:
    """Bitwise-reproducible kernels on CUDA for the duration of a run, and the previous
    settings restored afterwards (so upscaling and other jobs of a web server keep the fast
    ones). Operations without a deterministic CUDA kernel then raise instead of warning."""
    if not (enabled and device.type == "cuda"):
        yield
        return
    check_cublas_for_determinism()
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    torch.use_deterministic_algorithms(True)
    try:
        # Attention through plain matrix products: the fused kernels' backward passes are
        # deterministic only in some versions and modes, and the attention here is small.
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


@dataclass
class SeedStreams:
    """The random streams of one image, so that it comes out the same alone or in a batch.

    ``generator`` (on the CPU) draws the initial latent and the crop geometry. kornia's
    augmentations and the cutout noise draw from torch's global generators; while this
    image's cutouts are made (:meth:`active`) those hold this image's own states, which are
    saved afterwards and the previous states restored.
    """

    seed: int
    device: torch.device
    generator: torch.Generator
    cpu_state: torch.Tensor
    device_state: torch.Tensor | None = None

    @classmethod
    def from_seed(cls, seed: int, device: torch.device) -> SeedStreams:
        """Fresh streams: each state is what ``torch.manual_seed(seed)`` would give."""
        device_state = torch.Generator(device).manual_seed(seed).get_state() if device.type == "cuda" else None
        return cls(seed, device, torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed).get_state(),
                   device_state)

    def snapshot(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Where every stream stands, for :meth:`restore` (to repeat draws exactly)."""
        return self.generator.get_state(), self.cpu_state.clone(), \
            None if self.device_state is None else self.device_state.clone()

    def restore(self, snapshot: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]) -> None:
        """Put every stream back where :meth:`snapshot` found it."""
        self.generator.set_state(snapshot[0])
        self.cpu_state, self.device_state = snapshot[1], snapshot[2]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make this image's states torch's global ones for the duration of the block."""
        cuda = self.device_state is not None
        saved_cpu = torch.get_rng_state()
        saved_device = torch.cuda.get_rng_state(self.device) if cuda else None
        torch.set_rng_state(self.cpu_state)
        if cuda:
            torch.cuda.set_rng_state(self.device_state, self.device)
        try:
            yield
        finally:
            self.cpu_state = torch.get_rng_state()
            torch.set_rng_state(saved_cpu)
            if cuda:
                self.device_state = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(saved_device, self.device)


def auto_size(device: torch.device) -> tuple[int, int]:
    """Default image size for a device: 512 on GPUs with 10 GB or more, 384 from 6 GB, else 256."""
    if device.type != "cuda":
        return (256, 256)
    total = torch.cuda.get_device_properties(device).total_memory
    if total >= 10 * 2**30:
        return (512, 512)
    if total >= 6 * 2**30:
        return (384, 384)
    return (256, 256)


def describe_device(device: torch.device) -> str:
    """``GPU cuda:0`` or ``the CPU``, for messages."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"GPU cuda:{index}"
    return "the CPU"


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an exception means the device ran out of memory (CUDA's own error, or the CPU
    allocator's RuntimeError)."""
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text)


def release_memory(device: torch.device) -> None:
    """Give cached blocks back after a failure, so what follows (keeping the latest image) fits."""
    if device.type == "cuda":
        torch.cuda.empty_cache()



_STARTED = time.monotonic()  # about when this process started (torch is imported first)
_interop_set = False


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on macOS and Windows
        return max(1, os.cpu_count() or 1)


def _load() -> float:
    """The one-minute load average (0 where there is none, on Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def _own_load() -> float:
    """This process's own part of the one-minute load average, from its CPU time: CPU seconds
    over at least a minute (a process started seconds ago has hardly weighed in yet)."""
    times = os.times()
    return (times.user + times.system) / max(time.monotonic() - _STARTED, 60.0)


THREADS_ENV = "GENERATOR_THREADS"
"""The thread count when ``--threads`` is not given (a fixed count keeps float results the same
from run to run whatever the load; the test suite sets it)."""


def _threads_from_env() -> int | None:
    """``$GENERATOR_THREADS`` as a count, or None when unset.

    Raises:
        ConfigError: it is not a whole number.
    """
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{THREADS_ENV} must be a whole number of threads (0: automatic), not {text!r}.") from None


def choose_threads(requested: int | None = None, *, workers: int = 1) -> int:
    """How many CPU threads torch should use in this process.

    The rule: an explicit ``requested`` count (1 or more; None: ``$GENERATOR_THREADS``) wins.
    Otherwise (none given, or 0) the free
    cores, ``usable - (load - own)`` rounded and at least 1, where ``usable`` is
    :func:`usable_cores`, ``load`` the one-minute load average and ``own`` this process's part
    of it, shared by the ``workers`` processes that run at once on this machine (each gets at
    least 1). Oversubscribing costs dearly: on a busy two-core machine a run took 66 s with
    torch's default threads and 1.5 s with one.

    Raises:
        ConfigError: ``requested`` is negative.
    """
    if requested is None:
        requested = _threads_from_env()
    if requested is not None and requested < 0:
        raise ConfigError(f"--threads must be 0 (automatic) or more, not {requested}.")
    if requested:
        return requested
    usable = usable_cores()
    others = max(0.0, _load() - _own_load())
    free = max(1, int(usable - others + 0.5))
    return max(1, free // max(1, workers))


def use_threads(requested: int | None = None, *, workers: int = 1) -> int:
    """Give torch :func:`choose_threads` CPU threads (and as many inter-op threads, once per
    process, where torch still allows it), log the choice and return it."""
    global _interop_set
    threads = choose_threads(requested, workers=workers)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if not _interop_set:
        _interop_set = True
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # inter-op work has already started in this process
            logger.debug("torch's inter-op threads are already running; left as they are")
    usable = usable_cores()
    how = "as asked" if requested or _threads_from_env() else f"{usable} usable cores, load {_load():.1f}, " \
        f"{workers} worker(s)"
    # said only when the machine is busy enough to matter; otherwise a detail
    level = logging.INFO if not requested and threads * workers < usable else logging.DEBUG
    logger.log(level, "using %d CPU thread%s (%s)", threads, "" if threads == 1 else "s", how)
    return threads
