"""The HTTP API: JSON endpoints for scripts, mounted at ``/api/v1`` on the web UI's server.

Every mode with a served job (:attr:`generator.mode.Mode.job`) is submitted the same way, with
the settings of a run's ``config.json`` (what ``--from`` reads): ``POST /api/v1/jobs``
``{"mode": "text-to-image", "config": {"prompts": "a lighthouse", "steps": 100}}``. A job is then
followed by its status (``GET /jobs/{id}``: queue position, ETA, progress), its latest preview
(``/preview``), its events as Server-Sent Events (``/events``), cancelled (``POST
/jobs/{id}/cancel``) and its files listed and downloaded (``/files``). Files a mode takes
besides its config (the image to upscale) and files named in a config (an init image, a mask)
are uploaded first (``POST /uploads``) and named ``upload:ID``.

Everything is scoped to the caller's identity (:mod:`generator.serving.keys`): another key's
jobs are not found. A mistake is a 4xx answer whose ``detail`` is the command line's sentence;
nothing a client sends makes a 500. ``/api/v1/docs`` and ``/api/v1/openapi.json`` describe it.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from generator import modes
from generator.config_schema import build_config, to_plain
from generator.errors import GeneratorError
from generator.io.outputs import slugify
from generator.serving.keys import LOCAL_IDENTITY, ApiKeys
from generator.serving.queue import JobQueue, QueueFull, ServedJob
from generator.webui.limits import DEFAULT_MAX_JOB_MEGAPIXELS, check_job_size
from generator.webui.paths import PathPolicy
from generator.webui.serving import API_PREFIX as PREFIX
from generator.webui.studio import Studio

MAX_UPLOAD_BYTES = 64 * 2**20
UPLOAD_PREFIX = "upload:"
_KEEPALIVE_SECONDS = 10.0


class JobRequest(BaseModel):
    """A job to make."""

    model_config = ConfigDict(extra="forbid")
    mode: str = Field(description="the mode: " + ", ".join(m.name for m in modes.MODES.values() if m.job),
                      examples=["text-to-image"])
    config: dict[str, Any] = Field(default_factory=dict, examples=[{"prompts": "a lighthouse at dusk", "steps": 100}],
                                   description="the mode's settings as in a run's config.json (what --from reads); "
                                               "unset ones keep their defaults")
    inputs: dict[str, str] = Field(default_factory=dict, examples=[{"image": "upload:3f2a..."}],
                                   description="the files the mode takes besides its config (upscale: image), "
                                               "as upload:ID")


class FileView(BaseModel):
    """A file a job made."""

    name: str
    url: str
    bytes: int


class JobView(BaseModel):
    """A job as its owner sees it."""

    id: str
    mode: str
    status: str = Field(description="queued, running, done, failed or cancelled")
    position: int | None = Field(description="jobs waiting before this one (0: next); null once it started")
    eta_seconds: float | None = Field(description="estimated seconds until it ends; null while unknown")
    step: int
    total: int
    progress: str
    message: str = Field(description="its latest status, or the sentence of its error")
    seed: int | None = Field(description="the seed it used (once it is known)")
    previews: int
    preview_url: str | None
    events_url: str
    files: list[FileView]
    config: dict[str, Any]
    created: float
    started: float | None
    ended: float | None


class UploadView(BaseModel):
    """An uploaded file, to name as ``upload:ID`` in a config or the inputs of a job."""

    id: str
    name: str
    bytes: int
    reference: str


class Health(BaseModel):
    """Whether the server answers, and how busy it is."""

    status: str
    queued: int
    running: int
    workers: int
    device: str
    modes: list[str]


class Problem(BaseModel):
    """What was wrong with a request: one sentence."""

    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409, 413, 422, 429)}


def api_app(studio: Studio, queue: JobQueue, *, keys: ApiKeys | None = None, local: bool = True,
            paths: PathPolicy | None = None, max_megapixels: float = DEFAULT_MAX_JOB_MEGAPIXELS) -> FastAPI:
    """The API as an app to mount at :data:`PREFIX`.

    Args:
        studio: the models and outputs (its GPU lock is the queue's).
        queue: where jobs wait.
        keys: the API keys; None or empty: keyless requests are the ``local`` identity, which a
            server reachable beyond this computer (``local`` False) refuses.
        local: the server listens on this computer only.
        paths: which server paths a config may name (default: any on a ``local`` server; else
            registry names, weights-folder files and the caller's uploads).
        max_megapixels: the largest image a job may make, upscaling included (0: no cap).
    """
    keys = keys or ApiKeys()
    paths = paths or PathPolicy.for_server("127.0.0.1" if local else "0.0.0.0", False, weights_dir=studio.weights_dir)
    uploads_dir = Path(studio.state_dir or studio.outputs_dir) / "api-uploads"
    app = FastAPI(title="VQGAN Studio API", version="1", docs_url="/docs", openapi_url="/openapi.json",
                  description=__doc__.split("\n\n", 1)[1].replace("\n", " "), responses=_ERRORS)

    def identity(request: Request) -> str:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
        if keys:
            found = keys.identity(key)
            if found is None:
                raise HTTPException(401, "this server needs an API key: send it as 'Authorization: Bearer KEY' "
                                         "(its owner gives keys with app.py --api-keys FILE).")
            return f"api:{found}"
        if not local:
            raise HTTPException(403, "this server was started without API keys, so its API is closed to other "
                                     "computers; its owner starts it with app.py --api-keys FILE.")
        return f"api:{LOCAL_IDENTITY}"

    def owned(request: Request, job_id: str) -> ServedJob:
        job = queue.get(identity(request), job_id)
        if job is None:
            raise HTTPException(404, f"there is no job {job_id} of yours; list yours with GET {PREFIX}/jobs.")
        return job

    def view(job: ServedJob) -> JobView:
        base = f"{PREFIX}/jobs/{job.id}"
        return JobView(id=job.id, mode=job.mode, status=job.status, position=queue.position(job),
                       eta_seconds=_rounded(queue.eta(job)), step=job.step, total=job.total, progress=job.text,
                       message=job.message, seed=job.seed, previews=job.previews,
                       preview_url=f"{base}/preview" if job.preview else None, events_url=f"{base}/events",
                       files=[FileView(name=Path(path).name, url=f"{base}/files/{index}", bytes=_size(path))
                              for index, path in enumerate(job.files)],
                       config=job.config, created=job.created, started=job.started, ended=job.ended)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _sentence(error.errors())}, status_code=422)

    @app.exception_handler(HTTPException)
    async def refused(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(error.detail)}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.get("/health", response_model=Health, summary="Whether the server answers, and its queue")
    def health() -> Health:
        return Health(status="ok", device=str(studio.device), **queue.counts(),
                      modes=[mode.name for mode in modes.MODES.values() if mode.job])

    @app.post("/jobs", response_model=JobView, status_code=202, summary="Submit a job")
    def submit(job: JobRequest, request: Request) -> JobView:
        owner = identity(request)
        try:
            mode = modes.get(job.mode)
            if mode.job is None or mode.config is None:
                raise HTTPException(422, f"the {mode.name} mode is not served; the modes are "
                                         f"{', '.join(m.name for m in modes.MODES.values() if m.job)}.")
            may_read = _may_read(studio, owner)
            plain = paths.check_settings(_resolved(job.config, uploads_dir, owner), may_read)
            config = build_config(mode.config, plain)
            check_job_size(to_plain(config), max_megapixels)
            checks = mode.function("checks")
            if checks is not None:
                checks(config)
            inputs = _inputs(mode.inputs, job.inputs, uploads_dir, owner)
            for name, value in inputs.items():
                inputs[name] = paths.check_image(value, name, may_read)
            make = mode.function("job")
            served = queue.submit(owner, mode.name, to_plain(config),
                                  lambda session: make(studio, config, session, **inputs), inputs)
        except QueueFull as error:
            raise HTTPException(429, str(error), headers={"Retry-After": "30"}) from None
        except GeneratorError as error:
            raise HTTPException(422, str(error)) from None
        return view(served)

    @app.get("/jobs", response_model=list[JobView], summary="Your jobs, oldest first")
    def listed(request: Request) -> list[JobView]:
        return [view(job) for job in queue.jobs_of(identity(request))]

    @app.get("/jobs/{job_id}", response_model=JobView, summary="A job's status, progress and files")
    def status(job_id: str, request: Request) -> JobView:
        return view(owned(request, job_id))

    @app.post("/jobs/{job_id}/cancel", response_model=JobView, summary="Cancel a job (its work so far is kept)")
    def cancel(job_id: str, request: Request) -> JobView:
        job = owned(request, job_id)
        if job.ended_yet:
            raise HTTPException(409, f"the job {job_id} has already ended ({job.status}).")
        queue.cancel(job)
        return view(job)

    @app.get("/jobs/{job_id}/preview", summary="A job's latest preview (PNG)",
             responses={200: {"content": {"image/png": {}}}})
    def preview(job_id: str, request: Request) -> Response:
        job = owned(request, job_id)
        if job.preview is None:
            raise HTTPException(404, "this job has shown no preview yet; its events say when it does.")
        return Response(job.preview, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/jobs/{job_id}/events", summary="A job's events as Server-Sent Events",
             responses={200: {"content": {"text/event-stream": {}}}})
    async def events(job_id: str, request: Request) -> StreamingResponse:
        job = owned(request, job_id)
        start = _last_event(request.headers.get("last-event-id"))
        return StreamingResponse(_stream(job, start, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/jobs/{job_id}/files", response_model=list[FileView], summary="The files a job made")
    def files(job_id: str, request: Request) -> list[FileView]:
        return view(owned(request, job_id)).files

    @app.get("/jobs/{job_id}/files/{index}", summary="Download a file a job made",
             responses={200: {"content": {"application/octet-stream": {}}}})
    def download(job_id: str, index: int, request: Request) -> FileResponse:
        job = owned(request, job_id)
        if not 0 <= index < len(job.files) or not Path(job.files[index]).is_file():
            raise HTTPException(404, f"this job has no file {index}; list them with GET {PREFIX}/jobs/{job_id}/files.")
        path = Path(job.files[index])
        return FileResponse(path, filename=path.name)

    @app.post("/uploads", response_model=UploadView, status_code=201, summary="Upload a file for a job",
              openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}})
    async def upload(request: Request, name: str = Query("upload", description="the file's name")) -> UploadView:
        owner = identity(request)
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_UPLOAD_BYTES:
                raise HTTPException(413, f"the upload is larger than {MAX_UPLOAD_BYTES // 2**20} MB; send a smaller "
                                         "file.")
        if not data:
            raise HTTPException(422, "the upload is empty; send the file's bytes as the request's body.")
        upload_id = uuid.uuid4().hex
        stem, suffix = Path(name).stem, Path(name).suffix.lower()
        safe = slugify(stem, max_length=60) + (suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else "")
        path = _owner_dir(uploads_dir, owner) / upload_id / safe
        await run_in_threadpool(_write, path, bytes(data))
        studio.served.grant(owner, path)
        return UploadView(id=upload_id, name=safe, bytes=len(data), reference=f"{UPLOAD_PREFIX}{upload_id}")

    return app


def _may_read(studio: Studio, owner: str) -> Callable[[Path], bool]:
    """The files an API identity may name: its uploads and the files of its jobs."""
    def allowed(path: Path) -> bool:
        return studio.served.allows(owner, path)
    return allowed


def _owner_dir(uploads_dir: Path, owner: str) -> Path:
    return uploads_dir / slugify(owner, max_length=60)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _upload_path(reference: str, uploads_dir: Path, owner: str) -> str:
    """The file of ``upload:ID`` of ``owner``.

    Raises:
        HTTPException: 422 for an id that is not one of this identity's uploads.
    """
    upload_id = reference[len(UPLOAD_PREFIX):].strip()
    folder = _owner_dir(uploads_dir, owner) / upload_id
    found = sorted(folder.iterdir()) if re.fullmatch(r"[0-9a-f]{32}", upload_id) and folder.is_dir() else []
    if not found:
        raise HTTPException(422, f"{reference} is not one of your uploads; upload the file with POST "
                                 f"{PREFIX}/uploads and use the reference it answers.")
    return str(found[0])


def _resolved(plain: Mapping[str, Any], uploads_dir: Path, owner: str) -> dict[str, Any]:
    """``plain`` with every ``upload:ID`` value replaced by the uploaded file's path."""
    def walk(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, str) and value.startswith(UPLOAD_PREFIX):
            return _upload_path(value, uploads_dir, owner)
        return value
    return walk(plain)


def _inputs(names: tuple[str, ...], given: Mapping[str, str], uploads_dir: Path, owner: str) -> dict[str, str]:
    unknown = sorted(set(given) - set(names))
    if unknown:
        takes = f"takes {', '.join(names)}" if names else "takes none"
        raise HTTPException(422, f"unknown input {unknown[0]!r}: this mode {takes}.")
    missing = [name for name in names if not given.get(name)]
    if missing:
        raise HTTPException(422, f"this mode needs the input {missing[0]!r}: upload the file with POST "
                                 f"{PREFIX}/uploads and give \"inputs\": {{\"{missing[0]}\": \"upload:ID\"}}.")
    return {name: _upload_path(value, uploads_dir, owner) if value.startswith(UPLOAD_PREFIX) else value
            for name, value in given.items()}


def _sentence(errors: list[Any]) -> str:
    """One sentence for FastAPI's validation errors (the first one)."""
    first = errors[0] if errors else {}
    kind, where = first.get("type", ""), [str(part) for part in first.get("loc", ()) if part != "body"]
    example = '{"mode": "text-to-image", "config": {"prompts": "a lighthouse at dusk"}}'
    if kind == "json_invalid":
        return f"the request's body is not valid JSON; send a JSON object such as {example}."
    if kind == "extra_forbidden":
        return f"unknown field {'.'.join(where)!r} in the request; a job has mode, config and inputs."
    if kind == "missing":
        return f"the request needs {'.'.join(where)!r}; send a JSON object such as {example}."
    if kind in ("model_attributes_type", "dict_type") and not where:
        return f"the request's body must be a JSON object such as {example}."
    place = ".".join(where) or "the request"
    return f"{place}: {str(first.get('msg', 'is not valid')).rstrip('.')}; see {PREFIX}/docs."


def _last_event(header: str | None) -> int:
    try:
        return int(header) if header else -1
    except ValueError:
        return -1


async def _stream(job: ServedJob, last: int, request: Request) -> AsyncIterator[bytes]:
    """The job's events after ``last`` as Server-Sent Events, until it ended and all were sent."""
    while True:
        events = await run_in_threadpool(job.events_after, last, _KEEPALIVE_SECONDS)
        for number, kind, data in events:
            if kind == "preview":
                data = {**data, "url": f"{PREFIX}/jobs/{job.id}/preview"}
            yield f"id: {number}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()
            last = number
        if job.ended_yet and last >= len(job.events) - 1:
            return
        if not events:
            if await request.is_disconnected():
                return
            yield b": still working\n\n"
        await asyncio.sleep(0)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0
