"""Drawing an X/Y grid: the cells' images in columns (x) and rows (y), the x labels in a header
row and the y labels in a column on the left; and a batch's contact sheet, each image with its
caption under it (:func:`draw_sheet`).

Small images are enlarged by a whole factor (pixels kept sharp) so that each tile is at least
:data:`MIN_TILE` pixels on its longer side, and large ones reduced to at most :data:`MAX_TILE`;
the labels are drawn with Pillow's bundled font at a size that follows the tiles. A cell
without an image is a grey tile saying why (``failed``, ``not made``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

MIN_TILE = 192
MAX_TILE = 512
GAP = 4
_PAD = 6
_MAX_LINES = 3
_BACKGROUND = (255, 255, 255)
_INK = (0, 0, 0)
_MISSING = {"failed": ((150, 150, 150), (40, 40, 40)), "not made": ((215, 215, 215), (90, 90, 90))}
"""Tile and text colours of a cell without an image, by what it says."""


@dataclass(frozen=True)
class GridLayout:
    """Where everything of a grid image is, in pixels.

    Attributes:
        columns, rows: cells across and down.
        tile: (width, height) of every cell.
        left: width of the label column plus its gap (0 without y labels).
        top: height of the header row plus its gap.
        gap: between neighbouring cells.
    """

    columns: int
    rows: int
    tile: tuple[int, int]
    left: int
    top: int
    gap: int = GAP

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the whole image."""
        width, height = self.tile
        return (self.left + self.columns * width + (self.columns - 1) * self.gap,
                self.top + self.rows * height + (self.rows - 1) * self.gap)

    def box(self, x: int, y: int) -> tuple[int, int, int, int]:
        """(left, upper, right, lower) of cell (``x``, ``y``)."""
        width, height = self.tile
        left, upper = self.left + x * (width + self.gap), self.top + y * (height + self.gap)
        return left, upper, left + width, upper + height

    def to_plain(self) -> dict[str, object]:
        """The layout for ``grid.json``."""
        return {"columns": self.columns, "rows": self.rows, "tile": list(self.tile), "left": self.left,
                "top": self.top, "gap": self.gap}


def tile_size(sizes: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], float]:
    """The tile of images of these ``sizes`` (empty: a square :data:`MIN_TILE`) and the factor
    that takes the largest to it: a whole number when enlarging."""
    if not sizes:
        return (MIN_TILE, MIN_TILE), 1.0
    width, height = max(w for w, _ in sizes), max(h for _, h in sizes)
    side = max(width, height)
    factor = float(math.ceil(MIN_TILE / side)) if side < MIN_TILE else min(1.0, MAX_TILE / side)
    return (max(1, round(width * factor)), max(1, round(height * factor))), factor


def fit(image: Image.Image, tile: tuple[int, int]) -> Image.Image:
    """``image`` scaled to fit ``tile`` (by nearest pixels for a whole factor up, else Lanczos),
    centred on a white tile."""
    image = image.convert("RGB")
    factor = min(tile[0] / image.width, tile[1] / image.height)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    if size != image.size:
        whole = factor >= 1 and float(factor).is_integer()
        image = image.resize(size, Image.Resampling.NEAREST if whole else Image.Resampling.LANCZOS)
    if image.size == tile:
        return image
    canvas = Image.new("RGB", tile, _BACKGROUND)
    canvas.paste(image, ((tile[0] - image.width) // 2, (tile[1] - image.height) // 2))
    return canvas


def draw_grid(cells: Sequence[Sequence[Image.Image | str]], x_labels: Sequence[str],
              y_labels: Sequence[str] | None = None) -> tuple[Image.Image, GridLayout]:
    """The grid image of ``cells`` (``cells[y][x]``: an image, or the word a grey tile shows)
    with ``x_labels`` over the columns and ``y_labels`` (if any) left of the rows."""
    rows, columns = len(cells), len(x_labels)
    images = [cell for row in cells for cell in row if isinstance(cell, Image.Image)]
    tile, _ = tile_size([image.size for image in images])
    font = ImageFont.load_default(size=max(12, min(32, min(tile) // 11)))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = _line_height(font)
    header = [_wrap(measure, label, font, tile[0] - 2 * _PAD) for label in x_labels]
    top = max(len(lines) for lines in header) * line_height + 2 * _PAD + GAP
    left, side = 0, []
    if y_labels is not None:
        widest = max(measure.textlength(label, font=font) for label in y_labels)
        column = int(min(max(widest, 4 * line_height), tile[0])) + 2 * _PAD
        side = [_wrap(measure, label, font, column - 2 * _PAD) for label in y_labels]
        left = column + GAP
    layout = GridLayout(columns, rows, tile, left, top)
    canvas = Image.new("RGB", layout.size, _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for x, lines in enumerate(header):
        box = layout.box(x, 0)
        _text(draw, lines, font, line_height, (box[0], 0, box[2], top - GAP))
    for y, lines in enumerate(side):
        box = layout.box(0, y)
        _text(draw, lines, font, line_height, (0, box[1], left - GAP, box[3]))
    for y, row in enumerate(cells):
        for x, cell in enumerate(row):
            box = layout.box(x, y)
            if isinstance(cell, Image.Image):
                canvas.paste(fit(cell, tile), box[:2])
            else:
                fill, ink = _MISSING.get(cell, _MISSING["failed"])
                draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=fill)
                _text(draw, [cell], font, line_height, box, ink=ink)
    return canvas, layout


def draw_sheet(images: Sequence[Image.Image], captions: Sequence[tuple[str, str]], *,
               columns: int = 6) -> Image.Image:
    """A contact sheet: ``images`` scaled to one tile (as a grid's cells are), ``columns``
    across, each with its caption under it: ``(text, detail)``, the text wrapped to at most
    :data:`_MAX_LINES` lines (the prompt) and the detail on a line of its own (the seed)."""
    tile, _ = tile_size([image.size for image in images])
    font = ImageFont.load_default(size=max(12, min(20, min(tile) // 12)))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = _line_height(font)
    lines = [[*_wrap(measure, text, font, tile[0] - 2 * _PAD), detail] for text, detail in captions]
    caption = max(len(caption_lines) for caption_lines in lines) * line_height + 2 * _PAD
    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    layout = GridLayout(columns, rows, (tile[0], tile[1] + caption), 0, 0)
    canvas = Image.new("RGB", layout.size, _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for index, (image, caption_lines) in enumerate(zip(images, lines, strict=True)):
        left, upper, right, lower = layout.box(index % columns, index // columns)
        canvas.paste(fit(image, tile), (left, upper))
        _text(draw, caption_lines, font, line_height, (left, upper + tile[1], right, lower))
    return canvas


def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (10, 2)
    return int(ascent + descent + 2)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
          width: int) -> list[str]:
    """``text`` in lines no wider than ``width`` (words split where they must be), at most
    :data:`_MAX_LINES`, the last cut with an ellipsis."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if draw.textlength(candidate, font=font) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
        while draw.textlength(current, font=font) > width and len(current) > 1:  # a word wider than the line
            cut = len(current)
            while cut > 1 and draw.textlength(current[:cut], font=font) > width:
                cut -= 1
            lines.append(current[:cut])
            current = current[cut:]
    lines.append(current)
    if len(lines) > _MAX_LINES:
        last = lines[_MAX_LINES - 1]
        while last and draw.textlength(last + "…", font=font) > width:
            last = last[:-1]
        lines = [*lines[:_MAX_LINES - 1], last + "…"]
    return lines


def _text(draw: ImageDraw.ImageDraw, lines: Sequence[str], font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
          line_height: int, box: tuple[int, int, int, int], *, ink: tuple[int, int, int] = _INK) -> None:
    """``lines`` centred in ``box``."""
    left, upper, right, lower = box
    y = upper + (lower - upper - len(lines) * line_height) // 2
    for line in lines:
        width = draw.textlength(line, font=font)
        draw.text((left + (right - left - width) / 2, y), line, font=font, fill=ink)
        y += line_height
