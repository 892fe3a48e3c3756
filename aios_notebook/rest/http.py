"""The async HTTP client of the AIOS v2 REST API: one aiohttp session, timeouts, retries, errors.

This is the one boundary where aiohttp's exceptions become the kit's own (httpx's lesson): callers
above see :class:`~aios_notebook.exceptions.AuthError` (401 / 403) and
:class:`~aios_notebook.exceptions.APIError` (any other failure, naming the endpoint, the status and
the server's message), never an aiohttp class and never the token.

Only idempotent GETs are retried (5xx and connection errors, exponential backoff with jitter,
``Retry-After`` honoured up to the backoff cap): a retried POST could start a job twice.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..exceptions import APIError, AuthError, ConfigurationError, redact

__all__ = ["RETRY_STATUSES", "RestClient", "rest_url_from_ws"]

#: statuses worth another try for a GET: the server or a proxy in front of it is having a moment
RETRY_STATUSES = frozenset({500, 502, 503, 504})

# the longest server message kept in an error (HTML error pages can be huge)
_MESSAGE_LIMIT = 300


def rest_url_from_ws(ws_url: str) -> str:
    """The REST base URL of a WebSocket URL: ``ws://h:p/ws`` -> ``http://h:p``, ``wss`` -> ``https``.

    Raises:
        ConfigurationError: the URL is not a ws://, wss://, http:// or https:// URL with a host.
    """
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ConfigurationError(f"cannot derive a REST URL from {redact(ws_url)!r}: expected ws://host:port/ws")
    # the path (/ws) is the WebSocket's, not the API's; credentials in the URL are never carried over
    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if ":" in parts.hostname:  # an IPv6 literal needs its brackets back
        netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((scheme, netloc, "", "", ""))


class RestClient:
    """An async client of one AIOS v2 REST API.

    Create it, and use it, on one event loop (the client's I/O loop, or a test's loop): the aiohttp
    session is created on first use and belongs to that loop. ``async with`` closes it.

    Args:
        base_url: ``http://host:port`` (a trailing slash or path prefix is kept as the API root).
        token: sent as ``Authorization: Bearer <token>``; never shown anywhere.
        timeout: seconds for a whole GET / JSON POST, and for connecting or for each read of an upload.
        retries: extra attempts of a GET after a 5xx or a connection error (0 = no retry).
        backoff: first backoff in seconds; doubled each attempt, capped at ``max_backoff``.
        max_backoff: the longest wait between two attempts.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"rest_url must be an http:// or https:// URL, got {redact(base_url, token)!r}")
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be positive, got {timeout!r}")
        if retries < 0:
            raise ConfigurationError(f"retries must be 0 or more, got {retries!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._token = token
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        auth = "token=***" if self._token else "no token"
        return f"RestClient({self.base_url!r}, {auth})"

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    @property
    def token(self) -> str | None:
        """The token sent as ``Authorization: Bearer``; settable (a refreshed token)."""
        return self._token

    @token.setter
    def token(self, value: str | None) -> None:
        self._token = value

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                raise_for_status=False,
            )
        return self._session

    def _headers(self) -> dict[str, str] | None:
        # per request, not on the session: the token may be refreshed between two calls
        return {"Authorization": f"Bearer {self._token}"} if self._token else None

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as ``/api/agents``."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` and return the decoded JSON body, retrying 5xx and connection errors.

        Raises:
            AuthError: 401 or 403.
            APIError: any other 4xx / 5xx (after the retries), a connection error or timeout
                (``status`` None), or a body that is not JSON.
        """
        endpoint = f"GET {path}"
        query = _query(params)
        attempt = 0
        while True:
            try:
                async with self._http().get(self.url(path), params=query, headers=self._headers()) as response:
                    if response.status in RETRY_STATUSES and attempt < self.retries:
                        delay = self._delay(attempt, response.headers.get("Retry-After"))
                    else:
                        return await self._answer(endpoint, response)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                if attempt >= self.retries:
                    raise APIError(endpoint, None, self._describe(exc)) from None
                delay = self._delay(attempt, None)
            attempt += 1
            await asyncio.sleep(delay)

    async def post(
        self,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        form: aiohttp.FormData | None = None,
        streaming: bool = False,
    ) -> Any:
        """POST a JSON body or a multipart form once (never retried) and return the decoded JSON answer.

        ``streaming`` (uploads): no limit on the whole request, only on connecting and on each read,
        so a large file may take as long as it needs while a dead server is still noticed.
        """
        endpoint = f"POST {path}"
        timeout = (
            aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout)
            if streaming
            else aiohttp.ClientTimeout(total=self.timeout)
        )
        try:
            async with self._http().post(
                self.url(path), json=json_body, data=form, timeout=timeout, headers=self._headers()
            ) as response:
                return await self._answer(endpoint, response)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise APIError(endpoint, None, self._describe(exc)) from None

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        base = min(self.max_backoff, self.backoff * (2**attempt))
        if retry_after is not None:
            try:
                return min(self.max_backoff, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        # full jitter keeps many notebooks from hammering a recovering server in step
        return random.uniform(base / 2, base)

    async def _answer(self, endpoint: str, response: aiohttp.ClientResponse) -> Any:
        text = await response.text(errors="replace")
        if response.status >= 400:
            message = self._server_message(text) or (response.reason or "")
            if response.status in (401, 403):
                raise AuthError(f"{endpoint} answered {response.status}: {message or 'not authorised'}")
            raise APIError(endpoint, response.status, message)
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise APIError(
                endpoint, response.status, f"the answer is not JSON: {self._clip(text)!r}"
            ) from None

    def _server_message(self, text: str) -> str:
        """The message of an error body: ``message`` / ``error`` / ``detail`` of a JSON object, or the text."""
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict):
            for key in ("message", "error", "detail"):
                value = body.get(key)
                if isinstance(value, str) and value:
                    return self._clip(value)
                if isinstance(value, dict) and isinstance(value.get("message"), str):
                    return self._clip(value["message"])
        return self._clip(text.strip())

    def _clip(self, text: str) -> str:
        text = redact(text, self._token)
        return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, asyncio.TimeoutError):
            return f"no answer within {self.timeout:g} s"
        kind = "cannot connect" if isinstance(exc, aiohttp.ClientConnectorError) else "connection error"
        detail = str(exc) or type(exc).__name__
        return self._clip(f"{kind}: {detail}")


def _query(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Query parameters as strings: None dropped, booleans as true/false, lists comma-joined."""
    if not params:
        return None
    query: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            query[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple, set, frozenset)):
            query[key] = ",".join(str(item) for item in value)
        else:
            query[key] = str(value)
    return query
