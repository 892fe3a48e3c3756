"""The reference AIOS v2 server: a seeded simulated deployment behind a faithful WebSocket + REST API.

Layers, bottom up (each module says more):

- ``catalog``, ``content``: the static cast (workflows, agents, topics, error texts) and texts;
- ``scenarios``, ``incidents``: the anomalies, their windows and labels, their effects;
- ``entities``, ``agents``, ``analytics``, ``workload``: the discrete-event simulation on a
  simulated clock;
  ``workload.generate(seed, scenario, hours)`` gives its events offline, without sockets;
- ``hub``: global ``seq``, the replay buffer and fan-out; ``connection``: one client's
  :class:`~aios_notebook.protocol.session.ServerSession` (the protocol rules shared with the
  client), send queue and writer; ``rest``: the REST API; ``app``: the aiohttp application;
- ``simulator``: :class:`Simulator`, the whole server in process; ``cli``: ``aios-notebook serve``.

Why aiohttp: one well-kept asyncio library serves the WebSocket, the REST API and streamed
multipart uploads on a single port, as an AIOS v2 deployment does, with real HTTP parsing (no
hand-written HTTP) and no second server process; the simulation, the sockets and the REST
handlers share one event loop, so they read one state without locks.

``Simulator`` is imported lazily so that ``aios_notebook.server.workload`` (used offline by the
rules and benchmarks) does not pull in aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["SCENARIOS", "Simulator", "generate"]

if TYPE_CHECKING:
    from .scenarios import SCENARIOS
    from .simulator import Simulator
    from .workload import generate

_LAZY = {
    "Simulator": ".simulator",
    "generate": ".workload",
    "SCENARIOS": ".scenarios",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module, __name__), name)
