"""Help and README say what the code does (issue 26, point 4): every command the main help
lists has help of its own; --change-prompt-every counts steps in text to image and frames in
animate; --init-latent continues a saved latent as the help says; the README names the torch
step of a manual install (the Makefile's own pin) and the run folder's latent.safetensors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from generator.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--size", "32", "32", "--cutn", "4", "--precision", "fp32"]


def _help(capsys, *command: str) -> str:
    """The help text of ``command`` as printed."""
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_every_listed_command_has_help_and_the_phrase_unit_is_the_commands_own(capsys) -> None:
    listing = _help(capsys).split("Other commands")[1]
    commands = re.findall(r"^ {2}([a-z][a-z-]+) {2,}\S", listing, re.MULTILINE)
    assert {"text-to-image", "animate", "batch", "edit", "grid", "sample", "upscale", "download"} <= set(commands)
    for command in commands:
        assert f"usage: python -m generator {command}" in " ".join(_help(capsys, command).split())
    assert "steps per ^-separated story phrase" in " ".join(_help(capsys).split())
    animate = " ".join(_help(capsys, "animate").split())
    assert "frames per ^-separated story phrase" in animate and "steps per ^-separated" not in animate


def test_init_latent_goes_on_from_a_runs_saved_latent(tiny_files, tmp_path: Path, capsys) -> None:
    assert main(["a lighthouse", "--seed", "3", "--steps", "2", *tiny_files.cli_args(), *FAST,
                 "--out", str(tmp_path / "a")]) == 0
    first = Path(capsys.readouterr().out.split()[-1]).parent
    assert (first / "latent.safetensors").is_file()
    assert main(["a lighthouse at night", "--init-latent", str(first), "--steps", "1", *tiny_files.cli_args(),
                 *FAST, "--out", str(tmp_path / "b")]) == 0
    second = Path(capsys.readouterr().out.split()[-1]).parent
    init = json.loads((second / "config.json").read_text())["init"]
    assert init["init"] == "latent" and Path(init["init_latent"]).resolve() == first.resolve()


def test_the_readme_tells_the_manual_install_and_the_run_folders_files() -> None:
    readme = (ROOT / "README.md").read_text()
    pin = re.search(r"TORCH_SPEC \?= (.+)", (ROOT / "Makefile").read_text())[1].strip()
    assert f"pip install {pin}" in readme  # the torch step, as the Makefile pins it
    assert "latent.safetensors" in readme.split("## Text to image")[1].split("##")[0]
    assert "share=True" not in readme


def test_upscale_precision_help_says_what_auto_does_on_a_cpu(capsys) -> None:
    """auto runs bf16 on CPUs with bf16 units too (tests/upscale/test_precision.py checks the code)."""
    text = " ".join(_help(capsys, "upscale").split())
    assert "bf16 on CPUs with bf16 units" in text and "fp16 on CUDA" in text
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "bf16 on CPUs that have bf16 units" in readme


def test_benchmark_commands_run_from_the_repository_root_as_written() -> None:
    """No machine's absolute paths in BENCHMARKS.md's commands (issue 26, point 9)."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    commands = [line for block in re.findall(r"```\n(.*?)```", text, re.DOTALL) for line in block.splitlines()]
    assert len(commands) > 10
    absolute = [line for line in commands if re.search(r"(?<![\w.:/])/(?:work|root|home|tmp|opt|Users|mnt)\b", line)]
    assert absolute == []
    for line in commands:
        for script in re.findall(r"python (bench/\w+\.py)", line):
            assert (ROOT / script).is_file(), script  # every script named is there, relative to the root
