"""The batch folder's contact sheet: ``index.png`` (every finished image, in job order) and
``index.html`` (the same thumbnails with their prompts, seeds and links to the run folders,
and the failed jobs with their errors). Both are rewritten as jobs finish."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from generator.batch.records import JobRecord
from generator.io.images import contact_sheet, png_bytes

INDEX_PNG = "index.png"
INDEX_HTML = "index.html"
THUMBNAIL = 192


def _thumbnail(path: Path, side: int) -> Image.Image:
    """The image at ``path`` fitted into a white ``side`` x ``side`` square."""
    tile = Image.new("RGB", (side, side), (255, 255, 255))
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((side, side))
        tile.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return tile


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file (the index is meant to be replaced)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_index(folder: Path, records: Sequence[JobRecord], *, title: str = "batch",
                side: int = THUMBNAIL) -> tuple[Path | None, Path]:
    """Write ``index.png`` (None when no job is done yet) and ``index.html`` for ``records``
    (in the order given); returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = [r for r in records if r.status == "done" and r.folder and (folder / r.folder / "final.png").is_file()]
    sheet_path = None
    if done:
        tiles = [_thumbnail(folder / r.folder / "final.png", side) for r in done]  # type: ignore[operator]
        sheet = contact_sheet(tiles, columns=min(len(tiles), 6), gap=4) if len(tiles) > 1 else tiles[0]
        sheet_path = folder / INDEX_PNG
        _replace(sheet_path, png_bytes(sheet, None))
    html_path = folder / INDEX_HTML
    _replace(html_path, _html(records, title, side).encode("utf-8"))
    return sheet_path, html_path


def _html(records: Sequence[JobRecord], title: str, side: int) -> str:
    cells = []
    for record in records:
        prompt = html.escape(record.prompt or "(no text prompt)")
        caption = f"<b>{html.escape(record.id)}</b> seed {record.seed} &middot; {prompt}"
        if record.status == "done" and record.folder:
            link = html.escape(f"{record.folder}/final.png", quote=True)
            folder = html.escape(f"{record.folder}/", quote=True)
            cells.append(f'<figure><a href="{link}"><img src="{link}" width="{side}" alt="{prompt}"></a>'
                         f'<figcaption>{caption}<br><a href="{folder}">run folder</a></figcaption></figure>')
        else:
            cells.append(f'<figure class="failed"><div class="error">{html.escape(record.error or record.status)}'
                         f"</div><figcaption>{caption}</figcaption></figure>")
    done = sum(r.status == "done" for r in records)
    failed = sum(r.status == "failed" for r in records)
    style = ("body{font-family:sans-serif;margin:1em}main{display:flex;flex-wrap:wrap;gap:12px}"
             f"figure{{margin:0;width:{side}px}}figcaption{{font-size:12px;word-wrap:break-word}}"
             f".error{{width:{side}px;height:{side}px;background:#fee;color:#900;font-size:12px;overflow:auto}}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head>\n<body><h1>{html.escape(title)}</h1>"
            f"<p>{done} done, {failed} failed</p>\n<main>\n" + "\n".join(cells) + "\n</main></body></html>\n")
