"""What a web user may point the server at: everything on localhost; served to a network, only
catalogue names and the weights folder for models, and only what this visitor may read (its
uploads, what it was sent, its own runs) for images, with one refusal sentence that tells nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from generator.errors import InputError
from generator.io import fetch
from generator.webui.paths import PathPolicy, gradio_upload_dir, is_local_only

REFUSED = ("the VQGAN field takes a model name from the menu or a file in the weights folder; other server paths "
           "are refused.")
IMAGE_REFUSED = ("the init image field takes an upload, one of your results or an http(s) address on the internet; "
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
    return PathPolicy(tree["weights"], open=False)


@pytest.fixture
def mine(tree: dict[str, Path]):
    """What one visitor may read: its upload and its run (the studio's ``may_read`` decides this)."""
    allowed = {(tree["uploads"] / "abc123" / "cat.png").resolve(), (tree["outputs"] / "run-1" / "final.png").resolve()}
    return lambda path: path in allowed


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
            closed.check_image(value, "init image", lambda path: False)
        assert str(caught.value) == IMAGE_REFUSED


def test_dot_dot_and_symlinks_out_of_the_weights_folder_are_refused(closed: PathPolicy, tree: dict[str, Path]) -> None:
    weights = tree["weights"]
    for value in (f"{weights}/../private/secret.ckpt", str(weights / "escape.ckpt"),
                  str(weights / "linked" / "secret.ckpt"), f"{weights}/../weights/../private/notes.txt",
                  str(weights) + "-evil/x.ckpt"):
        assert _refusal(closed, value) == REFUSED, value


def test_weights_files_registry_names_and_the_visitors_own_files_are_accepted(closed: PathPolicy, mine,
                                                                              tree: dict[str, Path]) -> None:
    weights = tree["weights"]
    model = str((weights / "mine.ckpt").resolve())
    assert closed.check(str(weights / "mine.ckpt"), "VQGAN") == model
    assert closed.check(f"{weights}/sub/../mine.ckpt", "VQGAN") == model  # resolved, so checked == loaded
    for name in ("vqgan_imagenet_f16_16384", "sflckr", "ffhq", "realesrgan_x4plus"):
        assert closed.check(name, "VQGAN") == name
    upload = tree["uploads"] / "abc123" / "cat.png"
    assert closed.check_image(str(upload), "init image", mine) == str(upload.resolve())
    result = tree["outputs"] / "run-1" / "final.png"
    assert closed.check_image(str(result), "init image", mine) == str(result.resolve())
    assert closed.check_image("https://example.com/cat.png", "init image") == "https://example.com/cat.png"
    assert closed.check("", "VQGAN") == "" and closed.check(None, "VQGAN") == ""
    # an upload or a result is no model, and another visitor's files are no input of this one's
    with pytest.raises(InputError, match="model name from the menu"):
        closed.check(str(upload), "VQGAN")
    with pytest.raises(InputError, match="^the init image field takes an upload, one of your results"):
        closed.check_image(str(upload), "init image", lambda path: False)


def test_image_prompts_keep_weights_and_urls_and_refuse_server_paths(closed: PathPolicy, mine,
                                                                    tree: dict[str, Path]) -> None:
    upload = tree["uploads"] / "abc123" / "cat.png"
    checked = closed.check_image_prompts(f"{upload}:0.5 | https://example.com/a.png:2:-1", may_read=mine)
    assert checked == f"{upload.resolve()}:0.5 | https://example.com/a.png:2:-1"
    for text in (f"{upload} | /etc/passwd:0.5", f"{tree['private'] / 'secret.ckpt'}", "/no/such.png:2"):
        with pytest.raises(InputError, match="^the image prompts field takes an upload"):
            closed.check_image_prompts(text, may_read=mine)
    with pytest.raises(InputError, match="weight 0"):  # the grammar's own sentence
        closed.check_image_prompts(f"{upload}:0", may_read=mine)


def test_clip_models_take_catalogue_names_and_weights_files_only(closed: PathPolicy, tree: dict[str, Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    model = tree["weights"] / "mine.ckpt"
    assert closed.check_clip_models("ViT-B-32 openai 1\nViT-B-16 laion2b_s34b_b88k 0.5\nRN50 none 1") == \
        "ViT-B-32 openai 1\nViT-B-16 laion2b_s34b_b88k 0.5\nRN50 none 1"
    assert closed.check_clip_models(f"ViT-B-32 {model} 1") == f"ViT-B-32 {model.resolve()} 1"
    # a bare word naming a file in the server's working folder is a path, refused unread (round 2 finding 3)
    monkeypatch.chdir(tree["private"])
    (tree["private"] / "credentials").write_text("aws_secret_access_key = hunter2\n")
    for text in ("/etc/model.json none 1", "credentials none 1", "ViT-B-32 credentials 1", "notes.txt",
                 "ViT-B-32 ../private/secret.ckpt"):
        with pytest.raises(InputError, match="^the CLIP models field takes a model name from the menu") as caught:
            closed.check_clip_models(text)
        assert "hunter2" not in str(caught.value)


def test_an_open_policy_accepts_anything(tree: dict[str, Path]) -> None:
    policy = PathPolicy(tree["weights"], open=True)
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
    policy = PathPolicy.for_server("0.0.0.0", False, weights_dir=tmp_path / "w")
    assert not policy.open and policy.weights_dir == tmp_path / "w"
    assert PathPolicy.for_server("127.0.0.1", False).open
    monkeypatch.delenv("GRADIO_TEMP_DIR")
    import gradio.utils

    assert os.path.realpath(gradio_upload_dir()) == gradio.utils.get_upload_folder()  # where Gradio 6 puts uploads


def test_a_server_beyond_localhost_fetches_public_addresses_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(fetch.PUBLIC_ONLY_ENV, "0")  # recorded, so the test leaves the environment as it was
    PathPolicy.for_server("127.0.0.1", False).guard_fetches()
    assert os.environ[fetch.PUBLIC_ONLY_ENV] == "0"
    PathPolicy.for_server("0.0.0.0", False).guard_fetches()
    assert os.environ[fetch.PUBLIC_ONLY_ENV] == "1"


def test_the_forms_have_every_path_field_checked(closed: PathPolicy, mine, tree: dict[str, Path]) -> None:
    model, upload = tree["weights"] / "mine.ckpt", tree["uploads"] / "abc123" / "cat.png"
    secret = str(tree["private"] / "secret.ckpt")
    form = {"vqgan": str(model), "vqgan_config": "", "prior": "", "upscale_model": "realesrgan_x4plus",
            "init_image": str(upload), "image_prompts": f"{upload}:0.5", "clip_models": "ViT-B-32 openai 1",
            "prompts": "/etc/passwd is just text here"}
    checked = closed.check_generation_form(form, mine)
    assert checked == {**form, "vqgan": str(model.resolve()), "init_image": str(upload.resolve()),
                       "image_prompts": f"{upload.resolve()}:0.5"}
    assert form["vqgan"] == str(model)  # the caller's form is left as it was
    for name in ("vqgan", "vqgan_config", "prior", "upscale_model", "init_image", "image_prompts", "clip_models"):
        value = f"ViT-B-32 {secret} 1" if name == "clip_models" else secret
        with pytest.raises(InputError, match="other server paths are refused"):
            closed.check_generation_form({**form, name: value}, mine)
    sample = {"model": "ffhq", "transformer_config": "", "upscale_model": "", "condition": str(upload),
              "complete": None, "mask": None}
    assert closed.check_sample_form(sample, mine) == {**sample, "condition": str(upload.resolve())}
    assert closed.check_sample_form({**sample, "mask": "alpha"}, mine)["mask"] == "alpha"  # names no file
    for name in ("model", "transformer_config", "upscale_model", "condition", "complete", "mask"):
        with pytest.raises(InputError, match="other server paths are refused"):
            closed.check_sample_form({**sample, name: secret}, mine)
