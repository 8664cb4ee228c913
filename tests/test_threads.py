"""CPU threads: the cores this process may use, less what other processes load, shared by the
workers that run at once; an explicit --threads wins and reaches torch."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from generator import devices
from generator.cli.main import main
from generator.devices import choose_threads, use_threads
from generator.errors import ConfigError


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """Pretend to be a machine with ``cores`` usable cores and a one-minute ``load`` of which
    ``own`` is this process's."""

    def set_machine(cores: int, load: float, own: float = 0.0, *, affinity: bool = True) -> None:
        monkeypatch.delenv("GENERATOR_THREADS", raising=False)  # the suite pins it; here the rule decides
        if affinity:
            monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
        else:
            monkeypatch.delattr(devices.os, "sched_getaffinity", raising=False)
        monkeypatch.setattr(devices.os, "cpu_count", lambda: cores)
        monkeypatch.setattr(devices.os, "getloadavg", lambda: (load, load, load))
        monkeypatch.setattr(devices, "_own_load", lambda: own)

    return set_machine


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """Put torch's thread count back as it was."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_a_busy_two_core_machine_gets_one_thread(machine) -> None:
    machine(2, load=2.0)  # another process keeps both cores busy
    assert choose_threads(None) == 1
    machine(2, load=1.0)  # another keeps one busy
    assert choose_threads(None) == 1


def test_an_idle_machine_gets_every_usable_core(machine) -> None:
    machine(8, load=0.0)
    assert choose_threads(None) == 8
    assert choose_threads(0) == 8  # 0 means automatic too
    machine(8, load=0.3)  # background noise does not cost a core
    assert choose_threads(None) == 8


def test_this_process_own_load_is_not_counted_as_others(machine) -> None:
    machine(4, load=3.0, own=2.0)  # one core's worth from other processes
    assert choose_threads(None) == 3


def test_workers_on_one_machine_share_the_free_cores(machine) -> None:
    machine(8, load=0.0)
    assert choose_threads(None, workers=2) == 4
    machine(8, load=2.0)
    assert choose_threads(None, workers=2) == 3
    machine(2, load=0.0)
    assert choose_threads(None, workers=4) == 1  # never below 1


def test_the_affinity_counts_not_the_machine(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    machine(8, load=0.0)
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert choose_threads(None) == 2
    machine(6, load=0.0, affinity=False)  # macOS, Windows: the machine's count
    assert choose_threads(None) == 6


def test_an_explicit_count_wins_and_is_never_below_one(machine) -> None:
    machine(2, load=4.0)
    assert choose_threads(3) == 3
    assert choose_threads(1, workers=8) == 1
    machine(1, load=50.0)
    assert choose_threads(None) == 1
    with pytest.raises(ConfigError, match="--threads"):
        choose_threads(-1)


def test_use_threads_sets_torch_and_logs_the_choice(machine, torch_threads, caplog: pytest.LogCaptureFixture) -> None:
    machine(8, load=6.0)
    with caplog.at_level(logging.INFO, logger="generator.devices"):
        assert use_threads(None) == 2
    assert torch.get_num_threads() == 2
    assert "using 2 CPU threads" in caplog.text


def test_the_threads_flag_reaches_torch(tiny_files, tmp_path: Path, machine, torch_threads) -> None:
    machine(8, load=0.0)
    args = ["city", *tiny_files.cli_args(), "--size", "32", "32", "--cutn", "4", "--steps", "2", "--device", "cpu",
            "--out", str(tmp_path)]
    assert main([*args, "--threads", "3"]) == 0
    assert torch.get_num_threads() == 3
    machine(2, load=2.0)
    assert main(args) == 0  # automatic
    assert torch.get_num_threads() == 1


def test_a_negative_threads_flag_is_one_error_line(capsys: pytest.CaptureFixture, torch_threads) -> None:
    assert main(["city", "--threads", "-2"]) == 1
    assert "--threads must be 0 (automatic) or more" in capsys.readouterr().err


def test_generator_threads_in_the_environment_is_the_default_count(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    machine(8, load=0.0)
    monkeypatch.setenv("GENERATOR_THREADS", "3")
    assert choose_threads(None) == 3 and choose_threads(5) == 5  # a flag still wins
    monkeypatch.setenv("GENERATOR_THREADS", "0")
    assert choose_threads(None) == 8  # 0: automatic
    monkeypatch.setenv("GENERATOR_THREADS", "many")
    with pytest.raises(ConfigError, match="GENERATOR_THREADS must be a whole number of threads"):
        choose_threads(None)
