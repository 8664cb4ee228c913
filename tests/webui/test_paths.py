"""What a web user may point the server at: everything on localhost, only the weights folder,
uploads and results when served to a network, with one refusal sentence that tells nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from generator.errors import InputError
from generator.io import fetch
from generator.webui.paths import PathPolicy, gradio_upload_dir, is_local_only

REFUSED = ("the VQGAN field takes a registry name, a file in the weights folder or an upload on this server; "
           "other server paths are refused.")


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    weights, uploads, outputs, private = (tmp_path / name for name in ("weights", "uploads", "outputs", "private"))
    for folder in (weights, uploads / "abc123", outputs / "run-1", private / "sub"):
        folder.mkdir(parents=True)
    (weights / "mine.ckpt").write_bytes(b"x")
    (uploads / "abc123" / "cat.png").write_bytes(b"x")
    (outputs / "run-1" / "final.png").write_bytes(b"x")
    (private / "secret.ckpt").write_bytes(b"x")
    (private / "notes.txt").write_text("not an image")
    (weights / "escape.ckpt").symlink_to(private / "secret.ckpt")
    (weights / "linked").symlink_to(private)
    return {"weights": weights, "uploads": uploads, "outputs": outputs, "private": private}


@pytest.fixture
def closed(tree: dict[str, Path]) -> PathPolicy:
    return PathPolicy(tree["weights"], (tree["uploads"], tree["outputs"]), open=False)


def _refusal(policy: PathPolicy, value: str, field: str = "VQGAN") -> str:
    with pytest.raises(InputError) as caught:
        policy.check(value, field)
    return str(caught.value)


def test_a_refused_path_gets_the_same_sentence_whatever_it_is(closed: PathPolicy, tree: dict[str, Path]) -> None:
    private = tree["private"]
    values = [str(private / "secret.ckpt"), str(private / "missing.ckpt"), str(private / "sub"),
              str(private / "notes.txt"), "/etc/passwd", "/etc", "/no/such/file", "~/.ssh/id_rsa", "relative.ckpt"]
    assert {_refusal(closed, value) for value in values} == {REFUSED}
    for value in values:  # the image field too: one sentence, naming no path
        with pytest.raises(InputError) as caught:
            closed.check_image(value, "init image")
        assert str(caught.value) == ("the init image field takes an upload, a result of this server or an http(s) "
                                     "address on the internet; other server paths are refused.")


def test_dot_dot_and_symlinks_out_of_the_weights_folder_are_refused(closed: PathPolicy, tree: dict[str, Path]) -> None:
    weights = tree["weights"]
    for value in (f"{weights}/../private/secret.ckpt", str(weights / "escape.ckpt"),
                  str(weights / "linked" / "secret.ckpt"), f"{weights}/../weights/../private/notes.txt",
                  str(weights) + "-evil/x.ckpt"):
        assert _refusal(closed, value) == REFUSED, value


def test_weights_files_registry_names_uploads_and_results_are_accepted(closed: PathPolicy,
                                                                       tree: dict[str, Path]) -> None:
    weights = tree["weights"]
    mine = str((weights / "mine.ckpt").resolve())
    assert closed.check(str(weights / "mine.ckpt"), "VQGAN") == mine
    assert closed.check(f"{weights}/sub/../mine.ckpt", "VQGAN") == mine  # resolved, so checked == loaded
    for name in ("vqgan_imagenet_f16_16384", "sflckr", "ffhq", "realesrgan_x4plus"):
        assert closed.check(name, "VQGAN") == name
    upload = tree["uploads"] / "abc123" / "cat.png"
    assert closed.check_image(str(upload), "init image") == str(upload.resolve())
    result = tree["outputs"] / "run-1" / "final.png"
    assert closed.check_image(str(result), "init image") == str(result.resolve())
    assert closed.check_image("https://example.com/cat.png", "init image") == "https://example.com/cat.png"
    assert closed.check("", "VQGAN") == "" and closed.check(None, "VQGAN") == ""


def test_image_prompts_keep_weights_and_urls_and_refuse_server_paths(closed: PathPolicy,
                                                                    tree: dict[str, Path]) -> None:
    upload = tree["uploads"] / "abc123" / "cat.png"
    checked = closed.check_image_prompts(f"{upload}:0.5 | https://example.com/a.png:2:-1")
    assert checked == f"{upload.resolve()}:0.5 | https://example.com/a.png:2:-1"
    for text in (f"{upload} | /etc/passwd:0.5", f"{tree['private'] / 'secret.ckpt'}", "/no/such.png:2"):
        with pytest.raises(InputError, match="^the image prompts field takes an upload"):
            closed.check_image_prompts(text)
    with pytest.raises(InputError, match="weight 0"):  # the grammar's own sentence
        closed.check_image_prompts(f"{upload}:0")


def test_clip_models_paths_are_checked_names_and_tags_are_not(closed: PathPolicy, tree: dict[str, Path]) -> None:
    mine = tree["weights"] / "mine.ckpt"
    assert closed.check_clip_models("ViT-B-32 openai 1\nViT-B-16 laion2b_s34b_b88k 0.5") == \
        "ViT-B-32 openai 1\nViT-B-16 laion2b_s34b_b88k 0.5"
    assert closed.check_clip_models(f"ViT-B-32 {mine} 1") == f"ViT-B-32 {mine.resolve()} 1"
    with pytest.raises(InputError, match="^the CLIP models field takes"):
        closed.check_clip_models("/etc/model.json none 1")


def test_an_open_policy_accepts_anything(tree: dict[str, Path]) -> None:
    policy = PathPolicy(tree["weights"], (), open=True)
    for value in ("/etc/passwd", str(tree["private"] / "secret.ckpt"), "../x.ckpt"):
        assert policy.check(value, "VQGAN") == value
        assert policy.check_image(value, "init image") == value
    assert policy.check_image_prompts("/etc/passwd:0.5") == "/etc/passwd:0.5"


def test_servers_beyond_localhost_are_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_local_only("127.0.0.1") and is_local_only("localhost") and is_local_only(None)
    assert not is_local_only("127.0.0.1", share=True)
    assert not is_local_only("0.0.0.0") and not is_local_only("192.168.1.5")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gr"))
    assert gradio_upload_dir() == tmp_path / "gr"
    policy = PathPolicy.for_server("0.0.0.0", False, outputs_dir=tmp_path / "out", weights_dir=tmp_path / "w")
    assert not policy.open and policy.upload_dirs == (tmp_path / "gr", tmp_path / "out")
    assert policy.weights_dir == tmp_path / "w"
    assert PathPolicy.for_server("127.0.0.1", False, outputs_dir=tmp_path).open
    monkeypatch.delenv("GRADIO_TEMP_DIR")
    import gradio.utils

    assert os.path.realpath(gradio_upload_dir()) == gradio.utils.get_upload_folder()  # where Gradio 6 puts uploads


def test_a_server_beyond_localhost_fetches_public_addresses_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(fetch.PUBLIC_ONLY_ENV, "0")  # recorded, so the test leaves the environment as it was
    PathPolicy.for_server("127.0.0.1", False, outputs_dir=tmp_path).guard_fetches()
    assert os.environ[fetch.PUBLIC_ONLY_ENV] == "0"
    PathPolicy.for_server("0.0.0.0", False, outputs_dir=tmp_path).guard_fetches()
    assert os.environ[fetch.PUBLIC_ONLY_ENV] == "1"


def test_the_forms_have_every_path_field_checked(closed: PathPolicy, tree: dict[str, Path]) -> None:
    mine, upload = tree["weights"] / "mine.ckpt", tree["uploads"] / "abc123" / "cat.png"
    secret = str(tree["private"] / "secret.ckpt")
    form = {"vqgan": str(mine), "vqgan_config": "", "prior": "", "upscale_model": "realesrgan_x4plus",
            "init_image": str(upload), "image_prompts": f"{upload}:0.5", "clip_models": "ViT-B-32 openai 1",
            "prompts": "/etc/passwd is just text here"}
    checked = closed.check_generation_form(form)
    assert checked == {**form, "vqgan": str(mine.resolve()), "init_image": str(upload.resolve()),
                       "image_prompts": f"{upload.resolve()}:0.5"}
    assert form["vqgan"] == str(mine)  # the caller's form is left as it was
    for name in ("vqgan", "vqgan_config", "prior", "upscale_model", "init_image", "image_prompts", "clip_models"):
        value = f"ViT-B-32 {secret} 1" if name == "clip_models" else secret
        with pytest.raises(InputError, match="other server paths are refused"):
            closed.check_generation_form({**form, name: value})
    sample = {"model": "ffhq", "transformer_config": "", "upscale_model": "", "condition": str(upload),
              "complete": None}
    assert closed.check_sample_form(sample) == {**sample, "condition": str(upload.resolve())}
    for name in ("model", "transformer_config", "upscale_model", "condition", "complete"):
        with pytest.raises(InputError, match="other server paths are refused"):
            closed.check_sample_form({**sample, name: secret})
