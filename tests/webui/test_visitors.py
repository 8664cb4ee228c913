"""Two visitors of ``python app.py --host 0.0.0.0`` (its multi-user mode), each with its own
cookie jar, as an attacker would try it: neither can read, download, list or delete the
other's runs by any route (the owners record, ``/file=``, the gallery, "use the latest
result", a replayed session hash), the server fetches no address for anyone, and odd values
sent to any endpoint get a sentence, never a 500 or a Python message."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from generator.webui.forms import to_form
from tests.factories import tiny_run_config
from tests.webui.app_process import get, running_app

PYTHON_TEXT = ("Traceback", "NoneType", "not subscriptable", "object has no attribute", "KeyError", "TypeError")


@dataclass
class Server:
    base: str
    outputs: Path
    folder: Path
    config: dict[str, Any]

    def fn_index(self, api_name: str) -> int:
        for index, dependency in enumerate(self.config["dependencies"]):
            if dependency.get("api_name") == api_name:
                return dependency.get("id", index)
        raise AssertionError(f"no endpoint {api_name}")


@pytest.fixture(scope="module")
def server(tiny_files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("shared-server")
    with running_app(tiny_files, folder, "--host", "0.0.0.0") as (base, outputs):
        config = httpx.get(f"{base}config", timeout=30).json()
        yield Server(base, outputs, folder, config)


class Visitor:
    """A browser or script with its own cookie jar, talking to the server as the page does."""

    def __init__(self, server: Server, name: str):
        from gradio_client import Client

        self.server, self.name = server, name
        self.client = Client(server.base, verbose=False, download_files=False)
        self.http = httpx.Client(base_url=server.base, cookies=self.client.cookies, timeout=60)

    @property
    def session(self) -> str:
        return self.client.session_hash

    def generate(self, tiny_files, seed: int) -> dict:
        api = self.client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]
        values = to_form(tiny_run_config(tiny_files, steps=2, seed=seed, prompts=f"{self.name}'s city"))
        arguments = {p["parameter_name"]: values.get(p["parameter_name"]) for p in api["parameters"]
                     if p["parameter_name"] != "image_prompt_files"}
        output = self.client.predict(**arguments, image_prompt_files=None, api_name="/generate")
        result = output[2]
        return result if isinstance(result, dict) else vars(result)

    def call(self, api_name: str, data: list, *, event_data: Any = None, session: str | None = None) -> httpx.Response:
        """An unqueued event, as the page sends it (``/run/predict`` with the page's session hash)."""
        body = {"data": data, "fn_index": self.server.fn_index(api_name), "event_data": event_data,
                "session_hash": session or self.session, "trigger_id": None}
        return self.http.post("gradio_api/run/predict", json=body)


def _status_text(response: httpx.Response) -> str:
    """What the visitor is told: the refusal's detail, or the status line the handler returned."""
    if response.status_code != 200:
        return response.json()["detail"]
    return " ".join(value for value in response.json()["data"] if isinstance(value, str))


def _file_url(server: Server, result: dict) -> str:
    url = result.get("url") or ""
    return url if url.startswith("http") else server.base.rstrip("/") + "/" + url.lstrip("/")


def test_neither_visitor_can_reach_the_others_runs_by_any_route(server: Server, tiny_files) -> None:
    alice, bob = Visitor(server, "alice"), Visitor(server, "bob")
    result = alice.generate(tiny_files, seed=31)
    (run,) = [p for p in server.outputs.iterdir() if p.is_dir() and p.name.endswith("-31")]
    url = _file_url(server, result)

    # the result is alice's: she gets its bytes, bob and a cookieless caller get a sentence
    assert alice.http.get(url).content == (run / "final.png").read_bytes()
    refused = bob.http.get(url)
    assert refused.status_code == 404 and "not sent to you" in refused.json()["detail"]
    assert get(url)[0] == 404
    # nothing is served by its path: the run folder, the owners record (old and new place), the state folder
    state = server.outputs.parent / ".outputs.webui"
    assert (state / "owners.json").is_file()
    for path in (run / "final.png", run / "config.json", run / "run.json", state / "owners.json",
                 server.outputs / ".webui-owners.json", server.outputs):
        for visitor in (alice, bob):
            assert visitor.http.get(f"gradio_api/file={path}").status_code in (403, 404), path
    secret = alice.client.cookies["vqgan_studio_visitor"]
    assert secret not in (state / "owners.json").read_text()  # the record holds a digest, never a usable secret
    assert all(p.is_dir() for p in server.outputs.iterdir())  # the outputs folder holds runs only

    # the gallery: alice's run is in hers, not in bob's
    assert len(alice.client.predict(api_name="/gallery")) == 1
    assert bob.client.predict(api_name="/gallery") == []

    # bob selects, deletes and zips only from his own (empty) gallery
    for api_name, data, event_data in (("select_run", [], {"index": 0, "value": None}),
                                       ("delete_run", [None], None), ("zip_run", [None], None)):
        answer = bob.call(api_name, data, event_data=event_data)
        said = _status_text(answer).lower()  # the page capitalises its sentences
        assert answer.status_code == 200 and ("not a run of your gallery" in said
                                              or "select one of your runs" in said), api_name

    # with alice's session hash (it travels in the clear), bob gets nothing: not her selection, not her latest result
    assert run.name in _status_text(alice.call("select_run", [], event_data={"index": 0, "value": None}))
    for api_name, data in (("delete_run", [None]), ("zip_run", [None]), ("latest_result", [])):
        replayed = bob.call(api_name, data, session=alice.session)
        assert replayed.status_code == 403 and "belongs to another visitor" in replayed.json()["detail"], api_name
    assert bob.http.get("gradio_api/queue/data", params={"session_hash": alice.session}).status_code == 403
    assert bob.http.get(f"gradio_api/heartbeat/{alice.session}").status_code == 403
    assert run.is_dir()

    # alice, with her own session, may zip and delete her run
    zipped = alice.call("zip_run", [None])
    assert zipped.status_code == 200 and f"{run.name}.zip is ready" in _status_text(zipped)
    deleted = alice.call("delete_run", [None])
    assert f"Deleted {run.name}" in _status_text(deleted) and not run.exists()


@pytest.mark.parametrize(("api_name", "data", "event_data"), [
    ("select_run", [], {"index": "0", "value": None}),
    ("select_run", [], None),
    ("select_run", [], {"index": [5, 5], "value": None}),
    ("select_run", [], {"index": -1}),
    ("select_run", [], {"index": 10**12}),
    ("select_run", [], "not an object"),
    ("delete_run", ["x"], None),
    ("delete_run", [{"folder": 5}], None),
    ("zip_run", [{"folder": "../../etc"}], None),
    ("load_settings", [{"mode": "sample", "config": "x"}], None),
    ("latest_result", [], None),
    ("gallery", ["unexpected"], None),
    ("png_info", [{"path": "/etc/passwd"}], None),
    ("png_info", ["/etc/passwd"], None),
])
def test_odd_values_sent_to_an_endpoint_get_a_sentence(server: Server, api_name: str, data: list,
                                                       event_data: Any) -> None:
    visitor = Visitor(server, "prober")
    answer = visitor.call(api_name, data, event_data=event_data)
    assert answer.status_code in (200, 403, 422), (answer.status_code, answer.text)
    assert not any(text in answer.text for text in PYTHON_TEXT), answer.text
    if answer.status_code != 200:
        detail = answer.json()["detail"]
        assert isinstance(detail, str) and detail.endswith(".") and "\n" not in detail


def test_the_server_fetches_no_address_for_a_visitor(server: Server, file_server) -> None:
    visitor = Visitor(server, "fetcher")
    file_server.files["/secret.png"] = b"\x89PNG internal"
    internal = file_server.url("/secret.png")
    for path in (f"gradio_api/file={internal}", f"gradio_api/proxy={internal}", f"gradio_api/file=HTTP://{internal[7:]}",
                 "gradio_api/file=https://example.com/x.png", "gradio_api/proxy=https://example.com/"):
        answer = visitor.http.get(path)
        assert answer.status_code == 403 and "does not fetch addresses" in answer.json()["detail"], path
    assert file_server.requests == []
