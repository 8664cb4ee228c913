"""Errors about a file a web user named never quote that file's content."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.decoder.loader import load_vqgan, read_yaml
from generator.errors import ConfigError
from generator.sample.loader import load_prior
from tests.factories import save_tiny_vqgan
from tests.prior_factories import save_tiny_prior

README = """# VQGAN+CLIP studio

Private notes: the password is hunter2
  - indented: item: with: colons
"""


@pytest.mark.parametrize("text, where", [
    (README, "line 4, column 13"),
    ("model: [unclosed\nsecret: hunter2\n", "line 2, column 7"),
    ("\tsecret: hunter2\n", "line 1, column 1"),
])
def test_a_yaml_syntax_error_names_the_file_line_and_column_only(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "README.md"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    assert str(caught.value) == (f"README.md is not a readable YAML file (a syntax error at {where}); give the "
                                 "model's .yaml, the one that came with its checkpoint.")
    assert "hunter2" not in str(caught.value) and str(tmp_path) not in str(caught.value)


def test_loaders_pass_the_sentence_on(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    ckpt, _, _ = save_tiny_vqgan(tmp_path)
    prior = save_tiny_prior(tmp_path / "prior", "sos")
    for load in (lambda: load_vqgan(ckpt, readme), lambda: load_prior(prior.checkpoint, readme)):
        with pytest.raises(ConfigError, match=r"^README\.md is not a readable YAML file \(a syntax error at line 4"):
            load()


@pytest.mark.parametrize("text", ["model: hunter2\n", "- hunter2\n",
                                  "model:\n  params: hunter2\n"])
def test_yaml_that_is_no_model_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "notes.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    assert str(caught.value) == ("notes.yaml does not hold a model config; give the model's .yaml, the one that came "
                                 "with its checkpoint.")


def test_binary_files_and_folders(tmp_path: Path) -> None:
    binary = tmp_path / "model.ckpt"
    binary.write_bytes(b"\x80\x02secret\xff\xfe")
    with pytest.raises(ConfigError, match=r"^model\.ckpt is not a readable YAML file \(it is not UTF-8 text\)"):
        read_yaml(binary)
    with pytest.raises(ConfigError, match="is a folder, not a config file"):
        read_yaml(tmp_path)
