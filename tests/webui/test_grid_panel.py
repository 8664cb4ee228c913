"""The web UI's X/Y grid panel without a browser: the grid job made with the page's models, its
Stop, its refusals, and the tab's API endpoint."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from generator.batch.grid import GRID_JSON, GRID_PNG
from generator.webui.forms import to_form
from generator.webui.grid_jobs import MAX_WEB_CELLS, grid_job, parse_web_axis
from generator.webui.paths import PathPolicy
from generator.webui.studio import Studio
from generator.webui.visitors import VISITOR_COOKIE, new_secret
from tests.factories import tiny_run_config


def described(folder: Path) -> dict:
    return json.loads((folder / GRID_JSON).read_text())


def nothing_written(studio: Studio) -> bool:
    return not studio.outputs_dir.exists() or not any(studio.outputs_dir.iterdir())


def _request() -> SimpleNamespace:
    return SimpleNamespace(cookies={VISITOR_COOKIE: new_secret()}, session_hash="one")


def test_a_3x2_grid_from_the_page_streams_previews_and_draws_the_labelled_grid(studio: Studio, tiny_files) -> None:
    visitor, stranger = _request(), _request()
    session = studio.session(visitor)
    config = tiny_run_config(tiny_files, steps=4, output={"save_every": 2})
    x, y = parse_web_axis("X", "seed", "1, 2, 3"), parse_web_axis("Y", "cutn", "2, 4")
    updates = list(grid_job(studio, config, x, y, session))
    assert sum(u.preview is not None for u in updates) == 6 * 2  # two previews per cell, live
    texts = [u.progress[2] for u in updates if u.progress]
    assert texts[0].startswith("cell 1 of 6 (seed=1, cutn=2) · optimise 1/4")
    assert texts[-1].startswith("cell 6 of 6 (seed=3, cutn=4)")
    final = updates[-1]
    grid_png = Path(final.result)
    folder = grid_png.parent
    assert grid_png.name == GRID_PNG and folder.parent == studio.outputs_dir
    assert final.status.startswith("grid done: 6 of 6 cells")
    cells = {(c["x"], c["y"]): c for c in described(folder)["cells"]}
    assert len(cells) == 6 and all(c["status"] == "done" for c in cells.values())
    assert cells[2, 1]["labels"] == ["seed=3", "cutn=4"] and cells[2, 1]["seed"] == 3
    kept = json.loads((folder / cells[2, 1]["folder"] / "config.json").read_text())
    assert kept["seed"] == 3 and kept["cutouts"]["cutn"] == 4 and kept["steps"] == 4
    picture = Image.open(grid_png).convert("RGB")
    for cell in cells.values():  # each tile is its cell's own image, scaled into its box
        tile = picture.crop(cell["box"])
        own = Image.open(folder / cell["folder"] / "final.png").convert("RGB")
        own = own.resize(tile.size, Image.Resampling.NEAREST)
        assert np.abs(np.asarray(tile, float) - np.asarray(own, float)).mean() < 1, cell["labels"]
    first, second = (np.asarray(picture.crop(cells[i, 0]["box"])) for i in (0, 1))
    assert not np.array_equal(first, second)
    # downloads: the grid, its description and every cell's image; the grid folder is this visitor's alone
    grid_file, json_file, cells_zip = (Path(f) for f in final.files)
    assert (grid_file.name, json_file.name) == (GRID_PNG, GRID_JSON)
    with zipfile.ZipFile(cells_zip) as archive:
        names = sorted(archive.namelist())
        assert names[0] == "x1y1-seed-1-cutn-2.png" and len(names) == 6
        with archive.open(names[0]) as member:
            own = folder / cells[0, 0]["folder"] / "final.png"
            assert np.array_equal(np.asarray(Image.open(member)), np.asarray(Image.open(own)))
    assert studio.may_read(visitor)(grid_png.resolve())
    assert not studio.may_read(stranger)(grid_png.resolve())
    assert session.record.result == grid_png and session.finished.is_set()


def test_stop_keeps_the_cells_made_and_the_stopped_cells_image(studio: Studio, tiny_files) -> None:
    session = studio.session()
    job = grid_job(studio, tiny_run_config(tiny_files), parse_web_axis("X", "steps", "2, 10000, 3"), None, session)
    for update in job:
        if update.progress and update.progress[2].startswith("cell 2 of 3") and update.progress[0] == 3:
            break
    job.close()  # the Stop button: Gradio closes the job at its next yield
    assert session.finished.is_set() and session.record.status == "stopped"
    folder = session.record.folder
    cells = sorted(described(folder)["cells"], key=lambda c: c["x"])
    assert [c["status"] for c in cells] == ["done", "failed", "not made"]
    assert cells[1]["error"] == "stopped"
    stopped = json.loads((folder / cells[1]["folder"] / "config.json").read_text())
    assert stopped["steps"] == 3 and (folder / cells[1]["folder"] / "final.png").is_file()  # its latest image kept
    assert session.record.result == folder / GRID_PNG and (folder / GRID_PNG).is_file()


@pytest.mark.parametrize(("x", "y", "message"), [
    (("seed", ""), ("", ""), "give the X values of seed, separated by commas"),
    (("", "1,2"), ("", ""), "choose the setting the X values are for"),
    (("", ""), ("", ""), "choose a setting for X and give its values"),
    (("seed", "1, two"), ("", ""), "X seed=two is not a valid value of seed; seed takes whole numbers."),
    (("cut_pow", "0.5, strong"), ("", ""), "X cut_pow=strong is not a valid value of cut_pow; cut_pow takes numbers"),
    (("seed", ",".join(map(str, range(5)))), ("steps", "1,2,3,4"),
     f"this grid would have 20 cells and a grid holds at most {MAX_WEB_CELLS}"),
    (("sr", "dusk, dawn"), ("", ""), "X sr: 'dusk' is not in the prompt 'city at night'"),
])
def test_the_panel_refuses_bad_axes_in_one_sentence_before_loading(served, studio: Studio, tiny_files,
                                                                   x, y, message) -> None:
    from gradio_client import Client

    client = Client(served.local_url, verbose=False)
    with pytest.raises(Exception, match=message):
        client.predict(**_grid_arguments(client, tiny_files, x, y), api_name="/grid")
    assert nothing_written(studio)


def _grid_arguments(client, tiny_files, x: tuple[str, str], y: tuple[str, str], **settings) -> dict:
    values = to_form(tiny_run_config(tiny_files, **settings))
    names = [p["parameter_name"] for p in client.view_api(return_format="dict", print_info=False)
             ["named_endpoints"]["/grid"]["parameters"]]
    values.update(image_prompt_files=None, images=1, grid_x=x[0], grid_x_values=x[1], grid_y=y[0],
                  grid_y_values=y[1])
    return {name: values.get(name) for name in names}


def test_the_grid_endpoint_makes_a_grid_for_an_api_client(served, studio: Studio, tiny_files) -> None:
    from gradio_client import Client

    client = Client(served.local_url, verbose=False)
    status, preview, result, files, info = client.predict(
        **_grid_arguments(client, tiny_files, ("seed", "4, 5"), ("sr", "night, noon"), steps=2),
        api_name="/grid")
    assert "grid done: 4 of 4 cells" in status and "2 × 2 grid" in info
    (folder,) = [p for p in studio.outputs_dir.iterdir() if p.name.startswith("grid-")]
    prompts = sorted({c["prompt"] for c in described(folder)["cells"]})
    assert prompts == ["city at night", "city at noon"]
    assert np.array_equal(np.asarray(Image.open(result)), np.asarray(Image.open(folder / GRID_PNG)))


def test_a_page_served_to_a_network_refuses_an_axis_naming_a_server_file(studio: Studio, tiny_files,
                                                                          tmp_path: Path) -> None:
    from gradio_client import Client

    import app
    from generator.webui.serving import launch_options

    policy = PathPolicy.for_server("0.0.0.0", False, weights_dir=tmp_path / "weights", models=tiny_files.models())
    demo = app.build_demo(studio=studio, paths=policy)
    demo.launch(**launch_options(studio, prevent_thread_lock=True, quiet=True))
    try:
        client = Client(demo.local_url, verbose=False)
        secret = tmp_path / "elsewhere.ckpt"
        secret.write_bytes(Path(tiny_files.vqgan).read_bytes())
        with pytest.raises(Exception, match="VQGAN"):
            client.predict(**_grid_arguments(client, tiny_files, ("vqgan", f"{tiny_files.vqgan}, {secret}"), ("", "")),
                           api_name="/grid")
    finally:
        demo.close()
    assert nothing_written(studio)
