"""``python -m generator "prompt"``: run folders, reproduction, Ctrl-C and error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from generator.cli.main import main
from generator.io.outputs import CONFIG_KEY, read_png_text
from tests.factories import ctrl_c_cli

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--size", "32", "32", "--cutn", "4"]


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generator", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _only_run_folder(out: Path) -> Path:
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def test_cli_writes_a_reproducible_run_folder(tiny_files, tmp_path: Path) -> None:
    args = ["city at night", *tiny_files.cli_args(), "--steps", "20", "--save-every", "5", "--video", "--seed", "3",
            *FAST]
    first = _cli(*args, "--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    folder = _only_run_folder(tmp_path / "a")
    assert folder.name.endswith("-city-at-night-3")
    assert first.stdout.strip() == str(folder / "final.png")
    frame_names = sorted(p.name for p in (folder / "frames").iterdir())
    assert frame_names == ["000005.png", "000010.png", "000015.png", "000020.png"]
    frames = iio.imread(folder / "video.mp4", plugin="pyav" if _has_pyav() else "FFMPEG", index=None)
    assert len(frames) == 4
    text = read_png_text(folder / "final.png")
    embedded = json.loads(text[CONFIG_KEY])
    assert embedded == json.loads((folder / "config.json").read_text())
    assert embedded["seed"] == 3 and embedded["steps"] == 20 and embedded["prompts"] == "city at night"
    assert text["prompt"] == "city at night" and text["seed"] == "3"
    final = np.asarray(Image.open(folder / "final.png"))
    assert np.array_equal(final, np.asarray(Image.open(folder / "frames" / "000020.png")))

    again = _cli(*args, "--out", str(tmp_path / "b"))
    assert again.returncode == 0, again.stderr
    assert np.array_equal(final, np.asarray(Image.open(_only_run_folder(tmp_path / "b") / "final.png")))

    repeat = _cli("--from", str(folder / "final.png"), "--out", str(tmp_path / "c"))
    assert repeat.returncode == 0, repeat.stderr
    repeated = _only_run_folder(tmp_path / "c")
    assert np.array_equal(final, np.asarray(Image.open(repeated / "final.png")))
    assert json.loads((repeated / "config.json").read_text()) == embedded


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def test_ctrl_c_keeps_the_frames_and_writes_the_latest_image(tiny_files, tmp_path: Path) -> None:
    args = ["a long walk", *tiny_files.cli_args(), "--steps", "100000", "--save-every", "5", "--video", "--seed", "1",
            *FAST, "--out", str(tmp_path)]
    # published frames, not the .NNNNNN.*.tmp.png files of atomic writes
    returncode, stderr = ctrl_c_cli(args, lambda: len(list(tmp_path.glob("*/frames/[0-9]*.png"))) >= 2)
    assert returncode == 130, stderr
    folder = _only_run_folder(tmp_path)
    assert "interrupted at step" in stderr and str(folder) in stderr
    assert (folder / "final.png").is_file() and (folder / "video.mp4").is_file()
    assert len(list((folder / "frames").glob("[0-9]*.png"))) >= 2
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "stopped" and record["total"] == 100000 and record["step"] >= 10
    # the kept image records the step it reached, so --from repeats exactly that image
    assert json.loads(read_png_text(folder / "final.png")[CONFIG_KEY])["steps"] == record["step"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["", "--steps", "3"], "the prompt is empty"),
        (["a cat", "--steps", "0"], "steps must be between 1 and 100000"),
        (["a cat", "--preset", "fastest"], "no preset called 'fastest'; did you mean fast"),
        (["a cat", "--augments", "affine", "wobble"], "unknown augmentation 'wobble'"),
        (["a cat", "--init-image", "/nonexistent/start.png"], "init image /nonexistent/start.png does not exist"),
        (["a cat", "--image-prompts", "/nonexistent/style.png"], "does not exist"),
        (["a cat", "--clip-model", "ViT-B-32", "openai", "heavy"], "must be a number"),
        (["a cat", "--from", "/nonexistent/final.png"], "does not exist"),
    ],
)
def test_bad_input_gets_one_error_line(tiny_files, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    code = main([*args, *tiny_files.cli_args(), *FAST, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error: ") and message in err[-1], err


def test_unreadable_init_image(tiny_files, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code = main(["a cat", "--init-image", str(broken), *tiny_files.cli_args(), *FAST, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: init image" in err and "broken.jpg could not be read" in err and "truncated or corrupt" in err


def test_offline_without_default_weights_names_the_file_and_the_command(tmp_path: Path, capsys) -> None:
    code = main(["city at night", "--offline", "--weights-dir", str(tmp_path / "weights"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "vqgan_imagenet_f16_16384.ckpt" in err
    assert "python -m generator download vqgan_imagenet_f16_16384" in err
    assert not any(tmp_path.glob("*/final.png"))


def test_flags_override_the_preset_and_from(tiny_files, tmp_path: Path) -> None:
    from generator.text_to_image.cli import build_parser, config_from_args

    parser = build_parser("generator")
    config = config_from_args(parser.parse_args(["x", "--preset", "fast", "--cutn", "3", "--init-image", "a.png"]))
    assert config.steps == 100 and config.cutouts.cutn == 3  # fast sets 100 steps and cutn 16
    assert config.init.init == "image"
    clip = config_from_args(parser.parse_args(["x", "--clip-model", "a.json", "none", "0.5", "--clip-model", "RN50"]))
    clip_models = [(c.model, c.pretrained, c.weight) for c in clip.models.clip_models]
    assert clip_models == [("a.json", None, 0.5), ("RN50", "openai", 1.0)]


def test_an_overflow_ends_the_run_with_its_last_good_image(tiny_files, tmp_path: Path, capsys) -> None:
    from generator.text_to_image.pipeline import TextToImage

    pipeline = TextToImage.from_pretrained(tiny_files.models(), device="cpu")
    decode, calls = pipeline.vqgan.decode, {"n": 0}

    def overflow_at_step_five(z_q, *args):  # the clamp keeps the loss finite; the gradient is not
        pixels = decode(z_q, *args)
        if torch.is_grad_enabled():  # an optimisation step, not a preview
            calls["n"] += 1
            if calls["n"] == 5:
                return pixels * float("inf")
        return pixels

    pipeline.vqgan.decode = overflow_at_step_five
    code = main(["city", *tiny_files.cli_args(), *FAST, "--steps", "20", "--save-every", "1", "--seed", "1",
                 "--precision", "fp32", "--out", str(tmp_path)], make_pipeline=lambda *a, **k: pipeline)
    err = capsys.readouterr().err
    assert code == 1
    assert ("error: the optimisation stopped giving numbers at step 5, so the run stopped at its last good image "
            "(step 4); "
            "the models or the inputs give NaN or infinity") in err
    folder = _only_run_folder(tmp_path)
    assert sorted(p.name for p in (folder / "frames").iterdir()) == [f"00000{i}.png" for i in range(1, 5)]
    final = np.asarray(Image.open(folder / "final.png"))
    assert np.array_equal(final, np.asarray(Image.open(folder / "frames" / "000004.png")))  # step 4's image
    assert final.std() > 0


def test_out_of_memory_mid_run_keeps_the_work_and_suggests_smaller_settings(tiny_files, tmp_path: Path, capsys) -> None:
    import weakref

    from generator.text_to_image.pipeline import TextToImage

    pipeline = TextToImage.from_pretrained(tiny_files.models(), device="cpu")
    decode, calls, held = pipeline.vqgan.decode, {"n": 0}, {}

    def decode_then_run_out(z_q, *args):
        calls["n"] += 1
        if calls["n"] == 9:  # the 9th decode: step 7, after the frames at steps 3 and 6
            activations = torch.ones(64, 2**20)  # 256 MB the failed step still needs
            held["ref"] = weakref.ref(activations)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if calls["n"] > 9:  # keeping the latest image: the failed step's tensors are gone by now
            held["freed"] = held["ref"]() is None
        return decode(z_q, *args)

    pipeline.vqgan.decode = decode_then_run_out
    code = main(["city", *tiny_files.cli_args(), *FAST, "--steps", "50", "--save-every", "3", "--video",
                 "--seed", "1", "--out", str(tmp_path)], make_pipeline=lambda *a, **k: pipeline)
    err = capsys.readouterr().err
    assert code == 1
    expected = ("error: the CPU ran out of memory at 32x32 with 4 cutouts; "
                "try a smaller --size, fewer --cutn or --preset low-memory")
    assert expected in err
    folder = _only_run_folder(tmp_path)
    assert sorted(p.name for p in (folder / "frames").iterdir()) == ["000003.png", "000006.png"]
    assert (folder / "final.png").is_file() and (folder / "video.mp4").is_file()
    assert held["freed"] is True  # released before the latest image was decoded
