"""Prior inpainting: ``sample --complete IMAGE --mask MASK`` draws the tokens of the latent cells
the mask touches and keeps every other one as the image's own, then pastes the samples back into
the image through the feathered mask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import generator.sample.pipeline as pipeline
from generator.cli.main import main
from generator.config import SampleConfig
from generator.errors import ConfigError
from generator.events import Done, Notice, Preview
from generator.io.images import cover, pil_to_tensor
from generator.io.outputs import CONFIG_KEY, read_png_text
from generator.sample.conditioning import start_tokens
from generator.sample.loader import Prior, load_prior
from generator.sample.pipeline import Sampler
from generator.sample.sampling import SamplingSettings, sample_in_window, sample_sliding
from tests.prior_factories import TinyPrior, save_tiny_prior

SETTINGS = SamplingSettings(1.0, 8, 0.95)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyPrior:
    return save_tiny_prior(tmp_path_factory.mktemp("prior"), "sos")


@pytest.fixture(scope="module")
def prior(tiny: TinyPrior) -> Prior:
    return load_prior(tiny.checkpoint)


def _photo(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    pixels = (np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _mask(path: Path, size: tuple[int, int], box: tuple[int, int, int, int] | None = None, fill: int = 0) -> Path:
    """A mask file of ``size``: ``fill`` everywhere, white inside ``box`` (left, top, right, bottom)."""
    values = np.full((size[1], size[0]), fill, dtype=np.uint8)
    if box is not None:
        left, top, right, bottom = box
        values[top:bottom, left:right] = 255
    Image.fromarray(values, mode="L").save(path)
    return path


def _cells(grid: tuple[int, int], box: tuple[int, int, int, int], factor: int = 2) -> torch.Tensor:
    """(H, W) bool: the latent cells a pixel box touches (worked out here, not by the code under test)."""
    left, top, right, bottom = box
    cells = torch.zeros(grid, dtype=torch.bool)
    cells[top // factor : (bottom - 1) // factor + 1, left // factor : (right - 1) // factor + 1] = True
    return cells


def _image_tokens(prior: Prior, photo: Path, size: tuple[int, int]) -> torch.Tensor:
    """The (H, W) tokens of the image at the run size, encoded here."""
    pixels = pil_to_tensor(cover(Image.open(photo), size))
    with torch.inference_mode():
        return prior.vqgan.encode_to_indices(pixels * 2 - 1)[0]


def _sampled_tokens(prior: Prior, monkeypatch: pytest.MonkeyPatch, **settings) -> tuple[torch.Tensor, list]:
    """Run the sampler and return the (N, H, W) token grids it decoded last, and its events."""
    decoded: list[torch.Tensor] = []
    real_decode = pipeline._decode

    def spy(prior, tokens, *args, **kwargs):
        decoded.append(tokens.clone())
        return real_decode(prior, tokens, *args, **kwargs)

    monkeypatch.setattr(pipeline, "_decode", spy)
    config = SampleConfig.from_dict({"n": 2, "batch_size": 2, "seed": 0, "output": {"save_every": 0}, **settings})
    events = list(Sampler(prior).run(config))
    return torch.cat(decoded), events


# --- the samplers -------------------------------------------------------------------------------


def test_kept_tokens_stay_and_the_cache_and_recompute_paths_agree(prior: Prior) -> None:
    image = torch.randint(16, (256,), generator=torch.Generator().manual_seed(1))  # (H*W,)
    keep = torch.rand(256, generator=torch.Generator().manual_seed(2)) > 0.3  # kept and drawn cells interleave
    results = []
    for use_cache in (True, False):
        tokens = image.repeat(2, 1)  # (B, H*W)
        rows = list(sample_in_window(prior.gpt, start_tokens(prior, 2, None), tokens, 16, start=0, settings=SETTINGS,
                                     generator=torch.Generator().manual_seed(5), use_cache=use_cache, keep=keep))
        assert rows == list(range(16))
        results.append(tokens)
    assert torch.equal(results[0], results[1])
    assert torch.equal(results[0][:, keep], image[keep].expand(2, -1))
    assert (results[0][:, ~keep] != image[~keep]).any()


def test_kept_tokens_are_read_as_context(prior: Prior) -> None:
    keep = torch.ones(256, dtype=torch.bool)
    keep[200:] = False
    drawn = []
    for seed in (1, 2):  # two images, the same draws
        tokens = torch.randint(16, (1, 256), generator=torch.Generator().manual_seed(seed))
        list(sample_in_window(prior.gpt, start_tokens(prior, 1, None), tokens, 16, start=0, settings=SETTINGS,
                              generator=torch.Generator().manual_seed(5), keep=keep))
        drawn.append(tokens[:, 200:])
    assert not torch.equal(drawn[0], drawn[1])


def test_a_mask_of_the_first_tokens_is_completion(prior: Prior) -> None:
    """Keeping the first 100 positions by mask draws what completion from position 100 draws."""
    image = torch.randint(16, (1, 256), generator=torch.Generator().manual_seed(3))
    keep = torch.arange(256) < 100
    for use_cache in (True, False):
        by_mask, by_start = image.clone(), image.clone()
        cond = start_tokens(prior, 1, None)
        list(sample_in_window(prior.gpt, cond, by_mask, 16, start=0, settings=SETTINGS,
                              generator=torch.Generator().manual_seed(7), use_cache=use_cache, keep=keep))
        list(sample_in_window(prior.gpt, cond, by_start, 16, start=100, settings=SETTINGS,
                              generator=torch.Generator().manual_seed(7), use_cache=use_cache))
        assert torch.equal(by_mask, by_start)


def test_the_sliding_window_keeps_what_the_mask_keeps(prior: Prior) -> None:
    image = torch.randint(16, (24, 40), generator=torch.Generator().manual_seed(4))  # (H, W), larger than 16x16
    keep = torch.ones(24, 40, dtype=torch.bool)
    keep[5:15, 12:33] = False
    tokens = image.repeat(2, 1, 1)  # (B, H, W)
    rows = list(sample_sliding(prior.gpt, start_tokens(prior, 2, None), tokens, (16, 16), start=0, settings=SETTINGS,
                               generator=torch.Generator().manual_seed(5), keep=keep))
    assert rows == list(range(24))
    assert torch.equal(tokens[:, keep], image[keep].expand(2, -1))
    assert (tokens[:, ~keep] != image[~keep]).float().mean() > 0.3


# --- the sampling run ---------------------------------------------------------------------------


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_masked_run_keeps_every_unmasked_token(prior: Prior, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 use_cache: bool) -> None:
    photo = _photo(tmp_path / "photo.png", (32, 32))
    box = (11, 9, 22, 26)
    mask = _mask(tmp_path / "mask.png", (32, 32), box)
    tokens, _ = _sampled_tokens(prior, monkeypatch, complete=str(photo), mask=str(mask), use_cache=use_cache)
    image, masked = _image_tokens(prior, photo, (32, 32)), _cells((16, 16), box)
    assert torch.equal(tokens[:, ~masked], image[~masked].expand(2, -1))
    assert (tokens[:, masked] != image[masked]).float().mean() > 0.3
    other, _ = _sampled_tokens(prior, monkeypatch, complete=str(photo), mask=str(mask), use_cache=not use_cache)
    assert torch.equal(tokens, other)


def test_a_masked_run_larger_than_the_window_keeps_every_unmasked_token(prior: Prior, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    photo = _photo(tmp_path / "photo.png", (80, 48))
    box = (30, 10, 61, 30)
    mask = _mask(tmp_path / "mask.png", (80, 48), box)
    tokens, events = _sampled_tokens(prior, monkeypatch, complete=str(photo), mask=str(mask), size=[80, 48])
    image, masked = _image_tokens(prior, photo, (80, 48)), _cells((24, 40), box)
    assert tokens.shape == (2, 24, 40)
    assert torch.equal(tokens[:, ~masked], image[~masked].expand(2, -1))
    assert (tokens[:, masked] != image[masked]).float().mean() > 0.3
    assert [im.size for im in events[-1].images] == [(80, 48)] * 2


def test_pixels_outside_a_hard_mask_are_the_input_exactly(prior: Prior, tmp_path: Path) -> None:
    photo = _photo(tmp_path / "photo.png", (32, 32))
    box = (11, 9, 22, 26)
    mask = _mask(tmp_path / "mask.png", (32, 32), box)
    config = SampleConfig.from_dict({"n": 2, "batch_size": 2, "seed": 0, "complete": str(photo), "mask": str(mask),
                                     "output": {"save_every": 8}})
    events = list(Sampler(prior).run(config))
    original = np.asarray(Image.open(photo))
    inside = np.asarray(Image.open(mask)) > 0
    done = events[-1]
    assert isinstance(done, Done)
    previews = [e.image for e in events if isinstance(e, Preview)]
    assert previews and previews[0].size == (66, 32)  # two samples side by side, 2 pixels apart
    for image in [*done.images, *(p.crop((34 * k, 0, 34 * k + 32, 32)) for p in previews for k in (0, 1))]:
        pixels = np.asarray(image)
        assert np.array_equal(pixels[~inside], original[~inside])
        assert (pixels[inside] != original[inside]).any(axis=-1).mean() > 0.5


def test_a_feathered_mask_blends_across_its_edge(prior: Prior, tmp_path: Path) -> None:
    photo = _photo(tmp_path / "photo.png", (32, 32))
    mask = _mask(tmp_path / "mask.png", (32, 32), (12, 12, 20, 20))
    done = list(Sampler(prior).run(SampleConfig(n=1, batch_size=1, seed=0, complete=str(photo), mask=str(mask),
                                                mask_blur=1.5)))[-1]
    change = np.abs(np.asarray(done.images[0], dtype=int) - np.asarray(Image.open(photo), dtype=int)).max(axis=-1)
    assert change[:4].max() == 0 and change[:, :4].max() == 0  # far from the mask: the input
    assert change[10, 12:20].max() > 0  # just outside the hard edge: blended


def test_the_transparency_of_the_image_is_the_mask(prior: Prior, tmp_path: Path, monkeypatch) -> None:
    rgb = np.asarray(Image.open(_photo(tmp_path / "rgb.png", (32, 32))))
    alpha = np.full((32, 32), 255, dtype=np.uint8)
    alpha[0:8, 16:32] = 0
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(tmp_path / "photo.png")
    tokens, events = _sampled_tokens(prior, monkeypatch, complete=str(tmp_path / "photo.png"), mask="alpha")
    image, masked = _image_tokens(prior, tmp_path / "photo.png", (32, 32)), _cells((16, 16), (16, 0, 32, 8))
    assert torch.equal(tokens[:, ~masked], image[~masked].expand(2, -1))
    assert np.array_equal(np.asarray(events[-1].images[0])[alpha > 0], rgb[alpha > 0])


def test_a_mask_needs_the_image_it_edits() -> None:
    with pytest.raises(ConfigError, match="mask needs the image it edits; give it with --complete IMAGE"):
        SampleConfig(mask="mask.png")
    with pytest.raises(ConfigError, match="mask_blur must be between 0 and 256 pixels"):
        SampleConfig(complete="photo.png", mask="mask.png", mask_blur=-1)


# --- the command line ---------------------------------------------------------------------------


def _cli(tiny: TinyPrior, out: Path, *args: str) -> list[str]:
    return ["sample", "--transformer", str(tiny.checkpoint), "-n", "1", "--seed", "0", "--out", str(out), *args]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no image", "mask needs the image it edits; give it with --complete IMAGE."),
        ("black", "the mask is black everywhere, so nothing would change; paint white where the image should change."),
        ("white", "the mask is white everywhere, so nothing of the image would be kept"),
        ("not an image", "is not an image this tool can read"),
        ("missing", "does not exist; check the path."),
        ("no alpha", "has no transparency to take the mask from"),
    ],
)
def test_bad_masks_are_one_sentence_and_write_nothing(tiny: TinyPrior, tmp_path: Path, capsys, case: str,
                                                      message: str) -> None:
    photo = _photo(tmp_path / "photo.png", (32, 32))
    mask = {"no image": _mask(tmp_path / "some.png", (32, 32), (0, 0, 8, 8)),
            "black": _mask(tmp_path / "black.png", (32, 32)),
            "white": _mask(tmp_path / "white.png", (32, 32), fill=255),
            "missing": tmp_path / "nowhere.png",
            "no alpha": "alpha"}.get(case)
    if case == "not an image":
        mask = tmp_path / "text.png"
        mask.write_text("not a picture")
    args = ["--mask", str(mask)] + ([] if case == "no image" else ["--complete", str(photo)])
    out = tmp_path / "out"
    assert main(_cli(tiny, out, *args)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert not out.exists() or not any(out.iterdir())


def test_a_mask_of_another_size_is_stretched_with_a_notice(tiny: TinyPrior, tmp_path: Path, capsys) -> None:
    photo = _photo(tmp_path / "photo.png", (32, 32))
    mask = _mask(tmp_path / "small.png", (16, 16), (5, 4, 11, 13))
    assert main(_cli(tiny, tmp_path / "out", "--complete", str(photo), "--mask", str(mask))) == 0
    assert "note: the mask small.png is 16x16 and the image 32x32; the mask was stretched to fit." in \
        capsys.readouterr().err


def test_the_recorded_config_holds_the_mask_and_repeats_the_run(tiny: TinyPrior, tmp_path: Path) -> None:
    photo = _photo(tmp_path / "photo.png", (32, 32))
    mask = _mask(tmp_path / "mask.png", (32, 32), (11, 9, 22, 26))
    assert main(_cli(tiny, tmp_path / "a", "--complete", str(photo), "--mask", str(mask), "--mask-blur", "2")) == 0
    (folder,) = (tmp_path / "a").iterdir()
    for config in (json.loads((folder / "config.json").read_text()),
                   json.loads(read_png_text(folder / "sample-000.png")[CONFIG_KEY])):
        assert config["mask"] == "complete-mask.png" and config["mask_blur"] == 2.0
        assert config["complete"] == "complete.png"  # kept beside the samples
    assert np.array_equal(np.asarray(Image.open(folder / "complete-mask.png")), np.asarray(Image.open(mask)))
    photo.unlink()
    mask.unlink()  # the run repeats from what it kept
    assert main(["sample", "--from", str(folder / "sample-000.png"), "--out", str(tmp_path / "b")]) == 0
    (again,) = (tmp_path / "b").iterdir()
    assert np.array_equal(np.asarray(Image.open(folder / "sample-000.png")),
                          np.asarray(Image.open(again / "sample-000.png")))


def test_notices_come_before_any_sampling(prior: Prior, tmp_path: Path) -> None:
    photo = _photo(tmp_path / "photo.png", (32, 32))
    mask = _mask(tmp_path / "wide.png", (64, 40), (10, 10, 30, 30))
    events = list(Sampler(prior).run(SampleConfig(n=1, batch_size=1, seed=0, complete=str(photo), mask=str(mask))))
    assert isinstance(events[0], Notice) and "stretched to fit" in events[0].message
