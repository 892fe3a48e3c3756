"""The recording format (docs/design.md, record.py): JSONL, a header line, then one line per frame.

::

    {"aios_recording": 1, "url": "ws://host/ws", "started_at": "...Z", "types": [...], "part": 0}
    {"t": "2026-11-26T14:00:00.123456Z", "frame": "<the text frame exactly as received>"}
    {"t": "2026-11-26T14:00:00.125000Z", "binary": "<base64 of a binary frame>"}

``t`` is when the frame was received (wall clock, microseconds, UTC). Frames are kept verbatim,
malformed ones included, so a load or a replay sees exactly what the client saw. The token never
appears: the header holds the URL with any credentials removed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..protocol.codec import format_timestamp, parse_timestamp

__all__ = [
    "FORMAT_VERSION",
    "HEADER_KEY",
    "format_received_at",
    "frame_line",
    "header_line",
    "public_url",
]

FORMAT_VERSION = 1
HEADER_KEY = "aios_recording"

# query parameters that may carry a credential: dropped from the URL kept in the header
_SECRET_PARAMS = ("token", "auth", "key", "secret", "password", "signature", "sig")


def format_received_at(moment: datetime | float | str | None) -> str:
    """A receive time as ISO 8601 UTC with microseconds and ``Z`` (None = now).

    Microseconds (not the protocol's milliseconds) so that frames received within the same
    millisecond keep their order and spacing in a replay.
    """
    if moment is None:
        moment = datetime.now(timezone.utc)
    elif isinstance(moment, str):
        parsed = parse_timestamp(moment)
        if parsed is None:
            raise ValueError(f"not a timestamp: {moment[:40]!r}")
        moment = parsed
    return format_timestamp(moment, microseconds=True)


def public_url(url: str | None) -> str | None:
    """``url`` without user:password and without query parameters that may hold a credential."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not any(s in k.lower() for s in _SECRET_PARAMS)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


def header_line(url: str | None, started_at: datetime | float | str | None,
                types: Iterable[str] | None, part: int = 0, **extra: Any) -> str:
    """The first line of a recording (with its newline)."""
    header: dict[str, Any] = {
        HEADER_KEY: FORMAT_VERSION,
        "url": public_url(url),
        "started_at": format_received_at(started_at),
        "types": sorted(types) if types is not None else None,
        "part": part,
    }
    header.update(extra)
    return json.dumps(header, separators=(",", ":")) + "\n"


def frame_line(frame: str | bytes | bytearray | memoryview, received_at: str) -> str:
    """One frame's line (with its newline): text verbatim, binary as base64."""
    if isinstance(frame, str):
        # ensure_ascii keeps the line pure ASCII: a torn multi-byte character cannot occur
        return '{"t":"' + received_at + '","frame":' + json.dumps(frame) + "}\n"
    encoded = base64.b64encode(bytes(frame)).decode("ascii")
    return '{"t":"' + received_at + '","binary":"' + encoded + '"}\n'
