"""Jobs files: prompts, JSONL and CSV over the command's defaults, with one-sentence errors
that name the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.batch.jobs import read_jobs
from generator.cli.batch import build_parser
from generator.errors import ConfigError, InputError
from generator.text_to_image.cli import settings_from_args


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_prompts_file_skips_blanks_and_comments_and_numbers_jobs_by_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.txt", "# title\n\na cat\n  # indented comment\nsea | waves:0.5\n")
    jobs = read_jobs(path, {"seed": 10, "steps": 7}, seeds=2)
    assert [(j.id, j.config.prompts, j.config.seed, j.config.steps) for j in jobs] == [
        ("3.0", "a cat", 10, 7), ("3.1", "a cat", 11, 7), ("5.0", "sea | waves:0.5", 10, 7),
        ("5.1", "sea | waves:0.5", 11, 7)]
    assert jobs[0].source == "p.txt line 3"


def test_jsonl_keys_override_the_defaults_by_leaf_or_nested_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "j.jsonl", '{"prompt": "a cat", "seed": 3, "steps": 200, "cutn": 8}\n'
                                       '{"prompts": "a dog", "cutouts": {"cut_pow": 2}, "init_image": "x.png"}\n')
    first, second = read_jobs(path, {"steps": 5, "cutouts": {"cutn": 4, "cut_pow": 1.5}, "seed": 1})
    assert (first.config.steps, first.config.seed, first.config.cutouts.cutn, first.config.cutouts.cut_pow) == \
        (200, 3, 8, 1.5)
    assert (second.config.steps, second.config.seed, second.config.cutouts.cutn, second.config.cutouts.cut_pow) == \
        (5, 1, 4, 2.0)
    assert second.config.init.init == "image"  # init_image implies it, as the flag does


def test_csv_cells_are_typed_by_their_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.csv", "prompt,seed,size,augments,lr,deterministic,steps\n"
                                     '"a cat, sleeping",4,64x48,jitter flip,0.05,true,\n'
                                     "a dog,,32 32,,,,9\n")
    first, second = read_jobs(path, {"steps": 3})
    assert first.config.prompts == "a cat, sleeping" and first.config.seed == 4
    assert first.config.size == (64, 48) and first.config.cutouts.augments == ("jitter", "flip")
    assert first.config.optim.lr == 0.05 and first.config.deterministic and first.config.steps == 3
    assert second.config.size == (32, 32) and second.config.steps == 9 and second.config.seed is not None


@pytest.mark.parametrize(("name", "text", "message"), [
    ("j.jsonl", '{"prompt": "a cat"}\n{"prompt": "a dog", "colour": "red"}\n',
     "j.jsonl line 2: unknown config key 'colour'; use prompt or a key of `python -m generator presets default` "
     "(such as seed, steps, size, cutn)."),
    ("c.csv", "prompt,colour\na cat,red\n",
     "c.csv line 1: unknown config key 'colour'; use prompt or a key of `python -m generator presets default` "
     "(such as seed, steps, size, cutn)."),
    ("j.jsonl", '{"prompt": "a cat", "steps": 0}\n',
     "j.jsonl line 1: steps must be between 1 and 100000, not 0."),
    ("j.jsonl", '{"prompt": "a cat"\n', None),
    ("c.csv", "prompt,seed\na cat,three\n", "c.csv line 2: seed 'three' is not a valid value; see "
     "`python -m generator --help` for what it takes."),
    ("j.jsonl", '{"seed": 3}\n', "j.jsonl line 1 has no prompt; give a prompt (or image or noise prompts) on every "
     "line."),
])
def test_bad_lines_are_one_sentence_naming_the_line(tmp_path: Path, name: str, text: str, message: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        read_jobs(_write(tmp_path, name, text))
    if message is None:
        assert str(caught.value).startswith("j.jsonl line 1 is not valid JSON (")
    else:
        assert str(caught.value) == message


def test_an_empty_or_missing_jobs_file_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holds no job"):
        read_jobs(_write(tmp_path, "p.txt", "# nothing\n\n"))
    with pytest.raises(InputError, match="does not exist"):
        read_jobs(tmp_path / "missing.txt")


def test_flags_and_the_preset_are_the_jobs_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "j.jsonl", '{"prompt": "a cat"}\n{"prompt": "a dog", "cutn": 3}\n')
    args = build_parser("batch").parse_args([str(path), "--preset", "fast", "--cutn", "5", "--seed", "8"])
    first, second = read_jobs(path, settings_from_args(args))
    fast = settings_from_args(build_parser("batch").parse_args([str(path), "--preset", "fast"]))
    assert first.config.steps == fast["steps"] != 300  # from the preset
    assert (first.config.cutouts.cutn, second.config.cutouts.cutn) == (5, 3)  # flag, then the job's own key
    assert first.config.seed == second.config.seed == 8


def test_fingerprints_follow_what_was_asked(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.txt", "a cat\n")
    (random_seed,) = read_jobs(path)
    (again,) = read_jobs(path, seed_of=lambda job: 1234)
    assert random_seed.fingerprint == again.fingerprint and again.config.seed == 1234
    (other,) = read_jobs(path, {"steps": 9})
    assert other.fingerprint != random_seed.fingerprint
