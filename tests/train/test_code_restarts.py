"""Dead-code restarts (generator/train/code_restarts.py): codes the encoder never picked in a
window move onto its outputs, which keeps a from-scratch codebook in use."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from generator.train.code_restarts import DeadCodeRestarts
from generator.train.vqgan_train import VQGANTraining
from tests.factories import save_tiny_vqgan
from tests.train.vqgan_helpers import settings, write_images


def test_only_the_codes_never_picked_move_onto_encoder_outputs_and_lose_their_moments() -> None:
    codebook = torch.nn.Parameter(torch.arange(12.0).reshape(6, 2))  # (6 codes, 2)
    optimizer = torch.optim.Adam([codebook], lr=0.1)
    codebook.grad = torch.ones_like(codebook)
    optimizer.step()
    before = codebook.detach().clone()
    restarts = DeadCodeRestarts(6, every=2, seed=3, device=torch.device("cpu"))
    restarts.observe(torch.tensor([[0, 2], [2, 5]]))
    restarts.observe(torch.tensor([0, 0]))
    assert not restarts.due(1) and restarts.due(2)
    candidates = torch.tensor([[100.0, 101.0], [200.0, 201.0], [300.0, 301.0]]).T.reshape(1, 2, 1, 3)  # (1, 2, 1, 3)

    moved = restarts.restart(codebook, candidates, optimizer, step=2)

    assert moved == 3
    kept, dead = [0, 2, 5], [1, 3, 4]
    assert torch.equal(codebook.detach()[kept], before[kept])
    rows = {tuple(row) for row in codebook.detach()[dead].tolist()}
    assert rows == {(100.0, 101.0), (200.0, 201.0), (300.0, 301.0)}  # three dead codes, three distinct outputs
    state = optimizer.state[codebook]
    assert torch.all(state["exp_avg"][dead] == 0) and torch.all(state["exp_avg_sq"][dead] == 0)
    assert torch.all(state["exp_avg"][kept] != 0)
    assert int(restarts.picked.sum()) == 0  # a new window
    restarts.observe(torch.tensor([0, 1, 2, 3, 4, 5]))
    assert restarts.restart(codebook, candidates, optimizer, step=4) == 0


def test_the_same_seed_and_step_draw_the_same_vectors_and_more_dead_codes_than_candidates_share_them() -> None:
    candidates = torch.randn(1, 4, 1, 2)  # two outputs of width 4
    results = []
    for _ in range(2):
        codebook = torch.nn.Parameter(torch.zeros(5, 4))
        restarts = DeadCodeRestarts(5, every=1, seed=7, device=torch.device("cpu"))
        assert restarts.restart(codebook, candidates, torch.optim.Adam([codebook]), step=1) == 5
        results.append(codebook.detach().clone())
    assert torch.equal(results[0], results[1])
    outputs = {tuple(row) for row in candidates.permute(0, 2, 3, 1).reshape(-1, 4).tolist()}
    assert {tuple(row) for row in results[0].tolist()} <= outputs


def test_restarts_keep_more_of_the_codebook_in_use_than_training_without(tmp_path: Path) -> None:
    images = write_images(tmp_path / "images")
    usage = {}
    for every in (0, 5):
        run = VQGANTraining.start(settings(images, tmp_path / f"out{every}", name=f"codes{every}", steps=40,
                                           restart_dead_codes=every))
        result = run.run()
        lines = [json.loads(line) for line in (result.run_folder / "metrics.jsonl").read_text().splitlines()]
        usage[every] = sum(line["codebook_usage"] for line in lines[-10:]) / 10
        restarted = [line.get("codes_restarted", 0) for line in lines]
        assert (sum(restarted) > 0) == (every > 0)
    assert usage[5] > 1.25 * usage[0], usage  # seed 0: 0.74 against 0.48


def test_runs_from_scratch_restart_every_100_steps_and_fine_tunes_never_by_default(tmp_path: Path) -> None:
    images = write_images(tmp_path / "images")
    scratch = VQGANTraining.start(settings(images, tmp_path / "out", name="scratch"))
    assert scratch.settings.restart_dead_codes == 100 and scratch.restarts.every == 100
    recorded = json.loads((scratch.run_folder / "config.json").read_text())
    assert recorded["settings"]["restart_dead_codes"] == 100
    checkpoint, _, _ = save_tiny_vqgan(tmp_path, name="base_vqgan")
    fine_tune = VQGANTraining.start(settings(images, tmp_path / "out", name="tuned", architecture=None,
                                             from_model=str(checkpoint)))
    assert fine_tune.settings.restart_dead_codes == 0 and not fine_tune.restarts.enabled
