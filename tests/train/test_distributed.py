"""Distributed training with PyTorch's own launcher: ``torchrun`` with two CPU processes on gloo
trains the same VQGAN as one process with the combined batch (before the discriminator starts,
whose batch statistics are each process's own), and only the first process writes files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from generator.decoder.loader import load_vqgan
from tests.train.vqgan_helpers import write_architecture_yaml, write_images

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ["--size", "16", "--steps", "4", "--lr", "2e-3", "--seed", "5", "--precision", "fp32", "--device", "cpu",
         "--log-every", "1", "--disc-start", "1000", "--disc-layers", "2", "--disc-ndf", "8",
         "--perceptual-weight", "0", "--threads", "1", "--restart-dead-codes", "2"]


def _train(args: list[str], tmp: Path, *, processes: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENERATOR_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] \
        if processes > 1 else [sys.executable]
    return subprocess.run([*launcher, "-m", "generator", "train", "vqgan", *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=600)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_vqgan(path).state_dict()  # through the project's loader, strictly


def test_two_processes_train_the_weights_of_one_process_with_their_combined_batch(tmp_path: Path) -> None:
    images = write_images(tmp_path / "images", count=16)
    model = write_architecture_yaml(tmp_path / "tiny.yaml")
    runs = {}
    for processes, batch in ((1, 4), (2, 2)):
        out = tmp_path / f"out{processes}"
        done = _train(["--data", str(images), "--model", str(model), "--batch-size", str(batch), "--name",
                       f"model{processes}", "--out", str(out), "--weights-dir", str(tmp_path / "weights"), *FLAGS],
                      tmp_path, processes=processes)
        assert done.returncode == 0, done.stderr[-3000:]
        (run,) = out.glob("train-vqgan-*")  # one run folder, written by the first process only
        runs[processes] = run
    one, two = (_weights(runs[n] / "last.ckpt") for n in (1, 2))
    assert one.keys() == two.keys()
    for key in one:
        if key.endswith(".k.bias"):  # inert (softmax ignores a shift of every key): its gradient is float noise,
            continue                 # which Adam scales up to a full step, so its value follows the summation order
        assert torch.allclose(one[key], two[key], atol=1e-5, rtol=1e-4), key
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    models = [load_vqgan(runs[n] / "last.ckpt") for n in (1, 2)]
    with torch.no_grad():
        decoded = [model.decode(model.quantize(model.encode(x))[0]) for model in models]
    assert torch.allclose(decoded[0], decoded[1], atol=1e-4)
    moved = _weights(runs[1] / "last.ckpt")["decoder.conv_out.weight"]
    assert not torch.allclose(moved, torch.zeros_like(moved))
    metrics = {n: [json.loads(line) for line in (runs[n] / "metrics.jsonl").read_text().splitlines()] for n in (1, 2)}
    assert [m["step"] for m in metrics[2]] == [1, 2, 3, 4]  # one line a step: the first process's
    for first, second in zip(metrics[1], metrics[2], strict=True):  # the logged losses are the combined batch's
        assert abs(first["l1"] - second["l1"]) < 1e-4
        assert first.get("codes_restarted") == second.get("codes_restarted")  # counted over both processes
    assert [m.get("codes_restarted", 0) > 0 for m in metrics[2]] == [False, True, False, True]
