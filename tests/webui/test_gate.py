"""The gate in front of Gradio, against a stand-in app that records what reaches it: whatever
the app behind would do, no URL is fetched, no file is served to a visitor it was not sent to,
no session hash or event id works for another visitor, and no 500 reaches a visitor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from generator.webui.gate import MAX_BODY, VisitorGate
from generator.webui.visitors import VISITOR_COOKIE, ServedFiles, visitor_id


@pytest.fixture
def world(tmp_path: Path):
    """(make a client, the stand-in's log of requests, a file the stand-in sends, the served record)."""
    result = tmp_path / "cache" / "abc" / "final.png"
    result.parent.mkdir(parents=True)
    result.write_bytes(b"\x89PNG result of visitor A")
    log: list[dict] = []

    async def record(request: Request) -> Response:
        body = await request.body()
        log.append({"path": request.url.path, "cookie": request.cookies.get(VISITOR_COOKIE), "body": body})
        path = request.url.path
        if path.startswith("/gradio_api/file="):
            return PlainTextResponse(Path(path.split("=", 1)[1]).read_bytes())
        if path == "/gradio_api/queue/join":
            return JSONResponse({"event_id": "event-" + json.loads(body)["session_hash"]})
        if path == "/gradio_api/queue/data":
            message = {"msg": "process_completed", "output": {"data": [
                {"path": str(result), "url": f"/gradio_api/file={result}", "meta": {"_type": "gradio.FileData"}}]}}
            return StreamingResponse(iter([b"data: " + json.dumps(message).encode() + b"\n\n"]),
                                     media_type="text/event-stream")
        if path == "/gradio_api/run/predict":
            raise RuntimeError("'NoneType' object is not subscriptable")
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/{rest:path}", record, methods=["GET", "POST", "HEAD"])])
    served = ServedFiles()
    gated = VisitorGate(app, served)

    def client() -> TestClient:
        return TestClient(gated, raise_server_exceptions=False)

    return client, log, result, served


def test_each_visitor_gets_a_secret_cookie_that_scripts_cannot_read(world) -> None:
    client, log, _, _ = world
    first = client()
    answer = first.get("/")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{VISITOR_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    secret = first.cookies[VISITOR_COOKIE]
    assert len(secret) == 43 and log[-1]["cookie"] == secret  # the app saw it on the very first request
    first.get("/again")
    assert log[-1]["cookie"] == secret and "set-cookie" not in first.get("/more").headers
    assert client().get("/").cookies[VISITOR_COOKIE] != secret
    forged = client()
    forged.cookies.set(VISITOR_COOKIE, "not-a-secret")
    forged.get("/")
    assert log[-1]["cookie"] != "not-a-secret"  # a malformed secret is replaced, never used


@pytest.mark.parametrize("path", [
    "/gradio_api/file=http://127.0.0.1:9/x", "/gradio_api/file=HTTPS://example.com/x.png",
    "/gradio_api/file=//example.com/x", "/gradio_api/file=file:///etc/passwd", "/gradio_api/proxy=http://example.com/",
    "/gradio_api/proxy=https://huggingface.co/spaces/x", "/gradio_api/file/http://example.com/x",
])
def test_no_address_is_ever_fetched_through_the_server(world, path: str) -> None:
    client, log, _, _ = world
    answer = client().get(path)
    assert answer.status_code == 403 and "does not fetch addresses" in answer.json()["detail"]
    assert not log  # the app behind was never asked


def test_a_file_is_served_only_to_the_visitor_it_was_sent_to(world, tmp_path: Path) -> None:
    client, log, result, _ = world
    alice, bob, anonymous = client(), client(), client()
    url = f"/gradio_api/file={result}"
    assert alice.get(url).status_code == 404  # not sent to anyone yet: nothing is served by its path
    alice.post("/gradio_api/queue/join", json={"session_hash": "alice-page", "data": []})
    stream = alice.get("/gradio_api/queue/data", params={"session_hash": "alice-page"})
    assert str(result) in stream.text
    assert alice.get(url).content == result.read_bytes()
    for other in (bob, anonymous):
        refused = other.get(url)
        assert refused.status_code == 404 and "not sent to you" in refused.json()["detail"]
    assert bob.get(f"/gradio_api/file={result.parent}/../abc/final.png").status_code == 404
    assert all(entry["cookie"] == alice.cookies[VISITOR_COOKIE] for entry in log if "file=" in entry["path"])


def test_a_session_hash_or_event_id_works_for_its_first_visitor_only(world) -> None:
    client, log, _, _ = world
    alice, bob = client(), client()
    alice.post("/gradio_api/queue/join", json={"session_hash": "s1", "data": []})
    calls = len(log)
    for request in (lambda: bob.get("/gradio_api/queue/data", params={"session_hash": "s1"}),
                    lambda: bob.post("/gradio_api/queue/join", json={"session_hash": "s1", "data": []}),
                    lambda: bob.get("/gradio_api/heartbeat/s1"),
                    lambda: bob.post("/gradio_api/cancel", json={"session_hash": "b1", "event_id": "event-s1"}),
                    lambda: bob.get("/gradio_api/call/generate/event-s1")):
        answer = request()
        assert answer.status_code == 403 and "belongs to another visitor" in answer.json()["detail"]
    assert len(log) == calls  # none reached the app
    assert alice.get("/gradio_api/queue/data", params={"session_hash": "s1"}).status_code == 200
    assert alice.post("/gradio_api/cancel", json={"session_hash": "s1", "event_id": "event-s1"}).status_code == 200


def test_an_event_may_only_name_files_its_visitor_was_given(world) -> None:
    client, log, result, served = world
    alice, bob = client(), client()
    alice.post("/gradio_api/queue/join", json={"session_hash": "a", "data": []})
    alice.get("/gradio_api/queue/data", params={"session_hash": "a"})  # alice was sent the result
    own = {"path": str(result), "meta": {"_type": "gradio.FileData"}}
    assert alice.post("/gradio_api/queue/join", json={"session_hash": "a", "data": [own]}).status_code == 200
    for data in ([own], [{"path": str(result)}], [[{"nested": {"path": "/etc/passwd"}}]],
                 [{"path": "http://169.254.169.254/latest/meta-data", "meta": {"_type": "gradio.FileData"}}]):
        answer = bob.post("/gradio_api/queue/join", json={"session_hash": "b", "data": data})
        assert answer.status_code == 403 and "upload" in answer.json()["detail"], data
    assert served.allows(visitor_id(alice.cookies[VISITOR_COOKIE]), result)
    assert not served.allows(visitor_id(bob.cookies[VISITOR_COOKIE]), result)


def test_a_server_error_reaches_the_visitor_as_a_sentence(world) -> None:
    client, _, _, _ = world
    answer = client().post("/gradio_api/run/predict", json={"fn_index": 3, "data": [None], "session_hash": "x"})
    assert answer.status_code == 422
    assert answer.json() == {"detail": "the server could not use the values sent (its log has the details); "
                                       "check them and try again."}
    assert "NoneType" not in answer.text


def test_an_oversized_event_is_refused_without_reaching_the_app(world) -> None:
    client, log, _, _ = world
    answer = client().post("/gradio_api/queue/join", content=b'{"data": "' + b"x" * (MAX_BODY + 10) + b'"}',
                           headers={"content-type": "application/json"})
    assert answer.status_code == 413 and not log
