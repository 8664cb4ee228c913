"""``python -m generator batch``: prompts files times seeds, failures, resuming, and ``-n``."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pytest

from generator.cli.main import main
from generator.config import GenerationConfig
from generator.io.outputs import CONFIG_KEY, read_png_text
from tests.batch.helpers import FAST, batch_args, lines, pixels, run_folders

PROMPTS = ["a red cat", "a blue dog", "sea at dawn", "city at night", "a green forest"]


def _prompts_file(tmp_path: Path, prompts: list[str]) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("# my prompts\n\n" + "\n".join(prompts) + "\n")
    return path


class _Counting:
    """The tiny pipeline, counting the runs it starts and optionally interrupted at one of them."""

    def __init__(self, pipeline, interrupt_at: int | None = None):
        self.pipeline, self.interrupt_at, self.runs, self.loads = pipeline, interrupt_at, [], 0

    def make(self, models, **options):
        self.loads += 1
        return self

    def run(self, config):
        self.runs.append(config.seed)
        if self.interrupt_at is not None and len(self.runs) == self.interrupt_at:
            raise KeyboardInterrupt
        return self.pipeline.run(config)

    def __getattr__(self, name):
        return getattr(self.pipeline, name)


def test_a_prompts_file_times_two_seeds_gives_ten_runs_equal_to_single_runs(tiny_files, tiny_pipeline,
                                                                           tmp_path: Path) -> None:
    jobs, out = _prompts_file(tmp_path, PROMPTS), tmp_path / "batch"
    counting = _Counting(tiny_pipeline)
    assert main(batch_args(tiny_files, jobs, out, "--seeds", "2", "--seed", "11"), make_pipeline=counting.make) == 0
    assert counting.loads == 1 and len(counting.runs) == 10  # the models are loaded once for all ten jobs
    records = lines(out)
    assert len(records) == 10 and all(r["status"] == "done" and r["error"] is None for r in records)
    assert sorted(r["id"] for r in records) == sorted(f"{line}.{k}" for line in range(3, 8) for k in (0, 1))
    assert sorted((r["prompt"], r["seed"]) for r in records) == sorted((p, s) for p in PROMPTS for s in (11, 12))
    folders = run_folders(out)
    assert len(folders) == 10 and sorted(r["folder"] for r in records) == [f.name for f in folders]
    single = tmp_path / "single"  # the files one run of the main command writes
    assert main([PROMPTS[0], "--seed", "11", *tiny_files.cli_args(), *FAST, "--out", str(single)],
                make_pipeline=counting.make) == 0
    (single_folder,) = run_folders(single)
    for record in records:
        folder = out / record["folder"]
        # the same files as a single run, with the job's config embedded
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in single_folder.iterdir())
        embedded = json.loads(read_png_text(folder / "final.png")[CONFIG_KEY])
        assert embedded["prompts"] == record["prompt"] and embedded["seed"] == record["seed"]
        assert json.loads((folder / "run.json").read_text())["status"] == "done"
        # and the same pixels as that job run alone
        alone = tiny_pipeline(GenerationConfig.from_dict(embedded)).images[0]
        assert np.array_equal(pixels(folder / "final.png"), np.asarray(alone.convert("RGB")).astype(np.int16))
    assert (out / "index.png").is_file()
    page = (out / "index.html").read_text()
    assert all(prompt in page for prompt in PROMPTS) and all(f'{r["folder"]}/final.png' in page for r in records)
    assert "10 done, 0 failed" in page


def test_a_bad_prompt_is_recorded_as_failed_and_the_others_succeed(tiny_files, tiny_pipeline, tmp_path: Path,
                                                                   capsys) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a red cat", "seed": 1}\n{"prompt": "sea:0", "seed": 2}\n'
                    '{"prompt": "city at night", "seed": 3, "steps": 2}\n')
    out = tmp_path / "batch"
    code = main(batch_args(tiny_files, jobs, out, "--batch-size", "4"), make_pipeline=lambda *a, **k: tiny_pipeline)
    assert code == 1
    records = {r["id"]: r for r in lines(out)}
    assert [records[i]["status"] for i in ("1.0", "2.0", "3.0")] == ["done", "failed", "done"]
    sentence = ("the prompt 'sea' has weight 0, which has no effect; use a non-zero weight (negative pushes away) "
                "or remove it.")
    assert records["2.0"]["error"] == sentence and records["2.0"]["folder"] is None
    assert records["3.0"]["config"]["steps"] == 2  # the job's own key over the flag
    assert len(run_folders(out)) == 2
    assert sentence in capsys.readouterr().err
    assert html.escape(sentence) in (out / "index.html").read_text()


def test_an_interrupted_batch_resumes_without_making_finished_jobs_again(tiny_files, tiny_pipeline,
                                                                         tmp_path: Path) -> None:
    jobs, out = _prompts_file(tmp_path, PROMPTS[:3] + ["sea:0"]), tmp_path / "batch"
    first = _Counting(tiny_pipeline, interrupt_at=3)
    assert main(batch_args(tiny_files, jobs, out, "--seed", "5"), make_pipeline=first.make) == 130
    assert [r["id"] for r in lines(out)] == ["6.0", "3.0", "4.0"]  # the bad job failed at once, two finished
    finished = {p.name for p in run_folders(out)}

    second = _Counting(tiny_pipeline)
    assert main(batch_args(tiny_files, jobs, out, "--seed", "5"), make_pipeline=second.make) == 1
    assert second.runs == [5]  # only job 5.0: the failed 6.0 is skipped
    records = lines(out)
    assert [r["id"] for r in records] == ["6.0", "3.0", "4.0", "5.0"]  # each written once
    assert [r["status"] for r in records] == ["failed", "done", "done", "done"]
    assert "has weight 0" in records[0]["error"]
    assert finished < {p.name for p in run_folders(out)} and len(run_folders(out)) == 3

    third = _Counting(tiny_pipeline)  # done and failed jobs are skipped...
    assert main(batch_args(tiny_files, jobs, out, "--seed", "5"), make_pipeline=third.make) == 1
    assert third.runs == [] and len(lines(out)) == 4
    retry = _Counting(tiny_pipeline)  # ...until --retry-failed, which checks the bad job again (no model needed)
    assert main(batch_args(tiny_files, jobs, out, "--seed", "5", "--retry-failed"), make_pipeline=retry.make) == 1
    assert retry.runs == [] and retry.loads == 0
    assert [r["id"] for r in lines(out)] == ["6.0", "3.0", "4.0", "5.0", "6.0"]


def test_random_seeds_are_recorded_and_kept_when_the_batch_resumes(tiny_files, tiny_pipeline,
                                                                    tmp_path: Path) -> None:
    jobs, out = _prompts_file(tmp_path, PROMPTS[:1]), tmp_path / "batch"
    first = _Counting(tiny_pipeline, interrupt_at=2)
    assert main(batch_args(tiny_files, jobs, out, "--seeds", "3"), make_pipeline=first.make) == 130
    (done,) = lines(out)
    second = _Counting(tiny_pipeline)
    assert main(batch_args(tiny_files, jobs, out, "--seeds", "3"), make_pipeline=second.make) == 0
    records = lines(out)
    assert records[0] == done and [r["id"] for r in records] == ["3.0", "3.1", "3.2"]
    assert len({r["seed"] for r in records}) == 3 and done["seed"] not in second.runs


def test_main_command_makes_n_images_with_consecutive_seeds(tiny_files, tiny_pipeline, tmp_path: Path,
                                                            capsys) -> None:
    counting = _Counting(tiny_pipeline)
    code = main(["city at night", "-n", "3", "--seed", "7", *tiny_files.cli_args(), *FAST, "--out", str(tmp_path)],
                make_pipeline=counting.make)
    assert code == 0 and counting.loads == 1 and counting.runs == [7, 8, 9]
    folders = run_folders(tmp_path)
    assert [f.name.rsplit("-", 1)[-1] for f in folders] == ["7", "8", "9"]
    assert capsys.readouterr().out.split() == [str(f / "final.png") for f in folders]


@pytest.mark.parametrize("count", ["0", "-2"])
def test_nonsense_counts_are_refused_in_one_sentence(tiny_files, tmp_path: Path, capsys, count: str) -> None:
    jobs = _prompts_file(tmp_path, PROMPTS[:1])
    assert main(batch_args(tiny_files, jobs, tmp_path / "b", "--seeds", count)) == 1
    assert capsys.readouterr().err.strip() == f"error: --seeds must be 1 or more, not {count}."


def test_a_result_that_comes_back_twice_is_written_once(tiny_files, tiny_pipeline, tmp_path: Path) -> None:
    from generator.batch.driver import LocalExecutor, run_batch
    from generator.batch.jobs import parse_jobs
    from generator.batch.work import Worker

    class Twice(LocalExecutor):  # as when a worker dies after sending its result and its job is made again
        def results(self, groups):
            for result in super().results(groups):
                yield result
                yield result

    defaults = {"steps": 2, "size": [32, 32], "precision": "fp32", "cutouts": {"cutn": 2},
                "models": GenerationConfig(models=tiny_files.models()).to_dict()["models"]}
    jobs = parse_jobs([{"prompt": "a cat", "seed": 1}, {"prompt": "a dog", "seed": 2}], defaults)
    summary = run_batch(jobs, tmp_path, Twice(Worker.around(tiny_pipeline)))
    assert summary.done == 2 and summary.made == 2
    assert [r["id"] for r in lines(tmp_path)] == ["1.0", "2.0"] and len(run_folders(tmp_path)) == 2
