"""Reading checkpoints never runs code from them, and harmless foreign classes do not stop a load."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from generator.errors import CheckpointError, UnsafeCheckpointError
from generator.weights.checkpoints import ROOT, open_checkpoint, read_checkpoint
from generator.weights.state_dicts import compare_state_dict, load_strict, state_dict_from
from tests.factories import foreign_class, save_lightning_checkpoint


class _SystemCall:
    """Pickles as a call of os.system that would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Call:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _payload_checkpoint(payload: object) -> dict:
    return {"state_dict": {"w": torch.ones(2)}, "hyper_parameters": payload}


def test_a_pickle_that_calls_os_system_runs_nothing_and_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save(_payload_checkpoint(_SystemCall(marker)), path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.ckpt tries to use posix\.system .*nothing from it was run"):
        read_checkpoint(path)
    assert not marker.exists()


def test_a_legacy_bare_pickle_exploit_is_refused_too(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"state_dict": {}, "hyper_parameters": _SystemCall(marker)}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("func", "args", "named"),
    [
        (eval, ("1+1",), "builtins.eval"),
        (exec, ("import os",), "builtins.exec"),
        (__import__, ("os",), "builtins.__import__"),
        (getattr, (dict, "fromkeys"), "builtins.getattr"),
    ],
)
def test_builtins_that_run_or_import_code_are_refused(tmp_path: Path, func, args, named: str) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save(_payload_checkpoint(_Call(func, *args)), path)
    with pytest.raises(UnsafeCheckpointError, match=named):
        read_checkpoint(path)


def test_importing_an_arbitrary_module_is_refused(tmp_path: Path) -> None:
    import importlib

    path = tmp_path / "evil.ckpt"
    torch.save(_payload_checkpoint(_Call(importlib.import_module, "antigravity")), path)
    with pytest.raises(UnsafeCheckpointError, match="importlib.import_module"):
        read_checkpoint(path)


def test_calling_an_unknown_function_is_refused_without_importing_it(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    with foreign_class("some_plugin.hooks", "install") as func:
        torch.save(_payload_checkpoint(_Call(func, "payload")), path)
    with pytest.raises(UnsafeCheckpointError, match="some_plugin.hooks.install"):
        read_checkpoint(path)


def test_lightning_training_state_loads_its_tensors_and_names_the_rest(tmp_path: Path) -> None:
    path = save_lightning_checkpoint({"encoder.w": torch.arange(6.0).view(2, 3)}, tmp_path / "last.ckpt")
    with pytest.raises(pickle.UnpicklingError):  # what plain weights_only loading says
        torch.load(path, weights_only=True)
    checkpoint = open_checkpoint(path)
    assert torch.equal(checkpoint.load()["state_dict"]["encoder.w"], torch.arange(6.0).view(2, 3))
    # the training state is parsed (as inert stubs) in the child and left out of the copy, named with its type
    assert checkpoint.entries["hparams"] == "Namespace" and checkpoint.entries["global_step"] == "int"
    assert checkpoint.entries["callbacks"] == "dict" and checkpoint.kind == "mapping"


def test_a_class_like_foreign_value_built_by_a_call_is_parsed_as_a_stub(tmp_path: Path) -> None:
    path = tmp_path / "enum.ckpt"
    with foreign_class("pytorch_lightning.trainer.states", "TrainerState") as state_cls:
        torch.save(_payload_checkpoint(_Call(state_cls, "finished")), path)
    checkpoint = open_checkpoint(path)
    assert checkpoint.entries["hyper_parameters"] == "TrainerState"
    assert torch.equal(checkpoint.load()["state_dict"]["w"], torch.ones(2))


def test_restricted_reader_keeps_dtypes_views_and_parameters(tmp_path: Path) -> None:
    base = torch.arange(12, dtype=torch.float16).view(3, 4)
    tensors = {"half_view": base[1:, 1:3], "param": torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16)),
               "long": torch.arange(5), "flag": torch.tensor([True, False])}
    path = tmp_path / "mixed.ckpt"
    with foreign_class("lightning.fabric", "Marker") as marker_cls:
        torch.save({"state_dict": tensors, "marker": marker_cls()}, path)
    state = read_checkpoint(path)["state_dict"]
    for key, tensor in tensors.items():
        assert state[key].dtype == tensor.dtype
        assert torch.equal(state[key], tensor.detach())


def test_torchscript_archives_give_their_parameters_by_attribute_name(tmp_path: Path) -> None:
    linear = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.GELU())
    path = tmp_path / "scripted.pt"
    with pytest.warns(FutureWarning):
        torch.jit.save(torch.jit.script(linear), str(path))
    checkpoint = open_checkpoint(path)
    assert checkpoint.kind == "torchscript" and "GELU" in checkpoint.classes
    state = checkpoint.read(checkpoint.containers[ROOT])
    assert torch.equal(state["0.weight"], linear[0].weight.detach()) and set(state) == {"0.weight", "0.bias"}


def test_safetensors_files_load(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"a": torch.ones(2, 2)}, str(path))
    assert torch.equal(read_checkpoint(path)["a"], torch.ones(2, 2))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"<!DOCTYPE html><html><body>Share link</body></html>", "web page"),
        (b"PK\x03\x04 truncated zip", "truncated or corrupt"),
        (b"\x80\x02}q\x00(X", "truncated or corrupt"),
    ],
)
def test_damaged_files_get_one_clear_sentence(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_a_truncated_real_checkpoint_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "big.ckpt"
    torch.save({"state_dict": {"w": torch.randn(256, 256)}}, path)
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="truncated or corrupt.*download it again"):
        read_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.ckpt")


def test_state_dict_from_unwraps_containers_and_rejects_non_tensors() -> None:
    inner = {"a": torch.ones(1)}
    assert state_dict_from({"state_dict": inner, "epoch": 3}, source="x") == inner
    assert state_dict_from({"params_ema": inner}, source="x", containers=("params_ema", "params")) == inner
    assert state_dict_from(inner, source="x") == inner
    with pytest.raises(CheckpointError, match="its entry 'epoch' is a int"):
        state_dict_from({"epoch": 3, "a": torch.ones(1)}, source="x")
    with pytest.raises(CheckpointError, match="holds a list"):
        state_dict_from([1, 2], source="x")


def test_fit_report_names_shapes_missing_and_unexpected_keys() -> None:
    model = torch.nn.Linear(4, 2)
    state = {"weight": torch.zeros(3, 4), "extra": torch.zeros(1)}
    report = compare_state_dict(model, state)
    assert report.shapes == [("weight", (3, 4), (2, 4))]
    assert report.missing == ["bias"] and report.unexpected == ["extra"]
    with pytest.raises(CheckpointError) as caught:
        load_strict(model, state, source="lin.pth", what="the layer", likely_cause="it is a different layer")
    text = str(caught.value)
    assert text.startswith("lin.pth does not fit the layer: it is a different layer, so weight is [3, 4]")
    assert "1 tensors are missing from the checkpoint (bias)" in text
    assert "\n" not in text
