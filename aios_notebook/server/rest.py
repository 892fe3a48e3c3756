"""The REST endpoints of PROTOCOL_NOTES.md, served from the same simulated state as the socket.

Every ``/api/`` route takes ``Authorization: Bearer <token>`` (compared in constant time; 401
without). Every error, ours or aiohttp's (404, 405, 413 ...), is answered as JSON
``{"code": ..., "message": ...}`` and never echoes the token.

Uploads are streamed and counted, never stored: the file's bytes are read in chunks and dropped
(nothing is written to disk), the client's filename is only a display string (cleaned, never a
path), a body past ``max_upload_bytes`` gets 413 and a wrong content type 415. An accepted upload
starts a job at the current simulated time; its first events are on the socket before the answer
``{job_id, run_id, status, message}`` leaves.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from aiohttp import BodyPartReader, web

if TYPE_CHECKING:
    from .simulator import Simulator

__all__ = ["SIMULATOR", "error_middleware", "rest_routes"]

SIMULATOR: web.AppKey[Simulator] = web.AppKey("simulator")

_CHUNK = 64 * 1024
_FIELD_LIMIT = 4096  # bytes of a non-file form field
_MAX_FIELDS = 16
_UPLOAD_TYPES = {
    "pdf": ({"application/pdf", "application/x-pdf"}, "application/pdf"),
    "audio": ({"audio/"}, "audio/*"),
}
_JSON_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


class RestError(web.HTTPException):
    """An HTTP error with the JSON body ``{code, message}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status_code = status
        super().__init__(text=_JSON_DUMPS({"code": code, "message": message}), content_type="application/json")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=_JSON_DUMPS(data), status=status, content_type="application/json")


T = TypeVar("T")


def _found(value: T | None, what: str, key: str) -> T:
    """``value``, or the REST 404 that names what was looked for."""
    if value is None:
        raise RestError(404, "not_found", f"no {what} {key[:200]!r}")
    return value


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    """Bearer auth on /api/, and every error as JSON ``{code, message}``."""
    if request.path.startswith("/api/") or request.path == "/api":
        simulator = request.app[SIMULATOR]
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), simulator.token.encode()):
            return _json({"code": "unauthorized", "message": "missing or invalid bearer token"}, 401)
    try:
        return await handler(request)
    except RestError:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, f"http_{exc.status}")
        return _json({"code": code, "message": exc.reason or code}, exc.status)


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RestError(400, "invalid_parameter", f"{name} must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise RestError(400, "invalid_parameter", f"{name} must be between {low} and {high}, got {value}")
    return value


def _page(request: web.Request, records: list[Any]) -> dict[str, Any]:
    limit = _int(request, "limit", 50, 1, 1000)
    offset = _int(request, "offset", 0, 0, 10**9)
    return {"items": records[offset:offset + limit], "total": len(records), "limit": limit, "offset": offset}


# -- reads ------------------------------------------------------------------------------------------
async def dag_runs(request: web.Request) -> web.Response:
    workload = request.app[SIMULATOR].workload
    status = request.query.get("status")
    kind = request.query.get("type")
    runs = [
        job for job in reversed(workload.runs.values())
        if (not status or status in (job.dag_status, job.status)) and (not kind or job.type == kind)
    ]
    page = _page(request, runs)
    page["items"] = [job.to_rest() for job in page["items"]]
    return _json(page)


async def dag_run(request: web.Request) -> web.Response:
    run_id = request.match_info["run_id"]
    job = _found(request.app[SIMULATOR].workload.run(run_id), "DAG run", run_id)
    return _json(job.to_rest(with_steps=True))


async def agents(request: web.Request) -> web.Response:
    records = [agent.to_rest() for agent in request.app[SIMULATOR].workload.agents.values()]
    return _json({"items": records, "total": len(records)})


async def agent(request: web.Request) -> web.Response:
    agent_id = request.match_info["agent_id"]
    return _json(_found(request.app[SIMULATOR].workload.agents.get(agent_id), "agent", agent_id).to_rest())


async def knowledge_search(request: web.Request) -> web.Response:
    workload = request.app[SIMULATOR].workload
    query = request.query.get("q", "").strip().lower()
    kind = request.query.get("type")
    tags = {t.strip().lower() for t in request.query.get("tags", "").split(",") if t.strip()}
    items = []
    for item in reversed(workload.knowledge.values()):
        if kind and item.type != kind:
            continue
        if tags and not tags & {t.lower() for t in item.tags}:
            continue
        if query and query not in f"{item.title} {item.summary} {' '.join(item.tags)}".lower():
            continue
        items.append(item)
    page = _page(request, items)
    page["items"] = [item.to_rest() for item in page["items"]]
    return _json(page)


async def knowledge_item(request: web.Request) -> web.Response:
    item_id = request.match_info["item_id"]
    item = _found(request.app[SIMULATOR].workload.knowledge.get(item_id), "knowledge item", item_id)
    return _json(item.to_rest())


async def dashboard(request: web.Request) -> web.Response:
    workload = request.app[SIMULATOR].workload
    if workload.metrics is not None:
        metrics = dict(workload.metrics)
    else:  # before the first update (30 simulated seconds in): an empty deployment
        names = ("total_processed", "processing_time", "success_rate", "active_agents", "knowledge_items")
        metrics = {name: 0 for name in names}
        metrics.update(processing_time=0.0, success_rate=100.0, changes={name: "+0" for name in names},
                       timestamp=workload.stamp())
    metrics["server_time"] = workload.stamp()
    metrics["recent_activity"] = list(reversed(workload.recent_activity))
    return _json(metrics)


async def insights(request: web.Request) -> web.Response:
    workload = request.app[SIMULATOR].workload
    kind = request.query.get("type")
    limit = _int(request, "limit", 50, 1, 1000)
    found = [i for i in reversed(workload.insights) if not kind or i["type"] == kind]
    return _json({"items": found[:limit], "total": len(found), "limit": limit})


# -- uploads ------------------------------------------------------------------------------------------
def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        data += chunk
        if len(data) > _FIELD_LIMIT:
            raise RestError(400, "invalid_field", f"form field {part.name!r} is longer than {_FIELD_LIMIT} bytes")
    return data.decode("utf-8", "replace")


def _accepts(kind: str, content_type: str) -> bool:
    accepted, _ = _UPLOAD_TYPES[kind]
    return any(content_type == a or (a.endswith("/") and content_type.startswith(a)) for a in accepted)


async def _upload(request: web.Request, kind: str) -> web.Response:
    simulator = request.app[SIMULATOR]
    limit = simulator.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise RestError(413, "payload_too_large", f"uploads are limited to {limit} bytes")
    if request.content_type != "multipart/form-data":
        raise RestError(415, "unsupported_media_type",
                        f"send multipart/form-data with a 'file' part, not {request.content_type or 'no content type'}")
    reader = await request.multipart()
    filename: str | None = None
    size = 0
    options: dict[str, bool | None] = {}
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise RestError(400, "invalid_form", "nested multipart bodies are not accepted")
        if part.name == "file" and filename is None:
            content_type = (part.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if not _accepts(kind, content_type):
                raise RestError(415, "unsupported_media_type",
                                f"the file must be {_UPLOAD_TYPES[kind][1]}, not {content_type[:80] or 'untyped'}")
            # aiohttp clients percent-encode the name (quote_fields): show it as the user typed it
            filename = unquote(part.filename or "") or f"upload.{kind}"
            # the bytes are counted and dropped: the simulation needs only the name and the size
            while chunk := await part.read_chunk(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise RestError(413, "payload_too_large", f"uploads are limited to {limit} bytes")
        else:
            if len(options) >= _MAX_FIELDS:
                raise RestError(400, "invalid_form", f"more than {_MAX_FIELDS} form fields")
            options[str(part.name)] = _flag(await _read_field(part))
    if filename is None:
        raise RestError(400, "missing_file", "the form has no 'file' part")
    if size == 0:
        raise RestError(400, "empty_file", "the uploaded file is empty")
    job = simulator.start_job(kind, filename)
    return _json({
        "job_id": job.job_id,
        "run_id": job.run_id,
        "status": job.status,
        "message": f"processing started for {job.document.filename} ({size} bytes)",
    }, 202)


async def upload_pdf(request: web.Request) -> web.Response:
    return await _upload(request, "pdf")


async def upload_audio(request: web.Request) -> web.Response:
    return await _upload(request, "audio")


async def from_url(request: web.Request) -> web.Response:
    simulator = request.app[SIMULATOR]
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise RestError(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RestError(400, "invalid_json", "the body must be a JSON object")
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        body = dict(await request.post())
    else:
        raise RestError(415, "unsupported_media_type",
                        f"send application/json or a form, not {request.content_type or 'no content type'}")
    url = body.get("url")
    if not isinstance(url, str) or len(url) > 2048:
        raise RestError(400, "invalid_url", "'url' must be an http(s) URL of at most 2048 characters")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RestError(400, "invalid_url", f"'url' must be an http(s) URL, got {url[:100]!r}")
    job = simulator.start_job("url", url.strip())
    return _json({"job_id": job.job_id, "run_id": job.run_id, "status": job.status,
                  "message": f"fetching {parts.hostname}"}, 202)


def rest_routes() -> list[web.RouteDef]:
    """The routes of the REST API (all under /api/, all behind the bearer token)."""
    return [
        web.post("/api/workflows/upload-pdf", upload_pdf),
        web.post("/api/workflows/upload-audio", upload_audio),
        web.post("/api/workflows/from-url", from_url),
        web.get("/api/workflows/dag-runs", dag_runs),
        web.get("/api/workflows/dag-runs/{run_id}", dag_run),
        web.get("/api/agents", agents),
        web.get("/api/agents/{agent_id}", agent),
        web.get("/api/knowledge/search", knowledge_search),
        web.get("/api/knowledge/{item_id}", knowledge_item),
        web.get("/api/analytics/dashboard", dashboard),
        web.get("/api/analytics/insights", insights),
    ]
