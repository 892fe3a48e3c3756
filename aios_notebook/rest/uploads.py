"""Uploads and URL submissions: the first step of the published event flow.

Everything that can be checked is checked before any request (:func:`prepare_upload`,
:func:`prepare_url`), in the caller's thread: the path exists, is a readable non-empty file, its kind
is known, the options are the endpoint's. The upload itself streams the open file in chunks (aiohttp
reads it in a worker thread, 64 KiB at a time), so a large file is never read whole into memory.

The endpoint is the server's dialect's (published by default): ``autopilot`` takes pdf uploads at the
published path and has no audio upload nor URL submission, which is an ``UnsupportedRoute`` raised
before any request.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..exceptions import APIError, UploadError
from ..protocol.dialects import Dialect
from .http import RestClient
from .routes import PUBLISHED_ROUTES, route

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "UPLOAD_OPTIONS",
    "URL_OPTIONS",
    "PreparedURL",
    "PreparedUpload",
    "UploadResult",
    "prepare_upload",
    "prepare_url",
    "submit_url",
    "upload",
    "upload_endpoint",
]

#: kind -> extension -> content type sent with the file
ACCEPTED_EXTENSIONS: dict[str, dict[str, str]] = {
    "pdf": {".pdf": "application/pdf"},
    "audio": {
        ".mp3": "audio/mpeg",
        ".wav": "audio/wav",
        ".m4a": "audio/mp4",
        ".aac": "audio/aac",
        ".ogg": "audio/ogg",
        ".opus": "audio/opus",
        ".flac": "audio/flac",
    },
}

_DEFAULT_TYPES = {"pdf": "application/pdf", "audio": "audio/mpeg"}

#: kind -> the ``Routes`` attribute of its upload endpoint
_UPLOAD_ROUTES = {"pdf": "upload_pdf", "audio": "upload_audio"}

#: kind -> (published endpoint, options the endpoint takes besides the file)
UPLOAD_OPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pdf": (str(PUBLISHED_ROUTES.upload_pdf), ("extract_text", "generate_summary")),
    "audio": (str(PUBLISHED_ROUTES.upload_audio), ("transcribe", "summarize")),
}

#: the options of ``POST /api/workflows/from-url`` besides ``url``
URL_OPTIONS: tuple[str, ...] = ("full_content", "generate_summary")


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What the server answered to an upload or a URL submission.

    Attributes:
        job_id: the processing job (None when the server does not say; the published API does not).
        run_id: the DAG run that processes it: pass it to ``client.watch``.
        status: the job's first status, e.g. ``queued`` (``started`` on autopilot).
        message: the server's message, if any.
        kind: ``pdf``, ``audio`` or ``url``.
        source: the file name or the URL submitted.
        raw: the whole answer.
    """

    job_id: str | None
    run_id: str
    status: str
    message: str
    kind: str
    source: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class PreparedUpload:
    """An upload checked and ready to send: see :func:`prepare_upload`."""

    path: Path
    kind: str
    endpoint: str  # the published one; the server's dialect may name another
    content_type: str
    size: int
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class PreparedURL:
    """A URL submission checked and ready to send: see :func:`prepare_url`."""

    url: str
    body: Mapping[str, Any]


def _accepted() -> str:
    return ", ".join(f"{kind}: {' '.join(sorted(exts))}" for kind, exts in ACCEPTED_EXTENSIONS.items())


def _form_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise UploadError(f"option {name}={value!r}: expected true/false, a number or a string")


def _check_options(what: str, options: Mapping[str, Any], accepted: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UploadError(
            f"{what} does not take option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )


def prepare_upload(path: str | os.PathLike[str], kind: str | None = None, **options: Any) -> PreparedUpload:
    """Check an upload before any request: file, kind and options.

    Args:
        path: the file to upload.
        kind: ``pdf`` or ``audio``; taken from the extension when None.
        **options: the endpoint's options (pdf: extract_text, generate_summary; audio: transcribe,
            summarize).

    Raises:
        UploadError: the path is missing, not a file, unreadable or empty; the extension is unknown
            (the message names the accepted ones); the kind or an option is not one the API takes.
    """
    file = Path(os.fspath(path)).expanduser()
    if isinstance(kind, str):
        kind = kind.lower()
    if kind is not None and kind not in ACCEPTED_EXTENSIONS:
        raise UploadError(f"unknown kind {kind!r} for {file}: accepted kinds are {', '.join(ACCEPTED_EXTENSIONS)}")
    if not file.exists():
        raise UploadError(f"cannot upload {file}: no such file")
    if not file.is_file():
        raise UploadError(f"cannot upload {file}: not a regular file")
    # open it now, so an unreadable file fails here and not halfway through a request
    try:
        with open(file, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise UploadError(f"cannot upload {file}: cannot read it ({exc.strerror or exc})") from None
    if size == 0:
        raise UploadError(f"cannot upload {file}: the file is empty")
    suffix = file.suffix.lower()
    if kind is None:
        kind = next((k for k, exts in ACCEPTED_EXTENSIONS.items() if suffix in exts), None)
        if kind is None:
            shown = f"extension {suffix!r}" if suffix else "no extension"
            raise UploadError(f"cannot tell the kind of {file} ({shown}): pass kind='pdf' or kind='audio'; accepted extensions are {_accepted()}")
    endpoint, accepted = UPLOAD_OPTIONS[kind]
    _check_options(f"a {kind} upload", options, accepted)
    # a kind given for an odd extension: the kind's usual type, which servers check the part for
    content_type = ACCEPTED_EXTENSIONS[kind].get(suffix) or _DEFAULT_TYPES[kind]
    fields = tuple((name, _form_value(name, value)) for name, value in options.items() if value is not None)
    return PreparedUpload(file, kind, endpoint, content_type, size, fields)


def prepare_url(url: str, **options: Any) -> PreparedURL:
    """Check a URL submission before any request.

    Raises:
        UploadError: the URL is not an http(s) URL with a host, or an option is not the endpoint's
            (full_content, generate_summary).
    """
    if not isinstance(url, str) or not url.strip():
        raise UploadError(f"submit_url needs an http(s) URL, got {url!r}")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UploadError(f"submit_url needs an http(s) URL with a host, got {url!r}")
    _check_options("submit_url", options, URL_OPTIONS)
    for name, value in options.items():
        _form_value(name, value)  # same value check as uploads; JSON keeps the real types
    body = {"url": url.strip(), **{k: v for k, v in options.items() if v is not None}}
    return PreparedURL(url.strip(), body)


def _result(answer: Any, endpoint: str, kind: str, source: str) -> UploadResult:
    if not isinstance(answer, dict) or not answer.get("run_id"):
        raise APIError(f"POST {endpoint}", 200, f"the answer has no run_id: {str(answer)[:200]!r}")
    job_id = answer.get("job_id")
    return UploadResult(
        job_id=str(job_id) if job_id is not None else None,
        run_id=str(answer["run_id"]),
        status=str(answer.get("status") or ""),
        message=str(answer.get("message") or ""),
        kind=kind,
        source=source,
        raw=dict(answer),
    )


def upload_endpoint(prepared: PreparedUpload, dialect: Dialect | None = None) -> str:
    """The path a checked upload goes to on ``dialect`` (None: published).

    Raises:
        UnsupportedRoute: the dialect takes no uploads of this kind.
    """
    return route(dialect, _UPLOAD_ROUTES[prepared.kind], f"{prepared.kind} uploads", "POST")


async def upload(rest: RestClient, prepared: PreparedUpload, *, dialect: Dialect | None = None) -> UploadResult:
    """Send a checked upload as a streaming multipart form (the file is read in chunks), to the
    endpoint of the server's ``dialect`` (None: ``prepared.endpoint``, the published one), the file
    in the ``file`` field.

    Raises:
        UnsupportedRoute: the dialect takes no uploads of this kind (before any request).
    """
    endpoint = prepared.endpoint if dialect is None else upload_endpoint(prepared, dialect)
    try:
        # opened off the loop (a network file system may be slow); closed below, after the send
        handle = await asyncio.to_thread(prepared.path.open, "rb")
    except OSError as exc:  # removed or locked since prepare_upload
        raise UploadError(f"cannot upload {prepared.path}: cannot read it ({exc.strerror or exc})") from None
    try:
        form = aiohttp.FormData()
        form.add_field("file", handle, filename=prepared.path.name, content_type=prepared.content_type)
        for name, value in prepared.fields:
            form.add_field(name, value)
        answer = await rest.post(endpoint, form=form, streaming=True)
    finally:
        handle.close()
    return _result(answer, endpoint, prepared.kind, prepared.path.name)


async def submit_url(rest: RestClient, prepared: PreparedURL, *, dialect: Dialect | None = None) -> UploadResult:
    """Submit a checked URL for processing (the route of the server's ``dialect``; None: published).

    Raises:
        UnsupportedRoute: the dialect has no URL submission (before any request).
    """
    endpoint = route(dialect, "submit_url", "submit_url", "POST")
    answer = await rest.post(endpoint, json_body=prepared.body)
    return _result(answer, endpoint, "url", prepared.url)
