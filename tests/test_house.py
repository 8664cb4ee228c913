"""The house rules: layers without upward imports or circles, no global side effects on import,
requirements that agree with the package metadata, and an install that works from any folder."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Front ends on top, weights and file I/O near the bottom. A module may import its own layer
# or a lower one, never a higher one. Every folder of generator/ not named below is a stage (a
# mode's folder or a shared stage such as decoder/); inside it, ``pipeline`` modules are
# pipelines and ``cli``/``tab`` modules are front ends, so a new mode needs no line here.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("generator.errors", "generator.events", "generator.mode", "models")),
    ("weights and io", ("generator.config_schema", "generator.config", "generator.devices", "generator.runs",
                        "generator.io", "generator.weights")),
    ("stages", ()),
    ("model owner", ("generator.workbench",)),
    ("pipelines", ()),
    ("driver", ("generator.drive",)),
    ("batch", ("generator.batch",)),
    ("front ends", ("generator.cli", "generator.webui", "generator.serving", "generator.__main__", "app")),
]
ROLES = {"pipeline": "pipelines", "cli": "front ends", "tab": "front ends"}
"""A stage folder's modules of these names sit on these layers."""


def _index(name: str) -> int:
    return next(index for index, (layer, _) in enumerate(LAYERS) if layer == name)


def _layer(module: str) -> int:
    """The layer of a module: the package itself is the foundation; then the longest prefix
    that matches; a stage's ``pipeline``, ``cli`` and ``tab`` by their role; any other module
    of generator/ is a stage's internals."""
    if module == "generator":
        return 0
    best, found = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    if found >= 0:
        return found
    assert module.startswith("generator."), f"{module} belongs to no layer; add it to LAYERS"
    role = ROLES.get(module.rsplit(".", 1)[-1]) if module.count(".") >= 2 else None
    return _index(role or "stages")


def _modules() -> dict[str, Path]:
    files = [*ROOT.glob("generator/**/*.py"), *ROOT.glob("models/**/*.py"), ROOT / "app.py"]
    modules = {}
    for path in files:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(path: Path, known: set[str]) -> set[str]:
    """Project modules imported anywhere in a file (deferred imports inside functions count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name not in ("generator", "models"):
                found.add(name)
    return found


def test_no_module_imports_a_higher_layer_and_there_is_no_circle() -> None:
    modules = _modules()
    graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
    upward = [f"{name} ({LAYERS[_layer(name)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
              for name, targets in graph.items() for target in targets if _layer(target) > _layer(name)]
    assert not upward, "\n".join(upward)
    # depth-first search for a cycle
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                pytest.fail("import circle: " + " -> ".join([*trail[trail.index(target):], target]))
            if target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_importing_every_module_changes_no_global_state() -> None:
    code = textwrap.dedent("""
        import importlib, json, logging, os, pathlib, sys
        # third-party libraries set variables of their own on import (tokenizers, inductor)
        import gradio, imageio, kornia, open_clip, spandrel, torch, torchvision
        before = dict(os.environ)
        root = logging.getLogger()
        handlers, filters, level = list(root.handlers), list(root.filters), root.level
        import open_clip.factory as f
        paths = list(f._MODEL_CONFIG_PATHS)
        for path in sorted(pathlib.Path("generator").rglob("*.py")):
            if path.name != "__main__.py":
                importlib.import_module(".".join(path.with_suffix("").parts).removesuffix(".__init__"))
        import app
        changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
        print(json.dumps({"env": changed, "root": [root.handlers == handlers, root.filters == filters,
                          root.level == level], "open_clip": f._MODEL_CONFIG_PATHS == paths}))
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180,
                            env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
                                 "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == '{"env": [], "root": [true, true, true], "open_clip": true}'


def _requirement_names(lines: list[str]) -> dict[str, str]:
    specs = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[<>=!~\[ ]", line, maxsplit=1)[0].lower().replace("_", "-")
            specs[name] = line.replace(" ", "")
    return specs


def test_requirements_txt_and_the_package_dependencies_agree() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _requirement_names(project["dependencies"])
    required = _requirement_names((ROOT / "requirements.txt").read_text().splitlines())
    assert declared == required
    packages = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in ROOT.glob("generator/**/__init__.py")}
    assert folders | {"models", "generator.presets_data"} == packages


def test_the_package_installs_and_works_from_any_folder(tmp_path: Path, tiny_files) -> None:
    """pip install into a fresh virtual environment (its dependencies seen through a .pth file
    pointing at this environment, so nothing is downloaded), then the console script,
    ``python -m generator`` and the README's Python API, run from an unrelated folder."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(ours + "\n")
    # build the wheel with this environment's setuptools, then let the fresh pip resolve its
    # dependencies (all satisfied through the .pth file, so --no-index finds them installed)
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    left_out = {"outputs", "weights", "build", "tests", "docs", "bench", "__pycache__"}
    shutil.copytree(ROOT, source, ignore=lambda folder, names: [
        n for n in names if n.startswith(".") or n.endswith(".egg-info") or n == "__pycache__"
        or (Path(folder) == ROOT and n in left_out)])
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600,
                           cwd=tmp_path)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp_path / "dist").glob("vqgan_studio-*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "-q",
                              str(wheel)],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert install.returncode == 0, install.stdout + install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "GENERATOR_OFFLINE": "1"}
    for command in (["vqgan-studio", "--help"], [str(python), "-m", "generator", "--help"],
                    [str(python), "-m", "generator", "presets"]):
        result = subprocess.run(command, cwd=elsewhere, capture_output=True, text=True, timeout=180, env=env)
        assert result.returncode == 0, result.stderr
    assert "fast" in result.stdout  # the presets travel with the package
    api = textwrap.dedent(f"""
        import generator
        assert not generator.__file__.startswith({str(ROOT)!r}), generator.__file__
        from generator.config import GenerationConfig
        from generator.events import Done
        from generator.text_to_image.pipeline import TextToImage
        from generator.weights.store import weights_dir
        assert str(weights_dir()).endswith("vqgan-studio/weights"), weights_dir()
        models = {{"vqgan": {str(tiny_files.vqgan)!r}, "vqgan_config": {str(tiny_files.vqgan_config)!r},
                  "clip_models": [{{"model": {str(tiny_files.clip_config)!r},
                                    "pretrained": {str(tiny_files.clip_weights)!r}}}]}}
        config = GenerationConfig.from_dict({{"prompts": "city at night", "size": [32, 32], "steps": 2, "seed": 7,
                                              "cutouts": {{"cutn": 2}}, "models": models}})
        pipe = TextToImage.from_pretrained(config.models, device="cpu")
        done = [e for e in pipe.run(config) if isinstance(e, Done)][0]
        print(done.images[0].size, done.seed)
    """)
    result = subprocess.run([str(python), "-c", api], cwd=elsewhere, capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "(32, 32) 7"


def _mode_names_used(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) where a module tells modes apart by a spelled-out name: a comparison with
    one (or with a collection of nothing but mode names), a ``mode=``/``kind=`` argument, the
    first argument of a run record, or a table keyed by two or more. A config key that happens
    to share a mode's name (``"upscale"``, the sub-config) is none of these."""
    found = []

    def strings(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Constant) and node.value in names:
            return [node.value]
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            constants = [element.value for element in node.elts if isinstance(element, ast.Constant)]
            return constants if constants and all(value in names for value in constants) else []
        return []

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            found += [(node.lineno, name) for part in (node.left, *node.comparators) for name in strings(part)]
        elif isinstance(node, ast.keyword) and node.arg in ("mode", "kind"):
            found += [(node.value.lineno, name) for name in strings(node.value)]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("RunState", "RunRecord") and node.args:
            found += [(node.lineno, name) for name in strings(node.args[0])]
        elif isinstance(node, ast.Dict):
            keys = [key.value for key in node.keys if isinstance(key, ast.Constant)]
            if len(keys) >= 2 and all(key in names for key in keys):
                found += [(node.lineno, key) for key in keys]
    return found


def test_no_module_tells_modes_apart_by_a_spelled_out_name() -> None:
    """Mode names are spelled in the mode descriptors (``<mode>/mode.py``) and nowhere else: the
    rest of the house asks the registry (generator/modes.py) or a descriptor."""
    from generator import modes

    names = set(modes.MODES)
    offenders = []
    for name, path in _modules().items():
        if path.name == "mode.py" or name == "generator.modes":
            continue
        offenders += [f"{path.relative_to(ROOT)}:{line} spells the mode {mode!r}"
                      for line, mode in _mode_names_used(ast.parse(path.read_text()), names)]
    assert not offenders, "\n".join(offenders)


def test_the_spelled_mode_check_notices_what_it_looks_for() -> None:
    tree = ast.parse("if record.mode == 'sample': pass\nf(kind='sample')\nRunState('sample', 'x')\n"
                     "TABLE = {'sample': 1, 'upscale': 2}\nmode in ('upscale', 'sample')\nconfig.get('upscale')\n"
                     "{'upscale': {}, 'source': 1}\nkey in ('total', 'upscale')\n")
    assert sorted({line for line, _ in _mode_names_used(tree, {"sample", "upscale"})}) == [1, 2, 3, 4, 5]


STAGES_ON_THE_DECODER = ("generator.text_to_image", "generator.animate", "generator.reconstruct", "generator.edit")
"""Stages that use a first stage through the decoder protocol only."""


def test_stages_depend_on_the_decoder_protocol_not_the_vqgan_class() -> None:
    from generator.decoder.protocol import Decoder
    from tests.factories import tiny_vqgan

    modules = _modules()
    direct = [name for name, path in modules.items() if name.startswith(STAGES_ON_THE_DECODER)
              and "models.vqgan" in _imports(path, set(modules) | {"models.vqgan"})]
    assert not direct, f"these import the VQGAN class instead of the decoder protocol: {direct}"
    assert isinstance(tiny_vqgan(), Decoder)


def test_the_architecture_document_follows_the_plan(tmp_path: Path) -> None:
    """docs/architecture.md names the floors of LAYERS in order and every registered mode's folder,
    and its picture is drawn by a script that still runs against the current code."""
    from generator import modes

    text = (ROOT / "docs" / "architecture.md").read_text()
    table = re.findall(r"^\| ([a-z ]+) \| ", text, flags=re.MULTILINE)
    assert table[1:] == [name for name, _ in LAYERS]  # the first row is the table's head
    missing = [mode.name for mode in modes.MODES.values() if f"`{mode.cli.split('.')[1]}/`" not in text]
    assert len(modes.MODES) >= 5 and not missing, f"docs/architecture.md does not name the folders of {missing}"
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "import_graph.py"), str(tmp_path / "plan.png")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    from PIL import Image

    with Image.open(tmp_path / "plan.png") as picture:
        assert picture.height > 100 * len(LAYERS)
