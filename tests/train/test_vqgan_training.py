"""Training a VQGAN on a folder of images (``python -m generator train vqgan``, issue 28, part A).

Everything runs on the CPU with one thread (two threads on a busy two-core machine are ten
times slower for these tiny convolutions), on the narrow VQGAN of tests/factories.py with 64
codes, 16-pixel crops of two dozen generated images, batches of four.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from generator.cli.main import main
from generator.decoder.loader import load_vqgan
from generator.errors import OutOfMemoryError
from generator.events import Event, Progress
from generator.train.data import CropSampler, scan_images
from generator.train.vqgan_losses import adaptive_weight, quantize_for_training
from generator.train.vqgan_train import VQGANTraining
from generator.webui.catalogue import local_files
from tests.factories import save_tiny_vqgan
from tests.prior_factories import save_tiny_prior
from tests.train.vqgan_helpers import architecture, settings, write_architecture_yaml, write_images, write_lpips_weights
from tests.upscaler_factories import compact_state, save_upscaler

FAST_CLI = ["--size", "16", "--batch-size", "2", "--lr", "1e-3", "--seed", "1", "--precision", "fp32", "--device",
            "cpu", "--threads", "1", "--disc-layers", "2", "--disc-ndf", "8", "--perceptual-weight", "0"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


def _held_out(folder: Path, count: int = 16) -> torch.Tensor:
    return CropSampler(scan_images(folder), 16, random.Random(123)).batch(count)


def _l1(training: VQGANTraining, batch: torch.Tensor) -> float:
    return float((training.reconstruct(batch) - batch).abs().mean())


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _errors(err: str) -> list[str]:
    return [line for line in err.strip().splitlines() if line.startswith("error:")]


def test_200_steps_cut_the_reconstruction_error_by_a_third(images: Path, tmp_path: Path) -> None:
    held_out = _held_out(images)
    training = VQGANTraining.start(settings(images, tmp_path, steps=200, log_every=50, sample_every=100))
    before = _l1(training, held_out)
    result = training.run()
    after = _l1(training, held_out)
    assert after <= before * 2 / 3, (before, after)
    lines = _metrics(result.run_folder)
    assert [line["step"] for line in lines] == [1, 50, 100, 150, 200]
    for line in lines:
        assert 0 < line["codebook_usage"] <= 1 and 1 <= line["perplexity"] <= 64 and math.isfinite(line["psnr"])
    assert lines[-1]["psnr"] > lines[0]["psnr"]
    assert sorted(p.name for p in result.run_folder.glob("recon-*.png")) == ["recon-000100.png", "recon-000200.png"]
    recorded = json.loads((result.run_folder / "config.json").read_text())
    assert recorded["settings"]["seed"] == 0 and recorded["settings"]["steps"] == 200


def test_the_checkpoint_loads_strictly_through_the_loader_with_the_same_outputs(images: Path, tmp_path: Path) -> None:
    training = VQGANTraining.start(settings(images, tmp_path, steps=3, disc_start=1, name="mine"))
    result = training.run()
    raw = torch.load(result.checkpoint, weights_only=True)
    assert raw["global_step"] == 3 and "epoch" in raw
    keys = set(raw["state_dict"])
    assert {"encoder.conv_in.weight", "decoder.conv_out.weight", "quantize.embedding.weight", "quant_conv.weight",
            "post_quant_conv.weight", "loss.discriminator.main.0.weight", "loss.discriminator.main.3.running_mean"
            } <= keys
    model_yaml = yaml.safe_load(result.config.read_text())["model"]
    assert model_yaml["target"] == "taming.models.vqgan.VQModel" and model_yaml["params"]["n_embed"] == 64
    assert model_yaml["params"]["lossconfig"]["target"].endswith("VQLPIPSWithDiscriminator")
    assert model_yaml["params"]["lossconfig"]["params"]["disc_start"] == 1
    model = training.vqgan.eval()
    x = _held_out(images, 4)
    for loaded in (load_vqgan(result.checkpoint, result.config), load_vqgan(result.registered),
                   load_vqgan(result.checkpoint)):  # each with its yaml beside it, found by the loader
        with torch.no_grad():
            assert torch.equal(loaded.encode(x), model.encode(x))
            assert torch.equal(loaded.encode_to_indices(x), model.encode_to_indices(x))
            z_q = model.quantize(model.encode(x)).z_q
            assert torch.equal(loaded.decode(z_q), model.decode(z_q))
    assert result.registered.name == "mine.ckpt" and result.registered in local_files("vqgan")


def test_a_fine_tune_starts_from_exactly_the_given_weights(images: Path, tmp_path: Path) -> None:
    checkpoint, _, original = save_tiny_vqgan(tmp_path, name="base_vqgan", seed=3)
    expected = original.state_dict()
    training = VQGANTraining.start(settings(images, tmp_path / "out", architecture=None, from_model=str(checkpoint)))
    state = training.vqgan.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[key], expected[key]) for key in expected)

    grown = VQGANTraining.start(settings(images, tmp_path / "out", architecture=None, from_model=str(checkpoint),
                                         codebook=24, name="grown"))
    state = grown.vqgan.state_dict()
    codebook = state.pop("quantize.embedding.weight")
    assert all(torch.equal(state[key], expected[key]) for key in state)
    assert codebook.shape == (24, 4) and torch.equal(codebook[:16], expected["quantize.embedding.weight"])
    assert len({tuple(row.tolist()) for row in codebook[16:]}) == 8  # eight distinct new codes
    grown.run(until=1)
    assert grown.step == 1


def test_resume_continues_the_same_trajectory(images: Path, tmp_path: Path) -> None:
    # dropout draws from torch; a dead-code restart at step 4 counts the codes of steps 3 and 4
    common = dict(steps=6, disc_start=2, seed=5, architecture=architecture(dropout=0.1), restart_dead_codes=2)
    straight = VQGANTraining.start(settings(images, tmp_path / "a", name="straight", **common))
    straight.run()
    first = VQGANTraining.start(settings(images, tmp_path / "b", name="halves", **common))

    def ctrl_c_after_step_3(event: Event) -> None:
        if isinstance(event, Progress) and event.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        first.run(on_event=ctrl_c_after_step_3)
    resumed = VQGANTraining.resume(first.run_folder)
    assert resumed.step == 3
    resumed.run()
    lines_a, lines_b = _metrics(straight.run_folder), _metrics(first.run_folder)
    assert [line["step"] for line in lines_b] == [1, 2, 3, 4, 5, 6]
    for line_a, line_b in zip(lines_a, lines_b, strict=True):
        assert line_a.keys() == line_b.keys()
        for key in ("loss", "l1", "codebook_loss", "g_loss", "d_weight", "d_loss", "psnr", "codebook_usage",
                    "codes_restarted"):
            if key in line_a:
                assert line_b[key] == pytest.approx(line_a[key], rel=1e-5, abs=1e-6), (line_a["step"], key)
    assert "d_loss" in lines_a[-1] and lines_a[3]["codes_restarted"] > 0
    for module_a, module_b in ((straight.vqgan, resumed.vqgan), (straight.loss, resumed.loss)):
        state_a, state_b = module_a.state_dict(), module_b.state_dict()
        assert all(torch.allclose(state_a[k].float(), state_b[k].float(), atol=1e-6) for k in state_a)


def test_the_discriminator_is_off_before_its_start_step_and_weighted_finitely_after(images: Path,
                                                                                   tmp_path: Path) -> None:
    training = VQGANTraining.start(settings(images, tmp_path, steps=5, disc_start=3))
    before = {key: value.clone() for key, value in training.loss.discriminator.state_dict().items()}
    training.run(until=3)
    after = training.loss.discriminator.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)  # weights and BatchNorm statistics
    assert not training.disc_optimizer.state
    off = _metrics(training.run_folder)
    assert [(line["g_loss"], line["d_weight"], "d_loss" in line) for line in off] == [(0.0, 0.0, False)] * 3
    training.run(until=5)
    on = _metrics(training.run_folder)[3:]
    assert len(on) == 2
    for line in on:
        assert math.isfinite(line["d_weight"]) and 0 < line["d_weight"] <= 1e4 * 0.8
        assert math.isfinite(line["d_loss"]) and math.isfinite(line["g_loss"])
    changed = training.loss.discriminator.state_dict()
    assert not torch.equal(changed["main.0.weight"], before["main.0.weight"])


def test_the_adaptive_weight_is_the_ratio_of_the_gradient_norms_clamped() -> None:
    weight = torch.randn(3, 3, requires_grad=True)
    nll, g_loss = (weight * 2).sum(), (weight**2).sum()
    expected = 6.0 / (float(torch.norm(2 * weight.detach())) + 1e-4) * 0.8
    assert float(adaptive_weight(nll, g_loss, weight, 0.8)) == pytest.approx(expected, rel=1e-5)
    assert float(adaptive_weight((weight * 2).sum(), (weight * 0).sum(), weight, 0.8)) == pytest.approx(1e4 * 0.8)


def test_the_quantiser_passes_gradients_straight_through_with_taming_s_weighting() -> None:
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    codebook = torch.randn(16, 4, requires_grad=True)
    quantized = quantize_for_training(z, codebook, beta=0.25)
    z_q = codebook[quantized.indices].permute(0, 3, 1, 2)
    assert torch.allclose(quantized.z_st, z_q)
    quantized.z_st.sum().backward(retain_graph=True)
    assert torch.equal(z.grad, torch.ones_like(z))  # straight through
    assert codebook.grad is None
    gap = float(((z_q - z) ** 2).mean().detach())
    assert float(quantized.loss.detach()) == pytest.approx(gap * 1.25, rel=1e-5)  # commitment + 0.25 codebook
    z.grad = None
    quantized.loss.backward()
    assert torch.allclose(z.grad, 2 * (z - z_q).detach() / z.numel(), atol=1e-7)  # commitment term at weight 1


def test_the_command_trains_resumes_and_prints_the_registered_checkpoint(images: Path, tmp_path: Path,
                                                                         capsys) -> None:
    model = write_architecture_yaml(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    assert main(["train", "vqgan", "--data", str(images), "--model", str(model), "--steps", "2", "--name",
                 "cli-model", "--out", str(out), *FAST_CLI]) == 0
    printed, err = capsys.readouterr()
    registered = Path(printed.strip().splitlines()[-1])
    assert registered.name == "cli-model.ckpt" and registered.is_file() and registered.with_suffix(".yaml").is_file()
    assert "2/2" in err  # the progress bar
    run = next(out.glob("train-vqgan-cli-model-*"))
    assert main(["train", "vqgan", "--resume", str(run), "--steps", "3", "--threads", "1"]) == 0
    capsys.readouterr()
    assert [line["step"] for line in _metrics(run)] == [1, 2, 3]
    assert main(["train", "vqgan", "--resume", str(run), "--lr", "0.5"]) == 1
    errors = _errors(capsys.readouterr().err)
    assert len(errors) == 1 and "--lr cannot change when resuming" in errors[0]


def _cli_error(capsys, *args: str) -> str:
    assert main(["train", "vqgan", *FAST_CLI, "--steps", "1", *args]) == 1
    err = capsys.readouterr().err
    errors = _errors(err)
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1], err
    message = errors[0].removeprefix("error: ")
    assert message.endswith(".") and "\n" not in message and "Traceback" not in err
    return message


def test_an_empty_folder_is_one_sentence(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert "holds no image" in _cli_error(capsys, "--data", str(tmp_path / "empty"), "--out", str(tmp_path))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"no PNG")
    message = _cli_error(capsys, "--data", str(tmp_path / "broken"), "--out", str(tmp_path), "--model", "tiny")
    assert message.startswith("none of the 1 images in") and not list(tmp_path.glob("train-vqgan-*"))


def test_an_unreadable_image_is_skipped_with_one_line_and_training_goes_on(images: Path, tmp_path: Path,
                                                                          caplog) -> None:
    data = tmp_path / "data"
    shutil.copytree(images, data)
    (data / "broken.png").write_bytes(b"this is no PNG")
    with caplog.at_level(logging.WARNING, logger="generator"):
        training = VQGANTraining.start(settings(data, tmp_path / "out", steps=14))
        training.run()
    said = [record.getMessage() for record in caplog.records if "broken.png" in record.getMessage()]
    assert len(said) == 1 and said[0].startswith("skipped broken.png")
    assert training.step == 14 and training.sampler.epoch >= 1  # every image, the broken one too, came up


@pytest.mark.parametrize("kind", ["upscaler", "transformer", "registry upscaler"])
def test_from_something_that_is_no_vqgan_is_one_sentence(kind: str, images: Path, tmp_path: Path, capsys) -> None:
    if kind == "upscaler":
        source = str(save_upscaler(compact_state(), tmp_path / "upscaler.pth"))
    elif kind == "transformer":
        source = str(save_tiny_prior(tmp_path / "prior").checkpoint)
    else:
        source = "realesrgan_x4plus"
    message = _cli_error(capsys, "--data", str(images), "--from", source, "--out", str(tmp_path))
    assert "not a VQGAN" in message


def test_a_codebook_that_does_not_fit_is_one_sentence(images: Path, tmp_path: Path, capsys) -> None:
    checkpoint, _, _ = save_tiny_vqgan(tmp_path, name="base_vqgan")
    common = ["--data", str(images), "--from", str(checkpoint), "--out", str(tmp_path)]
    assert "smaller than the 16 codes of base_vqgan.ckpt" in _cli_error(capsys, *common, "--codebook", "8")
    assert "2 codes or more" in _cli_error(capsys, *common, "--codebook", "1")
    model = write_architecture_yaml(tmp_path / "tiny.yaml")
    message = _cli_error(capsys, "--data", str(images), "--model", str(model), "--out", str(tmp_path), "--size", "15")
    assert "not a multiple of the VQGAN's downsampling factor 2" in message
    assert not list(tmp_path.glob("train-vqgan-*"))  # nothing was started


def test_without_lpips_weights_one_line_says_so_and_training_works(images: Path, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="generator"):
        result = VQGANTraining.start(settings(images, tmp_path, steps=2, perceptual_weight=1.0)).run()
    said = [r.getMessage() for r in caplog.records if "perceptual" in r.getMessage()]
    assert len(said) == 1 and "vgg.pth" in said[0] and "vgg16-397923af.pth" in said[0]
    assert all("perceptual" not in line for line in _metrics(result.run_folder))
    assert yaml.safe_load(result.config.read_text())["model"]["params"]["lossconfig"]["params"][
        "perceptual_weight"] == 0.0


def test_with_lpips_weights_the_perceptual_term_is_trained_on(images: Path, tmp_path: Path, monkeypatch) -> None:
    weights = tmp_path / "weights"
    write_lpips_weights(weights)
    monkeypatch.setenv("GENERATOR_WEIGHTS_DIR", str(weights))
    result = VQGANTraining.start(settings(images, tmp_path, steps=2, perceptual_weight=1.0)).run()
    lines = _metrics(result.run_folder)
    assert all(line["perceptual"] > 0 and line["nll"] == pytest.approx(line["l1"] + line["perceptual"], rel=1e-4)
               for line in lines)
    state = torch.load(result.checkpoint, weights_only=True)["state_dict"]
    written = torch.load(weights / "vgg16-397923af.pth", weights_only=True)
    assert torch.equal(state["loss.perceptual_loss.net.slice2.5.weight"], written["features.5.weight"])
    assert torch.equal(state["loss.perceptual_loss.lin4.model.1.weight"],
                       torch.load(weights / "vgg.pth", weights_only=True)["lin4.model.1.weight"])
    load_vqgan(result.checkpoint, result.config)  # the loss's tensors do not disturb the loader


def test_running_out_of_memory_keeps_the_last_step_and_says_what_to_change(images: Path, tmp_path: Path,
                                                                         monkeypatch) -> None:
    training = VQGANTraining.start(settings(images, tmp_path, steps=5, name="oom", save_every=1000))
    steps = []
    real_step = training._train_step

    def step_that_runs_out_on_the_third() -> dict:
        steps.append(training.step + 1)
        if training.step + 1 == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step()

    monkeypatch.setattr(training, "_train_step", step_that_runs_out_on_the_third)
    with pytest.raises(OutOfMemoryError) as raised:
        training.run()
    said = str(raised.value)
    assert said.startswith("the CPU ran out of memory at step 3 (4 crops of 16 px a micro-batch); lower --batch-size")
    assert said.endswith(f"--resume {training.run_folder} (its last.ckpt is step 2).") and said.count(".") == 2
    kept = torch.load(training.run_folder / "last.ckpt", weights_only=True)
    assert kept["global_step"] == 2  # the two steps done are kept (save_every would have kept none)
    resumed = VQGANTraining.resume(training.run_folder)
    assert resumed.step == 2 and resumed.run().step == 5

    other = VQGANTraining.start(settings(images, tmp_path / "b", steps=2, name="not-memory"))
    monkeypatch.setattr(other, "_train_step", lambda: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # any other error is not said to be memory
        other.run()


def test_a_compiled_run_takes_the_steps_of_an_uncompiled_one(images: Path, tmp_path: Path) -> None:
    """``--compile``: torch.compile'd encoder, decoder and discriminator, through the steps with
    the discriminator on (the adaptive weight takes two gradients before the full backward)."""
    losses, weights = {}, {}
    for compiled in (False, True):
        training = VQGANTraining.start(settings(images, tmp_path / str(compiled), name=f"compiled-{compiled}",
                                                steps=3, disc_start=2, compile=compiled))
        result = training.run()
        losses[compiled] = [(line["loss"], line.get("d_loss")) for line in _metrics(result.run_folder)]
        weights[compiled] = training.vqgan.state_dict()
        for module in (training.vqgan.encoder, training.vqgan.decoder, training.loss.discriminator):
            assert (getattr(module, "_compiled_call_impl", None) is not None) == compiled
    assert losses[True][-1][1] is not None  # the discriminator trained at the last step
    for (loss, d_loss), (expected, expected_d) in zip(losses[True], losses[False], strict=True):
        assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5)
        assert (d_loss is None) == (expected_d is None) and (d_loss is None or abs(d_loss - expected_d) < 1e-4)
    for key, expected in weights[False].items():
        if key.endswith(".k.bias"):  # inert (softmax ignores a shift of every key): its gradient is float noise,
            continue                 # which Adam scales up to a full step, so its value follows the kernels' order
        assert torch.allclose(weights[True][key], expected, atol=2e-5), key


def test_bf16_autocast_trains_with_float32_weights_and_a_loadable_checkpoint(images: Path, tmp_path: Path) -> None:
    training = VQGANTraining.start(settings(images, tmp_path, name="bf16", steps=30, precision="bf16",
                                            log_every=5))
    assert training.dtype == torch.bfloat16
    result = training.run()
    lines = _metrics(result.run_folder)
    assert all(math.isfinite(line["loss"]) for line in lines) and lines[-1]["l1"] < lines[0]["l1"]
    assert all(p.dtype == torch.float32 for p in training.vqgan.parameters())  # autocast: the weights stay fp32
    recorded = json.loads((result.run_folder / "config.json").read_text())
    assert recorded["precision"] == "bfloat16"
    loaded = load_vqgan(result.checkpoint)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in training.vqgan.state_dict().items())
