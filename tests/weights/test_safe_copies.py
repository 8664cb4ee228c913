"""The trust boundary for checkpoints: pickles are parsed once, by a limited child, into a
safetensors copy keyed by the file's sha256; every load reads only that copy (or a user's
safetensors file), header first, into private memory."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import stat
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from generator.errors import CheckpointError
from generator.weights import copies, sandbox
from generator.weights.checkpoints import open_checkpoint, read_checkpoint
from generator.weights.tensor_file import TensorFile, write_tensor_file
from tests.factories import save_lightning_checkpoint, tiny_vqgan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store of safe copies of this test's own."""
    folder = tmp_path / "copies"
    monkeypatch.setenv(copies.COPIES_ENV, str(folder))
    return folder


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files a limited child was started for."""
    started: list[Path] = []
    real = sandbox.make_safe_copy

    def counting(source, *args, **kwargs):
        started.append(Path(source))
        return real(source, *args, **kwargs)

    monkeypatch.setattr("generator.weights.checkpoints.make_safe_copy", counting)
    return started


def _vqgan_file(tmp_path: Path, seed: int = 0, name: str = "vqgan.ckpt") -> tuple[Path, torch.nn.Module]:
    model = tiny_vqgan(seed=seed)
    return save_lightning_checkpoint(model.state_dict(), tmp_path / name), model


def test_a_pickle_is_parsed_once_then_only_its_read_only_copy_is_read(tmp_path: Path, store: Path,
                                                                      children: list[Path]) -> None:
    from generator.decoder.loader import load_vqgan

    path, model = _vqgan_file(tmp_path)
    first = load_vqgan(path, model.config)
    second = load_vqgan(path, model.config)
    renamed = tmp_path / "elsewhere" / "same-bytes.ckpt"
    renamed.parent.mkdir()
    renamed.write_bytes(path.read_bytes())
    third = load_vqgan(renamed, model.config)
    assert children == [path]  # one child, for the first load only
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    copy = store / f"{digest}.safetensors"
    assert copy.is_file() and stat.S_IMODE(copy.stat().st_mode) == 0o444
    for loaded in (first, second, third):
        for key, tensor in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], tensor), key
    # another process finds the copy by the file's size, times and inode, and never starts a child
    script = textwrap.dedent("""
        import sys
        import generator.weights.checkpoints as checkpoints
        def refuse(*args, **kwargs):
            raise SystemExit("a child was started")
        checkpoints.make_safe_copy = refuse
        from generator.decoder.loader import load_vqgan
        print(sum(p.numel() for p in load_vqgan(sys.argv[1]).parameters()))
    """)
    result = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) == sum(p.numel() for p in model.parameters())


def test_a_relative_path_is_the_callers_not_the_childs(tmp_path: Path, store: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path, model = _vqgan_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    loaded = read_checkpoint(path.name)["state_dict"]
    assert torch.equal(loaded["encoder.conv_in.weight"], model.state_dict()["encoder.conv_in.weight"])


def test_the_copy_holds_the_state_dict_not_the_training_state(tmp_path: Path, store: Path) -> None:
    path, model = _vqgan_file(tmp_path)
    checkpoint = open_checkpoint(path)
    assert set(checkpoint.containers) == {"state_dict"}  # callbacks, optimizer state: named, not copied
    assert checkpoint.entries["optimizer_states"] == "list" and checkpoint.entries["epoch"] == "int"
    with TensorFile(checkpoint.file.path) as copy:
        assert copy.metadata["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert copy.metadata["format"] == "vqgan-studio-safe-copy/1"


def test_weights_live_in_private_memory_so_a_file_rewritten_or_truncated_mid_run_changes_nothing(
        tmp_path: Path, store: Path) -> None:
    """Loaded, then the checkpoint is overwritten with other weights and its safe copy truncated
    to nothing: the running model decodes exactly as before, and no mapping of either file exists."""
    from generator.decoder.loader import load_vqgan

    path = tmp_path / "stored.pth"
    model = tiny_vqgan(seed=1)
    torch.save(model.state_dict(), path)  # a stored (uncompressed) zip: round 1 memory-mapped these
    loaded = load_vqgan(path, model.config)
    codes = torch.randint(0, model.config.n_embed, (1, 4, 4), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = loaded.decode_indices(codes)
    (copy,) = store.glob("*.safetensors")
    maps = Path("/proc/self/maps").read_text()
    assert str(copy) not in maps and str(path) not in maps
    other = tiny_vqgan(seed=2)
    torch.save(other.state_dict(), path)  # same size, other weights
    os.chmod(copy, 0o644)
    copy.write_bytes(b"")  # truncated: a mapped file would now raise SIGBUS on access
    with torch.no_grad():
        after = loaded.decode_indices(codes)
    assert torch.equal(before, after)


def test_a_file_truncated_between_its_header_check_and_its_read_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    write_tensor_file(path, {"a": torch.randn(64, 64), "b": torch.randn(8)})
    checkpoint = open_checkpoint(path)
    with open(path, "r+b") as handle:
        handle.truncate(200)
    with pytest.raises(CheckpointError, match="changed or was truncated while it was being read"):
        checkpoint.load()


def _safetensors(path: Path, header: dict, data: bytes, *, length: int | None = None) -> Path:
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded) if length is None else length) + encoded + data)
    return path


@pytest.mark.parametrize(("header", "data", "length", "pattern"), [
    ({"w": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 16]}}, b"\0" * 16, None,
     "shape that does not match its byte range"),
    ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
      "v": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, b"\0" * 24, None, "overlaps another"),
    ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, None, "outside the file"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 16, None, "gap"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 64, None, "data section has 64"),
    ({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "unknown dtype"),
    ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "malformed shape"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 2**40, "header claims more bytes"),
    ({"__metadata__": {"a": 1}}, b"", None, "metadata are not strings"),
])
def test_a_safetensors_header_that_lies_is_refused_before_any_tensor_is_allocated(
        tmp_path: Path, header: dict, data: bytes, length: int | None, pattern: str) -> None:
    path = _safetensors(tmp_path / "lie.safetensors", header, data, length=length)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match=pattern) as caught:
        read_checkpoint(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB
    assert "\n" not in str(caught.value) and str(caught.value).endswith(".")


def test_our_writer_is_read_by_the_safetensors_library_and_back(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    tensors = {"f": torch.randn(3, 5), "h": torch.randn(7).half(), "b": torch.randn(2, 2).bfloat16(),
               "i": torch.arange(6).view(2, 3), "t": torch.tensor([True, False]), "e": torch.zeros(0, 4),
               "s": torch.tensor(3.5), "view": torch.randn(4, 6)[:, 1:3]}
    path = tmp_path / "mine.safetensors"
    write_tensor_file(path, tensors, {"note": "x"})
    for loaded in (load_file(str(path)), read_checkpoint(path)):
        assert set(loaded) == set(tensors)
        for key, tensor in tensors.items():
            assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor), key


def test_only_the_tensors_a_model_needs_are_read(tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from generator.decoder.loader import load_vqgan

    path, model = _vqgan_file(tmp_path)
    read: list[str] = []
    real = TensorFile.read

    def spy(self, tensors):
        read.extend(tensors)
        return real(self, tensors)

    monkeypatch.setattr(TensorFile, "read", spy)
    load_vqgan(path, model.config)
    assert set(read) == set(model.state_dict()) and not any(key.startswith("loss.") for key in read)


def test_a_refused_file_is_not_parsed_again_unless_the_limits_grow(tmp_path: Path, store: Path,
                                                                   children: list[Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.weights.hostile import bytearray_through_rebuild, plain_checkpoint

    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "x": _SystemCall()}, unsafe)
    bomb = plain_checkpoint(tmp_path / "bomb.ckpt", bytearray_through_rebuild)
    for _ in range(2):
        for path, pattern in ((unsafe, "tries to use posix.system"), (bomb, "GB of memory to read")):
            with pytest.raises(CheckpointError, match=pattern):
                open_checkpoint(path)
    assert children == [unsafe, bomb]
    copy = tmp_path / "copy-of-unsafe.pth"  # the same bytes under another name: refused by record, named right
    copy.write_bytes(unsafe.read_bytes())
    with pytest.raises(CheckpointError, match=r"^copy-of-unsafe\.pth tries to use posix\.system"):
        open_checkpoint(copy)
    monkeypatch.setenv(sandbox.MEMORY_ENV, "2048")  # more memory: the bomb is tried again (and still refused)
    with pytest.raises(CheckpointError, match="GB of memory to read"):
        open_checkpoint(bomb)
    assert children == [unsafe, bomb, bomb]


class _SystemCall:
    def __reduce__(self):
        return (os.system, ("touch /tmp/pwned-by-test",))


def test_the_child_inherits_no_secrets_descriptors_or_input(tmp_path: Path, store: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}
    real = subprocess.Popen

    def spy(command, **kwargs):
        seen.update(kwargs, command=command)
        return real(command, **kwargs)

    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setattr(sandbox.subprocess, "Popen", spy)
    path, _ = _vqgan_file(tmp_path)
    open_checkpoint(path).close()
    env = seen["env"]
    assert "HF_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env and "hf_secret" not in json.dumps(env)
    assert seen["stdin"] == subprocess.DEVNULL and seen["close_fds"] and seen["start_new_session"]
    assert seen["command"][1] == "-I"  # isolated: no user site, no PYTHON* variables, no working folder on the path


def test_the_child_sets_its_limits_before_it_reads(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import json, resource
        from generator.weights.safe_copy import apply_limits
        apply_limits(3 * 2**30, 17, 5 * 2**20)
        print(json.dumps({name: resource.getrlimit(getattr(resource, name)) for name in
                          ("RLIMIT_DATA", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")}))
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    limits = json.loads(result.stdout)
    assert limits["RLIMIT_DATA"] == [3 * 2**30] * 2 and limits["RLIMIT_CPU"] == [17, 22]
    assert limits["RLIMIT_FSIZE"] == [5 * 2**20] * 2 and limits["RLIMIT_NOFILE"] == [64, 64]
    assert limits["RLIMIT_CORE"] == [0, 0]
    source = (ROOT / "generator" / "weights" / "safe_copy.py").read_text()
    main = source[source.index("def main("):]
    assert main.index("apply_limits(") < main.index("read_bytes()")  # limits first, then the file


def test_with_no_writable_store_copies_go_to_a_private_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store would be")
    monkeypatch.setenv(copies.COPIES_ENV, str(blocked))
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    monkeypatch.setattr(copies, "_fallback", None)
    path, model = _vqgan_file(tmp_path)
    loaded = read_checkpoint(path)["state_dict"]
    assert torch.equal(loaded["encoder.conv_in.weight"], model.state_dict()["encoder.conv_in.weight"])
    assert copies._fallback is not None and any(copies._fallback.glob("*.safetensors"))
