"""Draw the house's floor plan from the code: ``python docs/import_graph.py [PNG]`` writes
``docs/architecture.png`` (or PNG).

Every module of generator/ (and models/, app.py) is placed on its layer by the rules of
``tests/test_house.py`` (the same function decides, so the picture cannot drift from the test),
grouped by folder and role (a mode's ``cli``/``tab`` on the front-end floor, its ``pipeline`` on
the pipelines floor, the rest on the stages floor), and every import between two groups on
different floors is an arrow (those into the foundation, which nearly everything uses, are
left out). Arrows only ever point down: the test fails otherwise.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_house import LAYERS, _imports, _layer, _modules  # noqa: E402 - the checkout's own rules

WIDTH, ROW, MARGIN, BOX_H = 1700, 110, 24, 40
COLOURS = ["#e8eef7", "#e9f5ec", "#fdf1e3", "#f3e8f7", "#fbeaea", "#e8f4f6", "#f1f1e4", "#eee"]


def group(module: str) -> str:
    """The box a module is drawn in: its folder (and role), or the module itself at the top level."""
    parts = module.split(".")
    if parts[0] != "generator" or len(parts) < 2:
        return module if parts[0] != "models" else "models"
    if len(parts) == 2:
        return parts[1]
    if parts[-1] in ("cli", "tab"):
        return f"{parts[1]} cli+tab"
    return f"{parts[1]} pipeline" if parts[-1] == "pipeline" else parts[1]


def graph() -> tuple[dict[str, int], set[tuple[str, str]]]:
    """(layer of each box, arrows between boxes; arrows into the foundation are left out, since
    nearly every module uses the errors and events)."""
    modules = _modules()
    layers: dict[str, int] = {}
    edges: set[tuple[str, str]] = set()
    for name, path in modules.items():
        layers[group(name)] = _layer(name)
        for target in _imports(path, set(modules)) - {name}:
            if group(target) != group(name) and _layer(target) > 0:
                edges.add((group(name), group(target)))
    return layers, edges


def draw(path: Path) -> Path:
    layers, edges = graph()
    rows: dict[int, list[str]] = defaultdict(list)
    for box, layer in sorted(layers.items()):
        rows[layer].append(box)
    height = MARGIN * 2 + ROW * len(LAYERS)
    image = Image.new("RGB", (WIDTH, height), "white")
    pen = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=15)
    small = ImageFont.load_default(size=13)
    centres: dict[str, tuple[float, float]] = {}
    for index, (name, _) in enumerate(LAYERS):  # the floors, and where each box goes
        top = MARGIN + (len(LAYERS) - 1 - index) * ROW
        pen.rectangle([MARGIN, top, WIDTH - MARGIN, top + ROW - 10], fill=COLOURS[index % len(COLOURS)])
        pen.text((MARGIN + 8, top + 6), name, fill="#444", font=font)
        boxes = rows.get(index, [])
        left, span = 180, WIDTH - 180 - MARGIN * 2
        for position, box in enumerate(boxes):
            centres[box] = (left + span * (position + 0.5) / max(1, len(boxes)), top + (ROW - 10) / 2)
    for source, target in sorted(edges):  # the arrows under the boxes
        (x1, y1), (x2, y2) = centres[source], centres[target]
        start, end = (x1, y1 + BOX_H / 2), (x2, y2 - BOX_H / 2)
        pen.line([start, end], fill="#9aa8c7", width=1)
        pen.polygon([end, (end[0] - 4, end[1] - 8), (end[0] + 4, end[1] - 8)], fill="#7a88a7")
    for box, (centre, y) in centres.items():
        width = pen.textlength(box, font=small) + 14
        pen.rounded_rectangle([centre - width / 2, y - BOX_H / 2, centre + width / 2, y + BOX_H / 2], radius=6,
                              fill="white", outline="#666")
        pen.text((centre - width / 2 + 7, y - 8), box, fill="black", font=small)
    image.save(path)
    return path


if __name__ == "__main__":
    print(draw(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "architecture.png"))
