"""``Simulator``: the reference AIOS v2 server, in process (async or in a thread) or from the CLI.

::

    async with Simulator(seed=7, speed=60, scenario="steady") as sim:
        sim.url, sim.http_url, sim.token, sim.labels

    sim = Simulator(speed=600).start_in_thread()   # its own loop in a daemon thread
    ...
    sim.stop()

The simulated clock runs ``speed`` simulated seconds per wall second from ``start`` (default: now,
floored to the minute, less the warm-up, so that served time tracks the wall clock). ``warmup``
simulated seconds are run at once before the socket opens: the state, REST and the replay buffer
hold that history. If the machine cannot keep up with a very high speed, the simulated clock
slips (at most 0.25 wall seconds of simulated time per tick) rather than bursting.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from ..clock import Clock
from ..exceptions import ConfigurationError
from .app import build_app
from .connection import CLOSE_TIMEOUT, Connection
from .entities import Job
from .hub import Hub
from .scenarios import get_scenario, labels_document
from .timestamps import epoch_of
from .workload import Workload

__all__ = ["Simulator", "is_loopback"]

log = logging.getLogger(__name__)

_MAX_CATCH_UP = 0.25  # wall seconds of simulated time one tick may cover
_DAY = 86_400.0


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SimulatedClock:
    """A Simulator's clock (see ``Simulator.clock``)."""

    def __init__(self, simulator: Simulator) -> None:
        self._simulator = simulator

    def time(self) -> float:
        return self._simulator.now

    def monotonic(self) -> float:
        return time.monotonic()


class Simulator:
    """The reference AIOS v2 server: seeded workload + WebSocket ``/ws`` + REST ``/api/``.

    Args:
        seed: workload seed (the same seed, scenario and start give the same events).
        speed: simulated seconds per wall second (60: a simulated minute per second).
        scenario: a name of ``scenarios.SCENARIOS``.
        scenario_params: reshape its anomaly: ``magnitude`` (1.0 as described, 0 none), window
            times, target (see :meth:`~aios_notebook.server.scenarios.Scenario.reshape`).
        token: the auth token (default: a random one; read it from ``sim.token``).
        host: address to bind; 127.0.0.1 unless told otherwise.
        port: port to bind (0: any free port; read it from ``sim.port``).
        heartbeat: wall seconds between ``ping`` events.
        start: where simulated time starts: epoch seconds, a datetime or an ISO time (default:
            now, see the module docstring).
        warmup: simulated seconds run at once before serving.
        replay_buffer: events kept for ``resync``.
        auth_timeout: wall seconds a client has to authenticate (then 4408).
        send_queue_limit: frames a client may fall behind before it is cut off with 1008.
        max_upload_bytes: the largest upload accepted (413 beyond).
        tick: wall seconds between simulation steps.
    """

    def __init__(
        self,
        seed: int = 7,
        speed: float = 60.0,
        scenario: str = "steady",
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat: float = 30.0,
        start: float | datetime | str | None = None,
        warmup: float = 0.0,
        replay_buffer: int = 100_000,
        *,
        auth_timeout: float = 10.0,
        send_queue_limit: int = 20_000,
        max_upload_bytes: int = 50 * 1024 * 1024,
        tick: float = 0.05,
        scenario_params: Mapping[str, Any] | None = None,
    ) -> None:
        # a clear error now rather than at start
        self.shaped_scenario = get_scenario(scenario).reshape(scenario_params)
        self.scenario_params = dict(scenario_params or {})
        for name, value in (("speed", speed), ("heartbeat", heartbeat), ("auth_timeout", auth_timeout),
                            ("tick", tick)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
        if not (isinstance(warmup, (int, float)) and math.isfinite(warmup) and warmup >= 0):
            raise ConfigurationError(f"warmup must be a number of simulated seconds >= 0, got {warmup!r}")
        for name, value in (("replay_buffer", replay_buffer), ("send_queue_limit", send_queue_limit),
                            ("max_upload_bytes", max_upload_bytes)):
            if not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"port must be 0-65535, got {port!r}")
        if token is not None and (not isinstance(token, str) or not token):
            raise ConfigurationError("token must be a non-empty string")
        self.seed = seed
        self.speed = float(speed)
        self.scenario = scenario
        self.token = token or secrets.token_urlsafe(24)
        self.host = host
        self.port = port
        self.heartbeat = float(heartbeat)
        self.start_time = epoch_of(start)
        self.warmup = float(warmup)
        self.auth_timeout = float(auth_timeout)
        self.send_queue_limit = send_queue_limit
        self.max_upload_bytes = max_upload_bytes
        self.tick = float(tick)
        self.hub = Hub(replay_buffer)
        self.connections: set[Connection] = set()
        #: connections, slow_readers_cut (closed 1008), simulation_errors (logged, skipped)
        self.stats: Counter[str] = Counter()
        self._workload: Workload | None = None
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._sim_ms = 0.0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None

    def __repr__(self) -> str:
        where = self.url if self._runner is not None else "not started"
        return (f"Simulator(scenario={self.scenario!r}, seed={self.seed}, speed={self.speed:g}, "
                f"{where})")

    # -- what clients need -------------------------------------------------------------------------
    @property
    def _url_host(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else "::1" if self.host == "::" else self.host
        return f"[{host}]" if ":" in host else host

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/ws``."""
        return f"ws://{self._url_host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        """``http://HOST:PORT`` (REST under ``/api/``)."""
        return f"http://{self._url_host}:{self.port}"

    @property
    def workload(self) -> Workload:
        if self._workload is None:
            raise RuntimeError("the simulator has not been started")
        return self._workload

    @property
    def now(self) -> float:
        """Simulated time, epoch seconds."""
        return self.workload.now

    @property
    def clock(self) -> Clock:
        """The server's clock: ``time()`` is simulated time (what it writes in connection-scoped
        messages), ``monotonic()`` the real one (heartbeats and timeouts run in wall seconds)."""
        return _SimulatedClock(self)

    @property
    def origin(self) -> float:
        """Epoch seconds where simulated time started."""
        if self.start_time is not None:
            return float(self.start_time)
        return self.workload.origin_ms / 1000

    @property
    def labels(self) -> list[dict[str, Any]]:
        """Ground truth: the scenario's anomaly windows over the first week (or warm-up + a day)."""
        origin = self.origin
        return self.shaped_scenario.labels(origin, origin + max(7 * _DAY, self.warmup + _DAY))

    def labels_document(self) -> dict[str, Any]:
        """The ``--labels FILE`` JSON document."""
        origin = self.origin
        return labels_document(self.shaped_scenario, self.seed, origin, origin + max(7 * _DAY, self.warmup + _DAY))

    def next_client_id(self) -> str:
        """``client-1``, ``client-2`` ... in the order clients connect to this server."""
        self.stats["connections"] += 1
        return f"client-{self.stats['connections']}"

    def check_token(self, token: str) -> bool:
        """Constant-time comparison with the server's token."""
        return hmac.compare_digest(token.encode("utf-8"), self.token.encode("utf-8"))

    def start_job(self, kind: str, filename: str) -> Job:
        """Start a job now (REST uploads); its first events are published at once."""
        job = self.workload.submit(kind, filename)
        self.hub.publish(self.workload.flush())
        return job

    # -- async lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Warm up, bind, and start the simulation (returns once the port listens)."""
        if self._workload is not None:
            raise RuntimeError("a Simulator starts once")
        origin = self.start_time
        if origin is None:
            origin = math.floor(time.time() / 60) * 60 - self.warmup
        self._workload = self._make_workload(origin)
        self.hub.publish(self._workload.flush())
        if self.warmup:
            self.hub.publish(self._workload.advance(origin + self.warmup))
        self._sim_ms = float(self._workload.now_ms)
        self._runner = web.AppRunner(build_app(self), access_log=None, shutdown_timeout=CLOSE_TIMEOUT)
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigurationError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.port = int(self._runner.addresses[0][1])
        self._task = asyncio.get_running_loop().create_task(self._run(), name="aios-simulation")

    def _make_workload(self, origin: float) -> Workload:
        """The event source, from simulated time ``origin`` (the replay server serves a recording)."""
        return Workload(self.seed, self.scenario, origin, scenario_params=self.scenario_params)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        housekeeping = min(0.25, self.heartbeat / 4, self.auth_timeout / 4)
        next_housekeeping = last
        while True:
            # a steady cadence: the time a step took comes off the pause before the next one (a
            # step longer than a tick still yields once, so the sockets get their turn)
            await asyncio.sleep(max(0.0, last + self.tick - loop.time()))
            now = loop.time()
            self._sim_ms += min(now - last, _MAX_CATCH_UP) * self.speed * 1000
            last = now
            try:
                events = self.workload.advance_ms(int(self._sim_ms))
                if events:
                    self.hub.publish(events)
            except Exception:  # a bug in the workload must not take the sockets down with it
                log.exception("simulation step failed")
                self.stats["simulation_errors"] += 1
            if now >= next_housekeeping:
                next_housekeeping = now + housekeeping
                for connection in list(self.connections):
                    connection.tick()

    async def close(self) -> None:
        """Send ``connection_error server_shutdown`` and close 1001 to every client, then stop."""
        if self._closing or self._runner is None:
            return
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        connections = list(self.connections)
        for connection in connections:
            connection.shutdown()
        if connections:
            await asyncio.wait([asyncio.ensure_future(c.closed()) for c in connections], timeout=CLOSE_TIMEOUT + 1)
        await self._runner.cleanup()
        self._runner = None

    # -- in a thread ---------------------------------------------------------------------------------
    def start_in_thread(self, timeout: float = 30.0) -> Simulator:
        """Run the server on its own event loop in a daemon thread; returns once it listens."""
        if self._thread is not None:
            raise RuntimeError("a Simulator starts once")
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._stop_requested = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                raise
            finally:
                ready.set()
            await self._stop_requested.wait()
            await self.close()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(serve())
            except BaseException:
                if not failure:
                    log.exception("the simulator thread stopped")
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="aios-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"the simulator did not start within {timeout:g} s")
        if failure:
            self._thread.join(timeout)
            raise failure[0]
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop a server started with :meth:`start_in_thread` (clients get server_shutdown)."""
        thread, loop, stop = self._thread, self._loop, self._stop_requested
        if thread is None or loop is None or stop is None:
            raise RuntimeError("stop() is for start_in_thread(); use `await sim.close()` in async code")
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop may have closed on its own
                loop.call_soon_threadsafe(stop.set)
            thread.join(timeout)
