"""``--batch-size``: images optimised together equal the same jobs made one at a time.

The stated tolerance (README, ``BatchRun``): on the CPU, at most 2 of 255 per pixel channel
and a mean difference under 0.05 of a level; batching changes only the float rounding of the
batched convolutions and matrix products, never a random draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generator.batch.jobs import parse_jobs
from generator.batch.work import group_jobs
from generator.cli.main import main
from generator.errors import ConfigError
from generator.events import Done, Preview
from generator.text_to_image.pipeline import ALL
from tests.batch.helpers import lines, pixels
from tests.factories import tiny_run_config

MAX_DIFF, MEAN_DIFF = 2, 0.05


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    difference = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(difference.max()) <= MAX_DIFF and float(difference.mean()) <= MEAN_DIFF


def test_batch_size_four_gives_the_images_of_batch_size_one(tiny_files, tiny_pipeline, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a red cat", "lr": 0.2}\n{"prompt": "sea at dawn | waves:0.5"}\n'
                    '{"prompt": "city at night", "init_weight": 0.5, "tv_weight": 0.1}\n'
                    '{"prompt": "a green forest", "seed": 40}\n')
    made = {}
    for size in ("1", "4"):
        out = tmp_path / f"b{size}"
        args = ["batch", str(jobs), *tiny_files.cli_args(), "--size", "64", "48", "--steps", "14", "--cutn", "6",
                "--precision", "fp32", "--seed", "9", "--seeds", "2", "--batch-size", size, "--out", str(out)]
        assert main(args, make_pipeline=lambda *a, **k: tiny_pipeline) == 0
        records = lines(out)
        assert {r["timings"]["batch_size"] if "batch_size" in r["timings"] else 1.0 for r in records} == {float(size)}
        made[size] = {r["id"]: (r["seed"], pixels(out / r["folder"] / "final.png")) for r in records}
    assert made["1"].keys() == made["4"].keys() and len(made["1"]) == 8
    for job_id, (seed, alone) in made["1"].items():
        together_seed, together = made["4"][job_id]
        assert seed == together_seed
        assert _close(alone, together), job_id
    # the images differ from each other, so the comparison above compares something
    assert not np.array_equal(made["1"]["1.0"][1], made["1"]["1.1"][1])


def test_run_batch_matches_each_run_alone_frame_by_frame(tiny_files, tiny_pipeline) -> None:
    configs = [tiny_run_config(tiny_files, prompts=prompt, seed=seed, steps=12, size=[48, 32],
                               optim={"lr": lr}, output={"save_every": 4})
               for prompt, seed, lr in (("a red cat", 1, 0.1), ("sea", 2, 0.3), ("a red cat", 3, 0.05))]
    batch = tiny_pipeline.run_batch(configs)
    frames: dict[int, list] = {0: [], 1: [], 2: []}
    finals = {}
    for index, event in batch:
        assert index in (ALL, 0, 1, 2)
        if isinstance(event, Preview):
            frames[index].append((event.step, np.asarray(event.image)))
        elif isinstance(event, Done):
            finals[index] = event
    for index, config in enumerate(configs):
        run = tiny_pipeline.run(config)
        alone = [(e.step, np.asarray(e.image)) for e in run if isinstance(e, Preview)]
        assert [s for s, _ in frames[index]] == [s for s, _ in alone] == [4, 8, 12]
        assert all(_close(a, b) for (_, a), (_, b) in zip(frames[index], alone, strict=True))
        done = finals[index]
        assert done.seed == config.seed and done.config["optim"]["lr"] == config.optim.lr
        assert batch.states[index].step == 12
        assert _close(np.asarray(done.images[0]), np.asarray(tiny_pipeline(config).images[0]))


def test_only_jobs_that_can_share_a_batch_are_grouped(tiny_files) -> None:
    models = tiny_run_config(tiny_files).to_dict()["models"]
    jobs = parse_jobs([{"prompt": "a", "size": [32, 32]}, {"prompt": "b", "size": [48, 32]},
                       {"prompt": "c", "size": [32, 32], "lr": 0.3}, {"prompt": "d", "size": [32, 32], "steps": 7},
                       {"prompt": "e", "size": [32, 32], "seed": 5}], {"models": models, "steps": 4})
    groups = group_jobs(jobs, batch_size=2)
    assert [[job.config.prompts for job in group] for group in groups] == [["a", "c"], ["b"], ["d"], ["e"]]
    assert [len(g) for g in group_jobs(jobs, batch_size=1)] == [1] * 5


def test_run_batch_refuses_configs_that_cannot_share_a_batch(tiny_files, tiny_pipeline) -> None:
    with pytest.raises(ConfigError, match="cannot be optimised together"):
        tiny_pipeline.run_batch([tiny_run_config(tiny_files), tiny_run_config(tiny_files, size=[48, 32])])
