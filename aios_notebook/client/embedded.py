"""``connect()``: the notebook one-liner (environment, or the embedded reference server)."""

from __future__ import annotations

import os
from typing import Any

from ..exceptions import ConfigurationError
from .client import AIOSClient
from .connection import TokenSource

__all__ = ["connect"]


def connect(
    url: str | None = None,
    token: TokenSource | None = None,
    *,
    wait: float = 10.0,
    speed: float = 60.0,
    scenario: str = "steady",
    seed: int = 7,
    **options: Any,
) -> AIOSClient:
    """Connect to an AIOS v2 server and start feeding a new store; returns the running client.

    ``url`` / ``token`` default to the ``AIOS_URL`` / ``AIOS_TOKEN`` environment variables. With
    neither a url nor ``AIOS_URL``, the reference server (the simulator) is started in the
    background on a free port and the client connects to it; one line says so. ``client.stop()``
    stops that server too.

    Args:
        url: ``ws://`` or ``wss://`` address of the WebSocket.
        token: the token, or a function returning it (called at every connect). None (and no
            ``AIOS_TOKEN``) for a server without auth, such as the AIOS v2 backend's own app; a
            server that wants one then raises ``AuthError`` saying so.
        wait: seconds to wait for the server to accept the token (0: return at once). A refused
            token raises ``AuthError`` here, in the calling cell; a server that is not reachable
            yet is not an error: the client keeps trying in the background.
        speed, scenario, seed: settings of the embedded reference server (ignored otherwise).
        **options: passed to ``AIOSClient`` (types, filters, store, ssl, max_reconnects ...).

    Raises:
        AuthError: the server refused the token within ``wait``.
        ConfigurationError: a token without a url, or bad options.
    """
    url = url or os.environ.get("AIOS_URL") or None
    if token is None:
        token = os.environ.get("AIOS_TOKEN") or None
    simulator = None
    if url is None:
        if token is not None:
            raise ConfigurationError("a token was given (or AIOS_TOKEN is set) but no url: pass url=... or set AIOS_URL")
        from ..server import Simulator  # the server's dependencies only when it is used

        simulator = Simulator(seed=seed, speed=speed, scenario=scenario).start_in_thread()
        url, token = simulator.url, simulator.token
        print(f"AIOS: no AIOS_URL set: started the reference server ({scenario}, {speed:g}x) at {url}")
    try:
        client = AIOSClient(url, token, **options)
    except BaseException:
        if simulator is not None:
            simulator.stop()
        raise
    if simulator is not None:
        client.simulator = simulator
        client._on_stop.append(simulator.stop)
    client.start()
    if wait and not client.wait_connected(wait):
        print(f"AIOS: {client.url} has not answered yet ({client.stats.last_error or 'connecting'}); "
              f"the client keeps trying in the background")
    return client
