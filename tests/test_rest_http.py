"""The REST client against small real aiohttp servers on 127.0.0.1: retries, errors, secrets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from aios_notebook.exceptions import APIError, AuthError, ConfigurationError
from aios_notebook.rest import RestClient, rest_url_from_ws

pytestmark = pytest.mark.timeout(30)

TOKEN = "s3cret-token-do-not-show"


class TinyServer:
    """An aiohttp app on 127.0.0.1 that counts the requests it sees."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.hits: dict[str, int] = {}
        self.headers: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    def route(self, method: str, path: str, answers: list[Callable[[web.Request], web.StreamResponse]]) -> None:
        """Answer the n-th request with ``answers[n]`` (the last one repeats)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            key = f"{method} {path}"
            count = self.hits.get(key, 0)
            self.hits[key] = count + 1
            self.headers.append(dict(request.headers))
            answer = answers[min(count, len(answers) - 1)]
            result = answer(request)
            return await result if asyncio.iscoroutine(result) else result

        self.app.router.add_route(method, path, handler)

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def tiny() -> AsyncIterator[TinyServer]:
    server = TinyServer()
    yield server
    await server.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ok(body: object) -> Callable[[web.Request], web.Response]:
    return lambda request: web.json_response(body)


def fail(status: int, body: object | None = None, text: str | None = None) -> Callable[[web.Request], web.Response]:
    if body is not None:
        return lambda request: web.json_response(body, status=status)
    return lambda request: web.Response(status=status, text=text or "")


def test_rest_url_from_ws() -> None:
    assert rest_url_from_ws("ws://127.0.0.1:8000/ws") == "http://127.0.0.1:8000"
    assert rest_url_from_ws("wss://aios.example.com/ws") == "https://aios.example.com"
    assert rest_url_from_ws("wss://user:pw@aios.example.com:9443/ws?x=1") == "https://aios.example.com:9443"
    assert rest_url_from_ws("ws://[::1]:8000/ws") == "http://[::1]:8000"
    with pytest.raises(ConfigurationError, match="cannot derive a REST URL"):
        rest_url_from_ws("ftp://host/ws")
    with pytest.raises(ConfigurationError):
        rest_url_from_ws("not a url")


def test_bad_settings_and_repr_hide_the_token() -> None:
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        RestClient("ws://127.0.0.1:1/ws")
    with pytest.raises(ConfigurationError, match="timeout"):
        RestClient("http://127.0.0.1:1", timeout=0)
    with pytest.raises(ConfigurationError, match="retries"):
        RestClient("http://127.0.0.1:1", retries=-1)
    rest = RestClient("http://127.0.0.1:1", TOKEN)
    assert TOKEN not in repr(rest) and "***" in repr(rest)


async def test_get_sends_bearer_and_query(tiny: TinyServer) -> None:
    seen: list[dict[str, str]] = []

    def echo(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return web.json_response({"items": [1, 2]})

    tiny.route("GET", "/api/agents", [echo])
    await tiny.start()
    async with RestClient(tiny.url, TOKEN) as rest:
        answer = await rest.get("/api/agents", {"limit": 5, "q": None, "tags": ["a", "b"], "flag": True})
    assert answer == {"items": [1, 2]}
    assert tiny.headers[0]["Authorization"] == f"Bearer {TOKEN}"
    assert seen == [{"limit": "5", "tags": "a,b", "flag": "true"}]


async def test_get_retries_5xx_then_succeeds(tiny: TinyServer) -> None:
    tiny.route("GET", "/api/agents", [fail(503, text="busy"), fail(500, text="oops"), ok([{"agent_id": "a"}])])
    await tiny.start()
    async with RestClient(tiny.url, TOKEN, retries=3, backoff=0.01) as rest:
        assert await rest.get("/api/agents") == [{"agent_id": "a"}]
    assert tiny.hits["GET /api/agents"] == 3


async def test_get_gives_up_after_the_retries_naming_endpoint_status_and_message(tiny: TinyServer) -> None:
    tiny.route("GET", "/api/analytics/dashboard", [fail(502, {"message": "upstream exploded"})])
    await tiny.start()
    async with RestClient(tiny.url, TOKEN, retries=2, backoff=0.01) as rest:
        with pytest.raises(APIError) as caught:
            await rest.get("/api/analytics/dashboard")
    assert tiny.hits["GET /api/analytics/dashboard"] == 3  # one try and two retries
    error = caught.value
    assert (error.endpoint, error.status, error.server_message) == (
        "GET /api/analytics/dashboard", 502, "upstream exploded")
    assert str(error) == "GET /api/analytics/dashboard answered 502: upstream exploded"


async def test_4xx_is_not_retried(tiny: TinyServer) -> None:
    tiny.route("GET", "/api/knowledge/search", [fail(422, {"detail": "limit must be <= 100"})])
    await tiny.start()
    async with RestClient(tiny.url, TOKEN, backoff=0.01) as rest:
        with pytest.raises(APIError, match=r"GET /api/knowledge/search answered 422: limit must be <= 100"):
            await rest.get("/api/knowledge/search", {"limit": 1000})
    assert tiny.hits["GET /api/knowledge/search"] == 1


async def test_post_is_never_retried(tiny: TinyServer) -> None:
    tiny.route("POST", "/api/workflows/from-url", [fail(503, text="busy"), ok({"run_id": "r"})])
    await tiny.start()
    async with RestClient(tiny.url, TOKEN, backoff=0.01) as rest:
        with pytest.raises(APIError) as caught:
            await rest.post("/api/workflows/from-url", json_body={"url": "https://example.com"})
    assert caught.value.status == 503 and caught.value.endpoint == "POST /api/workflows/from-url"
    assert tiny.hits["POST /api/workflows/from-url"] == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_are_auth_errors_without_the_token(tiny: TinyServer, status: int) -> None:
    # a careless server that echoes the header it got must not leak it through our error
    def refuse(request: web.Request) -> web.Response:
        return web.json_response({"message": f"bad credentials: {request.headers['Authorization']}"}, status=status)

    tiny.route("GET", "/api/agents", [refuse])
    await tiny.start()
    async with RestClient(tiny.url, TOKEN) as rest:
        with pytest.raises(AuthError) as caught:
            await rest.get("/api/agents")
    text = str(caught.value)
    assert f"GET /api/agents answered {status}" in text
    assert TOKEN not in text and "***" in text
    assert tiny.hits["GET /api/agents"] == 1


async def test_server_message_is_clipped_and_redacted(tiny: TinyServer) -> None:
    page = "<html>" + f"token={TOKEN} " + "x" * 5000 + "</html>"
    tiny.route("GET", "/api/agents", [fail(404, text=page)])
    await tiny.start()
    async with RestClient(tiny.url, TOKEN) as rest:
        with pytest.raises(APIError) as caught:
            await rest.get("/api/agents")
    assert caught.value.status == 404
    assert TOKEN not in str(caught.value)
    assert len(caught.value.server_message) <= 300


async def test_answer_that_is_not_json(tiny: TinyServer) -> None:
    tiny.route("GET", "/api/agents", [lambda request: web.Response(text="<html>hello</html>")])
    await tiny.start()
    async with RestClient(tiny.url, TOKEN) as rest:
        with pytest.raises(APIError, match="not JSON"):
            await rest.get("/api/agents")


async def test_connection_refused_is_retried_then_an_api_error() -> None:
    port = free_port()
    async with RestClient(f"http://127.0.0.1:{port}", TOKEN, retries=2, backoff=0.01) as rest:
        with pytest.raises(APIError) as caught:
            await rest.get("/api/agents")
    assert caught.value.status is None
    assert caught.value.endpoint == "GET /api/agents"
    assert "cannot connect" in str(caught.value)


async def test_connection_refused_then_server_appears(tiny: TinyServer) -> None:
    # the first attempt finds nobody listening; the server comes up during the backoff
    port = free_port()
    tiny.route("GET", "/api/agents", [ok([])])

    async def late_start() -> None:
        await asyncio.sleep(0.05)
        tiny.runner = web.AppRunner(tiny.app)
        await tiny.runner.setup()
        await web.TCPSite(tiny.runner, "127.0.0.1", port).start()

    starter = asyncio.create_task(late_start())
    async with RestClient(f"http://127.0.0.1:{port}", TOKEN, retries=6, backoff=0.05, max_backoff=0.2) as rest:
        assert await rest.get("/api/agents") == []
    await starter
    assert tiny.hits["GET /api/agents"] == 1


async def test_timeout_names_the_endpoint(tiny: TinyServer) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response([])

    tiny.route("GET", "/api/agents", [slow])
    await tiny.start()
    async with RestClient(tiny.url, TOKEN, timeout=0.2, retries=1, backoff=0.01) as rest:
        with pytest.raises(APIError, match=r"GET /api/agents failed: no answer within 0.2 s"):
            await rest.get("/api/agents")
    release.set()
    assert tiny.hits["GET /api/agents"] == 2  # a timed-out GET is retried too


async def test_retry_after_is_honoured_up_to_the_cap(tiny: TinyServer) -> None:
    busy = lambda request: web.Response(status=503, headers={"Retry-After": "3600"})  # noqa: E731
    tiny.route("GET", "/api/agents", [busy, ok(["fine"])])
    await tiny.start()
    async with RestClient(tiny.url, TOKEN, backoff=0.01, max_backoff=0.05) as rest:
        assert await rest.get("/api/agents") == ["fine"]  # waited 0.05 s, not an hour
