"""The batch folder's contact sheet: ``index.png`` (every finished image, in job order, scaled
to one tile with its prompt and seed under it; ``index-2.png``... past :data:`PAGE` images)
and ``index.html`` (the same thumbnails with their prompts, seeds and links to the run folders,
and the failed jobs with their errors). Both are rewritten as jobs finish."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from generator.batch.grid_image import draw_sheet
from generator.batch.records import JobRecord
from generator.io.images import png_bytes

INDEX_PNG = "index.png"
INDEX_HTML = "index.html"
THUMBNAIL = 192
COLUMNS = 6
PAGE = 48
"""Images per contact sheet page (6 across, 8 down)."""


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file (the index is meant to be replaced)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def sheet_name(page: int) -> str:
    """The file of contact sheet page ``page`` (0-based): ``index.png``, ``index-2.png``, ..."""
    return INDEX_PNG if page == 0 else f"index-{page + 1}.png"


def write_index(folder: Path, records: Sequence[JobRecord], *, title: str = "batch",
                side: int = THUMBNAIL) -> tuple[Path | None, Path]:
    """Write the contact sheet of ``records`` (in the order given): ``index.png`` and, past
    :data:`PAGE` images, ``index-2.png``..., every finished image scaled to one tile (small ones
    enlarged with sharp pixels) with its prompt and seed under it; and ``index.html``. Returns
    the first sheet's path (None when no job is done yet) and the page's."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = [r for r in records if r.status == "done" and r.folder and (folder / r.folder / "final.png").is_file()]
    sheet_path = None
    for page, start in enumerate(range(0, len(done), PAGE)):
        chunk = done[start:start + PAGE]
        images = []
        for record in chunk:
            with Image.open(folder / record.folder / "final.png") as image:  # type: ignore[operator]
                images.append(image.convert("RGB"))
        captions = [(record.prompt or "(no text prompt)", f"seed {record.seed}") for record in chunk]
        path = folder / sheet_name(page)
        _replace(path, png_bytes(draw_sheet(images, captions, columns=COLUMNS), None))
        sheet_path = sheet_path or path
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
