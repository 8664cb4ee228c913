"""Training a transformer prior on a folder of images (``python -m generator train prior``).

The images go through the tiny VQGAN of tests/factories.py saved in the official format; its
random encoder maps almost every image to the same few codes, so :func:`brightness_codes`
stands in for ``encode_to_indices``: each latent cell's code is its brightness in
``n_codes`` levels. The images are made of 2x2 cells of exact levels, so the codes of each
class are known: class ``bright`` uses only :data:`BRIGHT` codes, class ``dark`` only
:data:`DARK` ones, drawn uniformly per cell.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from generator.config import SampleConfig
from generator.errors import ConfigError, InputError, OutOfMemoryError
from generator.events import Done, Notice, Progress
from generator.sample.conditioning import start_tokens
from generator.sample.loader import load_prior
from generator.sample.pipeline import Sampler
from generator.sample.sampling import SamplingSettings, sample_rows
from generator.train.codes import load_codes
from generator.train.prior import add_prior_arguments, config_from_args, run_prior
from generator.train.prior_settings import PriorTrainingConfig
from generator.train.prior_training import PriorTraining
from generator.webui.catalogue import local_files
from generator.weights import store
from models.vqgan import VQGAN
from tests.factories import ctrl_c_cli, save_tiny_vqgan

BRIGHT = (10, 12, 14)
DARK = (1, 3, 5)
SIZE = 8  # pixels; the tiny VQGAN's factor is 2, so a 4x4 window of codes
GPT = dict(n_layer=1, n_head=2, n_embd=32)


def brightness_codes(self: VQGAN, x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, H/f, W/f): each cell's mean brightness in n_codes levels."""
    cells = F.avg_pool2d(x.mean(1, keepdim=True), self.downsample_factor)[:, 0]  # (B, h, w)
    return ((cells + 1) / 2 * self.n_codes).floor().long().clamp(0, self.n_codes - 1)


def _image(path: Path, levels: tuple[int, ...], rng: np.random.Generator, n_codes: int = 16) -> None:
    """An 8x8 PNG of 2x2 cells, each cell's grey level one of ``levels`` (its code, exactly)."""
    codes = rng.choice(levels, size=(SIZE // 2, SIZE // 2))
    grey = np.rint((codes + 0.5) / n_codes * 255).astype(np.uint8).repeat(2, 0).repeat(2, 1)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("prior-training")
    vqgan, vqgan_yaml, model = save_tiny_vqgan(root)
    rng = np.random.default_rng(0)
    for name, levels in (("bright", BRIGHT), ("dark", DARK)):
        (root / "classes" / name).mkdir(parents=True)
        for index in range(60):  # enough that a tiny GPT learns the classes' codes, not the images
            _image(root / "classes" / name / f"{index:02d}.png", levels, rng)
    (root / "flat").mkdir()
    for index in range(12):
        _image(root / "flat" / f"{index:02d}.png", BRIGHT if index % 2 else DARK, rng)
    (root / "flat" / "broken.png").write_bytes(b"not an image")
    (root / "empty").mkdir()
    return {"root": root, "vqgan": vqgan, "vqgan_yaml": vqgan_yaml, "model": model, "classes": root / "classes",
            "flat": root / "flat", "empty": root / "empty"}


@pytest.fixture(autouse=True)
def _brightness_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(VQGAN, "encode_to_indices", brightness_codes)


def _config(files: dict, **overrides) -> PriorTrainingConfig:
    values = dict(vqgan=str(files["vqgan"]), data=str(files["flat"]), size=SIZE, steps=8, batch_size=8, lr=3e-3,
                  val_fraction=0.25, val_every=4, sample_every=4, sample_count=2, save_every=4, seed=0, **GPT)
    values.update(overrides)
    return PriorTrainingConfig(**values)


def _train(config: PriorTrainingConfig, out: Path, **options):
    events, run = [], PriorTraining(config, out_dir=out, device="cpu", **options)
    generator = run.run()
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return stop.value, events


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_prior_arguments(parser)
    return parser.parse_args(list(argv))


# --- (a) a class-conditional prior samples each class; (b) its validation loss falls ---------


def test_a_class_prior_samples_each_class_and_its_validation_loss_falls(files, tmp_path: Path) -> None:
    config = _config(files, data=str(files["classes"]), conditioning="class", steps=48, batch_size=16,
                     val_fraction=0.2, val_every=16, sample_every=24)
    result, _ = _train(config, tmp_path)
    metrics = _metrics(result.folder)
    val = [line["val_loss"] for line in metrics if "val_loss" in line]
    assert [line["step"] for line in metrics if "val_loss" in line] == [0, 16, 32, 48]
    assert val[-1] < 0.6 * val[0]  # from about ln 16 toward ln 3 (three codes per cell and class)

    prior = load_prior(result.checkpoint)  # strict, with the yaml beside it
    assert prior.spec.conditioning == "class" and prior.spec.n_classes == 2
    generator = torch.Generator().manual_seed(1)
    for label, codes in ((0, BRIGHT), (1, DARK)):  # sub-folders in sorted order: bright, dark
        tokens = torch.zeros(32, 4, 4, dtype=torch.long)
        for _ in sample_rows(prior, start_tokens(prior, 32, label), tokens, 0,
                             SamplingSettings(top_k=0), generator):
            pass
        inside = torch.isin(tokens, torch.tensor(codes)).float().mean().item()
        assert inside > 0.9, f"class {label}: only {inside:.0%} of the sampled codes are the class's"
        counts = torch.bincount(tokens.reshape(-1), minlength=16)[list(codes)].float()
        assert counts.min() > 0.15 * counts.sum()  # every code of the class, none squeezed out
    assert sorted(p.name for p in result.folder.glob("samples-*.png")) == ["samples-000024.png", "samples-000048.png"]
    with Image.open(result.folder / "samples-000048.png") as sheet:  # 2 classes x 2 samples of 8x8, 2-pixel gaps
        assert sheet.size == (2 * SIZE + 2, 2 * SIZE + 2)


# --- (c) the official formats, read by the loader and the sampler ---------------------------------


def test_the_checkpoint_is_official_and_samples_through_the_sampler_also_larger(files, tmp_path: Path) -> None:
    args = _args("--vqgan", str(files["vqgan"]), "--data", str(files["flat"]), "--size", str(SIZE), "--steps", "6",
                 "--batch-size", "4", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--seed", "3",
                 "--sample-every", "0", "--out", str(tmp_path), "--device", "cpu")
    assert run_prior(args) == 0
    (folder,) = tmp_path.glob("train-prior-flat-*")
    checkpoint, project_file = folder / "flat_transformer.ckpt", folder / "flat_transformer.yaml"
    state = torch.load(checkpoint, weights_only=True)
    assert state["global_step"] == 6 and "pytorch-lightning_version" in state
    keys = set(state["state_dict"])
    assert {k.split(".")[0] for k in keys} == {"transformer", "first_stage_model"}
    assert "transformer.blocks.0.attn.mask" in keys and "first_stage_model.quantize.embedding.weight" in keys
    project = yaml.safe_load(project_file.read_text())["model"]
    assert project["target"] == "taming.models.cond_transformer.Net2NetTransformer"
    params = project["params"]
    assert params["transformer_config"]["target"] == "taming.modules.transformer.mingpt.GPT"
    assert params["transformer_config"]["params"]["block_size"] == 16
    assert params["first_stage_config"]["target"] == "taming.models.vqgan.VQModel"
    assert params["cond_stage_config"] == "__is_unconditional__"

    prior = load_prior(checkpoint)
    trained = load_file(folder / "train-state.safetensors")
    for key, value in prior.gpt.state_dict().items():
        assert torch.equal(value, trained[f"gpt.{key}"]), key
    for key, value in files["model"].state_dict().items():
        assert torch.equal(prior.vqgan.state_dict()[key], value), key

    registered = store.weights_dir() / "flat_transformer.ckpt"  # the copy the menus list
    assert registered.read_bytes() == checkpoint.read_bytes() and registered.with_suffix(".yaml").is_file()
    assert registered in local_files("transformer")

    sampler = Sampler(prior, model=str(checkpoint))
    for size, expected in ((None, (SIZE, SIZE)), ([16, 24], (16, 24))):  # the training window, a sliding one
        events = list(sampler.run(SampleConfig.from_dict({"n": 2, "batch_size": 2, "seed": 0, "top_k": 0,
                                                          "size": size})))
        done = events[-1]
        assert isinstance(done, Done) and [image.size for image in done.images] == [expected, expected]


# --- (d) resume continues the same trajectory; (e) the codes are encoded once ----------------------


def test_a_stopped_run_resumes_on_the_same_trajectory_without_encoding_again(files, tmp_path: Path,
                                                                              monkeypatch) -> None:
    whole, _ = _train(_config(files), tmp_path / "whole")

    run = PriorTraining(_config(files), out_dir=tmp_path / "stopped", device="cpu")
    events = run.run()
    for event in events:
        if isinstance(event, Progress) and event.stage == "train" and event.step == 3:
            events.close()  # as Ctrl-C does: the state of step 3 is saved
    assert json.loads((run.folder / "run.json").read_text())["status"] == "stopped"
    assert _metrics(run.folder)[-1]["step"] == 3

    def no_encoding(self, x):
        raise AssertionError("the images were encoded again")

    monkeypatch.setattr(VQGAN, "encode_to_indices", no_encoding)
    config, resume = config_from_args(_args("--resume", str(run.folder), "--steps", "8"))
    resumed, notices = _train(config, tmp_path, resume=resume)
    assert resumed.folder == run.folder
    assert any("resuming at step 3" in e.message for e in notices if isinstance(e, Notice))
    assert _metrics(resumed.folder) == _metrics(whole.folder)  # every train and validation loss, exactly
    a, b = torch.load(whole.checkpoint, weights_only=True), torch.load(resumed.checkpoint, weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_the_codes_are_reused_by_a_later_run_until_the_images_change(files, tmp_path: Path, monkeypatch) -> None:
    first, _ = _train(_config(files, steps=2), tmp_path)
    calls = []

    def counted(self, x):
        calls.append(x.shape[0])
        return brightness_codes(self, x)

    monkeypatch.setattr(VQGAN, "encode_to_indices", counted)
    second, events = _train(_config(files, steps=2, conditioning="sos", lr=1e-3), tmp_path)
    assert calls == [] and second.folder != first.folder
    assert any("reusing the images encoded by " + first.folder.name in e.message
               for e in events if isinstance(e, Notice))
    reused, original = (load_codes(run.folder / "codes.safetensors") for run in (second, first))
    assert torch.equal(reused.codes, original.codes) and reused.files == original.files
    assert reused.fingerprint == original.fingerprint

    _train(_config(files, steps=2, size=2 * SIZE), tmp_path)  # another size: encoded again
    assert sum(calls) == 12  # the readable images; broken.png is skipped
    other, _, _ = save_tiny_vqgan(tmp_path, name="other_vqgan", seed=1)
    _train(_config(files, steps=2, vqgan=str(other)), tmp_path)  # another VQGAN: encoded again
    assert sum(calls) == 24
    data = tmp_path / "copy"
    data.mkdir()
    for path in sorted(files["flat"].glob("0*.png"))[:4]:
        (data / path.name).write_bytes(path.read_bytes())
    _train(_config(files, steps=2, data=str(data)), tmp_path)  # other images: encoded
    _train(_config(files, steps=2, data=str(data)), tmp_path)  # the same again: reused
    assert sum(calls) == 24 + 4
    _image(data / "00.png", DARK, np.random.default_rng(5))  # one image changed: encoded again
    _train(_config(files, steps=2, data=str(data)), tmp_path)
    assert sum(calls) == 24 + 4 + 4


# --- (f) bad inputs: one sentence each, no run folder ---------------------------------------------


@pytest.mark.parametrize(("case", "error", "words"), [
    ("empty", InputError, "holds no image"),
    ("not a vqgan", ConfigError, "is not a VQGAN"),
    ("class without sub-folders", InputError, "--conditioning class needs"),
    ("size", ConfigError, "not a multiple of the VQGAN's downsample factor 2; use 8 or 10"),
])
def test_bad_inputs_are_one_sentence_and_leave_no_folder(files, tmp_path: Path, case, error, words) -> None:
    not_a_vqgan = tmp_path / "gpt.safetensors"
    save_file({"tok_emb.weight": torch.zeros(16, 8)}, not_a_vqgan)
    overrides = {"empty": dict(data=str(files["empty"])), "not a vqgan": dict(vqgan=str(not_a_vqgan)),
                 "class without sub-folders": dict(conditioning="class"), "size": dict(size=9)}[case]
    with pytest.raises(error) as caught:
        _train(_config(files, **overrides), tmp_path / "out")
    message = str(caught.value)
    assert words in message and "\n" not in message and message.endswith(".")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_without_vqgan_and_data_or_resume_it_says_what_to_give() -> None:
    with pytest.raises(ConfigError, match="needs --vqgan MODEL and --data FOLDER"):
        config_from_args(_args("--steps", "3"))


def test_running_out_of_memory_keeps_the_steps_done_and_says_what_to_change(files, tmp_path: Path,
                                                                          monkeypatch) -> None:
    from generator.train import prior_training

    real_loss, calls = prior_training.sequence_loss, []

    def loss_that_runs_out_on_the_third_step(gpt, cond, codes):
        if torch.is_grad_enabled():  # a training step, not a validation
            calls.append(1)
            if len(calls) == 3:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real_loss(gpt, cond, codes)

    monkeypatch.setattr(prior_training, "sequence_loss", loss_that_runs_out_on_the_third_step)
    run = PriorTraining(_config(files, save_every=100), out_dir=tmp_path, device="cpu")
    with pytest.raises(OutOfMemoryError) as raised:
        _drain(run.run())
    said = str(raised.value)
    assert said.startswith("the CPU ran out of memory at step 3 (8 sequences of ") and "lower --batch-size" in said
    assert said.endswith(f"--resume {run.folder} (its state is step 2).")
    record = json.loads((run.folder / "run.json").read_text())
    assert record["status"] == "failed" and record["step"] == 2 and record["error"] == said
    monkeypatch.setattr(prior_training, "sequence_loss", real_loss)
    config, resume = config_from_args(_args("--resume", str(run.folder)))
    resumed, notices = _train(config, tmp_path, resume=resume)
    assert any("resuming at step 2" in e.message for e in notices if isinstance(e, Notice)) and resumed.step == 8


def _drain(generator):
    for _ in generator:
        pass


def test_bf16_autocast_trains_a_prior_with_float32_weights(files, tmp_path: Path) -> None:
    result, _ = _train(_config(files, precision="bf16", steps=12, val_every=6), tmp_path)
    lines = _metrics(result.folder)
    losses = [line["train_loss"] for line in lines if "train_loss" in line]
    assert len(losses) == 12 and all(np.isfinite(losses)) and np.mean(losses[-4:]) < np.mean(losses[:4])
    state = torch.load(result.checkpoint, weights_only=True)["state_dict"]
    gpt = {key: value for key, value in state.items() if key.startswith("transformer.")}
    assert gpt and all(value.dtype == torch.float32 for value in gpt.values() if value.is_floating_point())
    assert load_prior(result.checkpoint).spec.conditioning == "sos"
    full, _ = _train(_config(files, precision="fp32", steps=12, val_every=6), tmp_path / "fp32")
    full_losses = [line["train_loss"] for line in _metrics(full.folder) if "train_loss" in line]
    assert losses != full_losses and np.allclose(losses[:3], full_losses[:3], rtol=0.05)  # bf16: close, not equal


def test_ctrl_c_on_the_command_line_keeps_the_step_done_and_says_how_to_go_on(files, tmp_path: Path) -> None:
    out = tmp_path / "out"

    def a_few_steps_done() -> bool:
        return any(len(_metrics(folder)) >= 4 for folder in out.glob("train-prior-*")
                   if (folder / "metrics.jsonl").is_file())

    code, said = ctrl_c_cli(["train", "prior", "--vqgan", str(files["vqgan"]), "--data", str(files["flat"]), "--size",
                             str(SIZE), "--steps", "100000", "--batch-size", "4", "--n-layer", "1", "--n-head", "2",
                             "--n-embd", "16", "--seed", "3", "--out", str(out), "--device", "cpu", "--threads", "1"],
                            a_few_steps_done)
    (folder,) = out.glob("train-prior-*")
    assert code != 0 and f"continue with: python -m generator train prior --resume {folder}" in said
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "stopped" and 3 <= record["step"] < 100000
    assert _metrics(folder)[-1]["step"] == record["step"]  # the saved state is the last step the metrics show
    config, resume = config_from_args(_args("--resume", str(folder), "--steps", str(record["step"] + 2)))
    resumed, _ = _train(config, tmp_path, resume=resume)
    assert resumed.step == record["step"] + 2
