"""Auth: a refused token stops plainly (no storm, no thread traceback); the token never leaks."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from faulty_server import FAST_CLIENT, FaultyServer

from aios_notebook.client import AIOSClient
from aios_notebook.exceptions import AuthError

pytestmark = pytest.mark.timeout(60)

WRONG = "wrong-token-9f8e7d"


@pytest.mark.parametrize("auth_reply", ["error+close", "close", "error", "http"])
def test_a_refused_token_stops_with_one_plain_auth_error(auth_reply: str, capfd: pytest.CaptureFixture[str],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FaultyServer(auth_reply=auth_reply) as server:
        client = AIOSClient(server.url, WRONG, **FAST_CLIENT).start()
        try:
            with pytest.raises(AuthError) as info:
                client.wait_for(lambda _s: False, timeout=10)
            assert client.state == "auth_failed"
            message = str(info.value)
            assert "refused the token" in message and "\n" not in message and WRONG not in message
            time.sleep(0.5)  # ten times the reconnect delay: a storm would show as more connections
            expected = 0 if auth_reply == "http" else 1
            assert len(server.connections) == expected
            assert not client.running
            with pytest.raises(AuthError):
                client.wait_connected(1)
            rows = client.store.errors
            assert (rows["kind"] == "auth_failed").sum() == 1
            assert not rows["message"].str.contains(WRONG).any()
        finally:
            client.stop()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    client_logs = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server"))
    assert "auth" in client_logs  # websockets' DEBUG lines of the client are there ...
    assert WRONG not in out + err + client_logs  # ... with the token masked
    warnings = [r for r in caplog.records if r.name == "aios_notebook.client" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "refused the token" in warnings[0].getMessage()


def test_connect_raises_the_auth_error_in_the_calling_cell() -> None:
    from aios_notebook.client import connect

    with FaultyServer() as server:
        with pytest.raises(AuthError, match="refused the token"):
            connect(server.url, WRONG, wait=10, **FAST_CLIENT)
        assert len(server.connections) == 1


async def test_events_raise_the_auth_error() -> None:
    def serve() -> FaultyServer:
        return FaultyServer().start()

    server = await asyncio.to_thread(serve)
    try:
        async with AIOSClient(server.url, WRONG, **FAST_CLIENT) as client:
            with pytest.raises(AuthError):
                async for _ in client.events():
                    pass
    finally:
        await asyncio.to_thread(server.stop)


def test_a_token_function_is_called_at_every_connect() -> None:
    calls: list[float] = []
    with FaultyServer(rate=50) as server:

        def token() -> str:
            calls.append(time.monotonic())
            return server.token

        client = AIOSClient(server.url, token, **FAST_CLIENT).start()
        try:
            client.wait_connected(5)
            for n in range(3):
                server.restart()
                server.wait_until(lambda n=n: len(server.messages("auth")) == n + 2, timeout=10)
            client.wait_for(lambda _s: client.state == "connected", timeout=10)
            assert len(calls) == len(server.connections) == 4
            assert [m.data["token"] for m in server.messages("auth")] == [server.token] * 4
        finally:
            client.stop()


def test_an_async_token_function_can_refresh_an_expired_token() -> None:
    tokens = iter(["expired-token-1", "fresh-token-2"])

    async def token() -> str:
        await asyncio.sleep(0)
        return next(tokens)

    with FaultyServer(token="fresh-token-2", auth_reply="close") as server:
        # the first token is refused: auth_failed; start() again asks the function for a new one
        client = AIOSClient(server.url, token, **FAST_CLIENT).start()
        try:
            with pytest.raises(AuthError):
                client.wait_connected(5)
            client.start()
            assert client.wait_connected(5)
            assert client.state == "connected"
            assert [m.data["token"] for m in server.messages("auth")] == ["expired-token-1", "fresh-token-2"]
        finally:
            client.stop()


def test_the_token_never_appears_in_repr_stats_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FaultyServer(rate=100) as server:
        url = server.url + f"?token={server.token}"
        client = AIOSClient(url, server.token, **FAST_CLIENT).start()
        try:
            client.wait_connected(5)
            server.restart(0.1)
            client.wait_for(lambda _s: client.stats.reconnects == 1 and client.state == "connected", timeout=10)
            shown = [repr(client), str(client), client.url, str(client.stats), repr(client.stats),
                     str(client.stats.as_dict()),
                     "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")),
                     client.store.errors.to_string(), repr(client.server_info)]
            for text in shown:
                assert server.token not in text
            assert "token=***" in client.url
        finally:
            client.stop()
