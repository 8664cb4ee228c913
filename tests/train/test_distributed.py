"""Distributed training with PyTorch's own launcher: ``torchrun`` with two CPU processes on gloo
trains the same VQGAN (before the discriminator starts, whose batch statistics are each
process's own) and the same prior as one process with the combined batch, and only the first
process writes files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from generator.decoder.loader import load_vqgan
from generator.sample.loader import load_prior
from generator.train.prior_training import init_gpt
from models.gpt import GPT
from tests.factories import save_tiny_vqgan
from tests.train.vqgan_helpers import write_architecture_yaml, write_images

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ["--size", "16", "--steps", "4", "--lr", "2e-3", "--seed", "5", "--precision", "fp32", "--device", "cpu",
         "--log-every", "1", "--disc-start", "1000", "--disc-layers", "2", "--disc-ndf", "8",
         "--perceptual-weight", "0", "--threads", "1", "--restart-dead-codes", "2"]


def _train(args: list[str], tmp: Path, *, processes: int, what: str = "vqgan") -> subprocess.CompletedProcess:
    env = {**os.environ, "GENERATOR_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] \
        if processes > 1 else [sys.executable]
    return subprocess.run([*launcher, "-m", "generator", "train", what, *args], cwd=tmp, env=env,
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
        assert done.stdout.strip().splitlines() == [str(tmp_path / "weights" / f"model{processes}.ckpt")]  # said once
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


def test_two_processes_train_the_prior_of_one_process_with_their_combined_batch(tmp_path: Path) -> None:
    images = write_images(tmp_path / "images", count=24)
    vqgan, vqgan_yaml, _ = save_tiny_vqgan(tmp_path, name="base_vqgan")
    flags = ["--vqgan", str(vqgan), "--vqgan-config", str(vqgan_yaml), "--data", str(images), "--size", "16",
             "--steps", "4", "--lr", "1e-3", "--seed", "3", "--precision", "fp32", "--device", "cpu", "--n-layer", "2",
             "--n-head", "2", "--n-embd", "32", "--val-every", "2", "--sample-every", "4", "--threads", "1"]
    runs = {}
    for processes, batch in ((1, 4), (2, 2)):
        out = tmp_path / f"prior{processes}"
        done = _train(["--batch-size", str(batch), "--name", f"prior{processes}", "--out", str(out), "--weights-dir",
                       str(tmp_path / "weights"), *flags], tmp_path, processes=processes, what="prior")
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stderr.count("trained prior: ") == 1  # said once, by the first process
        (run,) = out.glob("train-prior-*")  # one run folder, written by the first process only
        runs[processes] = run
    priors = [load_prior(next(runs[n].glob("*_transformer.ckpt"))).gpt for n in (1, 2)]
    one, two = (prior.state_dict() for prior in priors)
    assert one.keys() == two.keys()
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-5, rtol=1e-4), key
    start = init_gpt(GPT(priors[0].config), 3).state_dict()
    assert not torch.allclose(one["head.weight"], start["head.weight"])  # trained, not the initial weights
    metrics = {n: [json.loads(line) for line in (runs[n] / "metrics.jsonl").read_text().splitlines()] for n in (1, 2)}
    assert [m["step"] for m in metrics[2]] == [0, 1, 2, 3, 4]  # one line a step (and the start's validation)
    for first, second in zip(metrics[1], metrics[2], strict=True):  # the combined batch's training loss
        for key in ("train_loss", "val_loss"):
            assert (key in first) == (key in second) and abs(first.get(key, 0) - second.get(key, 0)) < 1e-4, key
    assert (runs[2] / "samples-000004.png").is_file() and json.loads((runs[2] / "run.json").read_text())["status"] \
        == "done"
