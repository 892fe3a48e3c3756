"""The client's REST side: snapshots on connect and after gaps, and the calls the notebook makes.

``AIOSClient`` owns one :class:`RestService`; its connection engine calls three hooks on the I/O
loop, and none of them can raise or stall the stream:

- ``before_connect(token, first)``: on the very first connection the snapshot is fetched *before*
  the WebSocket opens (at most ``snapshot_wait`` seconds; past that it finishes in the background),
  as the AIOS web UI does: the analyst sees every agent, running DAG and KPI at once, and there is no
  live stream yet that waiting could hold up.
- ``connected(reconnect)``: every later connection refreshes the snapshot in the background (the
  resync fills the stream; the snapshot fixes whatever the server could not replay).
- ``gap(event)``: a gap the server could not fill (``GapDetected``) refreshes it too.

Snapshots never overlap: a request during a fetch runs once more after it. A failed snapshot is one
errors row (kind ``snapshot``); a server without the REST API (404, or nothing listening while the
WebSocket works) is noted once and snapshots stop: the client carries on with the WebSocket alone.

Every call takes the routes of the connection's dialect (``autopilot`` ...; :mod:`.routes`). With
``dialect="auto"`` the first snapshot, before the greeting, asks the published routes; its outcome
is judged once the greeting names the dialect: kept (errors and all) when the dialect has those
routes, else set aside and fetched again with the dialect's own. What a dialect has no route for is
skipped and noted once per client (one ``snapshot`` row naming the dialect and the routes), not on
every reconnect; a call it has no route for raises ``UnsupportedRoute`` before any request.

The notebook's calls (``upload`` ...) run on the I/O loop when the client runs, else on a short-lived
loop of their own, so they work before ``start()`` and after ``stop()`` too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..exceptions import AIOSError, AuthError, ConfigurationError, ConnectionLost, redact
from ..protocol.dialects import Dialect
from ..storelike import StoreLike, StreamSink
from .http import RestClient, rest_url_from_ws
from .lookups import check_search, get_dag_run, search_knowledge
from .routes import PUBLISHED_ROUTES, published_dialect, route
from .snapshot import Snapshot, SnapshotUnavailable, fetch_snapshot, merge_into, published_run
from .uploads import UploadResult, prepare_upload, prepare_url, submit_url, upload, upload_endpoint
from .watch import RunState, RunWatch, run_state

__all__ = ["RestService"]

log = logging.getLogger("aios_notebook.client")

T = TypeVar("T")


class RestService:
    """REST snapshots and calls for one client.

    Args:
        ws_url: the client's WebSocket URL (the REST base derives from it unless ``rest_url``).
        token: an async function giving the current token (the client's token source).
        store: the store snapshots merge into.
        loop: a function giving the client's I/O loop while it runs (None otherwise).
        dialect: a function giving the connection's dialect, None while the greeting has not named
            it (default: always the published protocol).
        rest_url: the REST base URL, when it is not the WebSocket's host.
        snapshots: False: never fetch snapshots (uploads and lookups still work).
        snapshot_wait: the longest the first connection waits for its snapshot, in seconds.
        timeout: seconds per REST request.
        retries: extra attempts of a GET after a 5xx or a connection error.
    """

    def __init__(
        self,
        ws_url: str,
        token: Callable[[], Awaitable[str | None]],
        store: StreamSink,
        loop: Callable[[], asyncio.AbstractEventLoop | None],
        *,
        dialect: Callable[[], Dialect | None] | None = None,
        rest_url: str | None = None,
        snapshots: bool = True,
        snapshot_wait: float = 5.0,
        timeout: float = 10.0,
        retries: int = 3,
    ) -> None:
        self.base_url = (rest_url or rest_url_from_ws(ws_url)).rstrip("/")
        RestClient(self.base_url, timeout=timeout, retries=retries)  # checks the settings now
        if not snapshot_wait >= 0:
            raise ConfigurationError(f"snapshot_wait must be >= 0 s, got {snapshot_wait!r}")
        self._token_source = token
        self._token: str | None = None
        # the dialect of the client's connection: None until the server's greeting names it
        self._dialect = dialect if dialect is not None else published_dialect
        self._seen: Dialect | None = None  # the last dialect known: it outlives a reconnect's "not yet"
        # a snapshot taken with the published routes before the greeting: greeted() judges it
        self._tentative: tuple[str, Snapshot | Exception] | None = None
        self._missing_noted: set[str] = set()  # dialects whose missing routes were noted
        self.store = store
        self._loop = loop
        self.snapshots = bool(snapshots)
        self.snapshot_wait = float(snapshot_wait)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.unavailable: str | None = None  # why snapshots stopped, once noted
        self.last_snapshot: Snapshot | None = None
        self.snapshots_taken = 0
        self.snapshots_failed = 0
        self._rest: RestClient | None = None  # lives on the I/O loop
        self._task: asyncio.Task[None] | None = None
        self._again: str | None = None  # why another snapshot was asked for during a fetch
        self._connected_once = False
        self._first_done = False
        self._retry_on_open = False  # the snapshot before connecting found nothing listening
        self._watches: set[RunWatch] = set()

    def __repr__(self) -> str:
        return f"RestService({self.base_url!r}, snapshots={'off' if not self.snapshots else 'on'})"

    def _client(self) -> RestClient:
        if self._rest is None:
            self._rest = RestClient(self.base_url, self._token, timeout=self.timeout, retries=self.retries)
        return self._rest

    def _set_token(self, token: str | None) -> None:
        self._token = token
        if self._rest is not None:
            self._rest.token = token

    # -- hooks, on the I/O loop (never raise) ---------------------------------------------------
    async def before_connect(self, token: str | None, first: bool) -> None:
        """Called before each WebSocket connect; the first one waits for its snapshot (bounded)."""
        self._set_token(token)
        if not first or self._first_done or not self._wanted():
            return
        # with dialect "auto" the greeting has not said yet which routes the server has: try the
        # published ones (the kit's own server answers them all, so its dashboard is full before the
        # first event); a server that lacks them is judged only once greeted() knows its dialect
        self.request_snapshot("connect")
        task = self._task
        if task is not None and self.snapshot_wait > 0:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), self.snapshot_wait)

    def connected(self, reconnect: bool) -> None:
        """Called when a WebSocket connection is open: later connections refresh the snapshot."""
        self._connected_once = True
        if reconnect:
            self.request_snapshot("reconnect")
        elif self._retry_on_open:
            self._retry_on_open = False
            self.request_snapshot("connect")  # now we know whether the REST API is there

    def greeted(self, dialect: Dialect) -> None:
        """Called when the server's greeting named its dialect: judge a snapshot taken before it
        with the published routes, or take the first one now."""
        self._seen = dialect
        tentative, self._tentative = self._tentative, None
        if tentative is not None:
            reason, outcome = tentative
            if dialect.routes == PUBLISHED_ROUTES:
                self._settle(reason, outcome, dialect)
            else:  # the published routes of a server that has others: ask its own
                self.request_snapshot(reason)
        elif not self._first_done and (self._task is None or self._task.done()):
            self.request_snapshot("connect")

    def _known(self) -> Dialect | None:
        """The connection's dialect, else the last one known (None: never known yet)."""
        dialect = self._dialect()
        if dialect is not None:
            self._seen = dialect
        return dialect if dialect is not None else self._seen

    def dialect(self) -> Dialect:
        """The dialect calls are made in: the connection's, else the last known, else published."""
        known = self._known()
        return known if known is not None else published_dialect()

    def gap(self, event: Any = None) -> None:
        """Called for a gap the server could not fill: refresh the snapshot."""
        self.request_snapshot("gap")

    def _wanted(self) -> bool:
        return self.snapshots and self.unavailable is None

    def request_snapshot(self, reason: str) -> None:
        """Fetch and merge a snapshot in the background (coalesced with one already running)."""
        if not self._wanted():
            return
        if self._task is not None and not self._task.done():
            self._again = reason  # the running fetch may have read the state before the news
            return
        self._task = asyncio.get_running_loop().create_task(self._snapshots(reason), name="aios-snapshot")

    async def _snapshots(self, reason: str | None) -> None:
        while reason is not None and self._wanted():
            self._again = None
            await self._snapshot_once(reason)
            reason = self._again

    async def _snapshot_once(self, reason: str) -> None:
        dialect = self._known()  # None: never known yet, the published routes are asked
        outcome: Snapshot | Exception
        try:
            outcome = await fetch_snapshot(self._client(), dialect=dialect)
            # merging hundreds of rows is work for pandas: off the loop, so frames keep flowing
            await asyncio.to_thread(merge_into, self._tables(), outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # judged below, once the dialect is known
            outcome = exc
        if isinstance(outcome, SnapshotUnavailable) and outcome.status is None and not self._connected_once:
            # nothing answers, and the WebSocket has not answered yet either: the server may
            # still be starting (its connection errors say so); try again once connected
            self._retry_on_open = True
            return
        if dialect is None:
            dialect = self._known()
            if dialect is None:  # the greeting has not come yet: greeted() judges it
                self._tentative = (reason, outcome)
                return
            if dialect.routes != PUBLISHED_ROUTES:  # it came meanwhile, and names other routes
                self._again = self._again or reason
                return
        self._settle(reason, outcome, dialect)

    def _settle(self, reason: str, outcome: Snapshot | Exception, dialect: Dialect) -> None:
        """Record a snapshot's outcome: taken (what the dialect lacks noted once), or one errors row why not."""
        if isinstance(outcome, Snapshot):
            self._note_missing(outcome)  # before last_snapshot shows it: that is the sign it settled
            self.last_snapshot = outcome
            self.snapshots_taken += 1
            self._first_done = True
            if outcome.problems:
                self._failed(f"snapshot on {reason} is partial: " + "; ".join(outcome.problems), count=False)
        elif isinstance(outcome, SnapshotUnavailable):
            self.unavailable = str(outcome)
            self._note(f"no REST API at {self.base_url} ({outcome}): carrying on with the WebSocket alone")
        elif isinstance(outcome, AuthError):
            self._failed(f"snapshot on {reason} refused: {outcome}")
        elif isinstance(outcome, AIOSError):  # APIError: endpoint, status and message say it all
            self._failed(f"snapshot on {reason} failed: {outcome}")
        else:  # a bug (the store's, ours): one row too, and the stream goes on
            self._failed(f"snapshot on {reason} failed: {type(outcome).__name__}: {outcome}")

    def _note_missing(self, snapshot: Snapshot) -> None:
        """The parts a dialect has no route for: one row per client and dialect, not per snapshot."""
        if not snapshot.skipped or snapshot.dialect in self._missing_noted:
            return
        self._missing_noted.add(snapshot.dialect)
        parts = ", ".join(f"{kind} ({path})" for kind, path in snapshot.skipped.items())
        self._note(f"the server speaks the {snapshot.dialect!r} dialect, which has no route for {parts}: "
                   f"snapshots skip them")

    def _failed(self, message: str, count: bool = True) -> None:
        if count:
            self.snapshots_failed += 1
        self._note(message)

    def _note(self, message: str) -> None:
        message = redact(message, self._token)
        try:
            self.store.add_error("snapshot", message)
        except Exception as exc:  # the store failing must not reach the stream either
            log.warning("AIOS: could not record a snapshot problem (%s): %s", type(exc).__name__, message)

    async def close(self) -> None:
        """Stop snapshots and watches, and close the HTTP session (at the end of the I/O loop)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for watch in list(self._watches):
            await watch.aclose()
        rest, self._rest = self._rest, None
        if rest is not None:
            await rest.close()

    # -- calls from the notebook --------------------------------------------------------------------
    def call(self, work: Callable[[RestClient], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``work(rest)`` on the I/O loop (or a loop of its own) and return its result.

        Raises:
            TimeoutError: no result within ``timeout`` seconds (the call is cancelled).
            ConnectionLost: the client stopped while the call was running.
        """
        loop = self._loop()
        if loop is None or not loop.is_running():
            return _in_thread(self._standalone(work))
        if _on_loop(loop):
            raise RuntimeError("a blocking REST call on the client's own I/O thread would deadlock it")

        async def on_loop() -> T:
            if self._token is None:
                self._set_token(await self._token_source())
            return await work(self._client())

        future = asyncio.run_coroutine_threadsafe(on_loop(), loop)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # short waits: a loop that stops under the call would otherwise leave us waiting forever
            wait = 0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic()))
            try:
                return future.result(wait)
            except concurrent.futures.CancelledError:
                raise ConnectionLost("the client stopped while a REST call was running") from None
            except concurrent.futures.TimeoutError:
                if not loop.is_running():
                    future.cancel()
                    raise ConnectionLost("the client stopped while a REST call was running") from None
                if deadline is not None and time.monotonic() >= deadline:
                    future.cancel()
                    raise TimeoutError(f"no answer from {self.base_url} within {timeout:g} s") from None

    async def _standalone(self, work: Callable[[RestClient], Awaitable[T]]) -> T:
        token = self._token or await self._token_source()
        async with RestClient(self.base_url, token, timeout=self.timeout, retries=self.retries) as rest:
            return await work(rest)

    # each call checks its route on the dialect in the caller's thread: UnsupportedRoute comes
    # before any request, and before a client that is not running opens a loop for nothing
    def upload(self, path: Any, kind: str | None = None, **options: Any) -> UploadResult:
        """Check, then stream an upload (see :func:`.uploads.prepare_upload`)."""
        prepared = prepare_upload(path, kind, **options)  # every check before any request
        dialect = self.dialect()
        upload_endpoint(prepared, dialect)
        return self.call(lambda rest: upload(rest, prepared, dialect=dialect))

    def submit_url(self, url: str, **options: Any) -> UploadResult:
        """Check, then submit a URL (see :func:`.uploads.prepare_url`)."""
        prepared = prepare_url(url, **options)
        dialect = self.dialect()
        route(dialect, "submit_url", "submit_url", "POST")
        return self.call(lambda rest: submit_url(rest, prepared, dialect=dialect))

    def search_knowledge(self, q: Any = None, type: Any = None, tags: Any = None, limit: int = 20) -> Any:
        """A knowledge search as a DataFrame (see :func:`.lookups.search_knowledge`)."""
        check_search(q, type, tags, limit)
        dialect = self.dialect()
        route(dialect, "knowledge_search", "search_knowledge")
        return self.call(lambda rest: search_knowledge(rest, q, type, tags, limit, dialect=dialect))

    def get_dag_run(self, run_id: str) -> dict[str, Any]:
        """One DAG run with its steps, as the server answers it."""
        if not isinstance(run_id, str) or not run_id:
            raise ConfigurationError(f"run_id must be a non-empty string, got {run_id!r}")
        dialect = self.dialect()
        route(dialect, "dag_run", "get_dag_run", run_id=run_id)
        return self.call(lambda rest: get_dag_run(rest, run_id, dialect=dialect))

    def refresh(self, timeout: float = 60.0) -> Snapshot:
        """Fetch and merge a snapshot now, whatever the settings; returns it (raises on failure)."""
        dialect = self.dialect()

        async def work(rest: RestClient) -> Snapshot:
            snapshot = await fetch_snapshot(rest, dialect=dialect)
            await asyncio.to_thread(merge_into, self._tables(), snapshot)
            return snapshot

        snapshot = self.call(work, timeout)
        self.last_snapshot = snapshot
        self._note_missing(snapshot)
        return snapshot

    def watch(self, run_id: str, **options: Any) -> RunWatch:
        """Start a :class:`RunWatch` of ``run_id`` on the I/O loop (REST, plus the store's job row)."""
        loop = self._loop()
        if loop is None or not loop.is_running():
            raise ConfigurationError("watch needs a running client: call client.start() first")
        if isinstance(run_id, str) and run_id:  # RunWatch names a bad run_id itself
            route(self.dialect(), "dag_run", "watch", run_id=run_id)

        async def fetch() -> Any:
            if self._token is None:
                self._set_token(await self._token_source())
            dialect = self.dialect()  # the server's, as the current connection's greeting says
            return published_run(await get_dag_run(self._client(), run_id, dialect=dialect), dialect)

        watch = RunWatch(run_id, fetch, local=lambda: self._local_state(run_id), **options)
        self._watches.add(watch)
        watch.add_done_callback(self._watches.discard)
        return watch.start(loop)

    def _tables(self) -> StoreLike:
        """The store as a store of tables (snapshots merge into it, watch reads its jobs)."""
        if not isinstance(self.store, StoreLike):
            raise ConfigurationError("this client feeds a sink without tables: snapshots and refresh need a store")
        return self.store

    def _local_state(self, run_id: str) -> RunState | None:
        """The store's job row of the run (live events), if the store has one."""
        try:
            jobs = self._tables().table("jobs")
            rows = jobs[jobs["run_id"] == run_id]
        except Exception:  # a store without jobs, or mid-change: REST alone will do
            return None
        if rows.empty:
            return None
        row = rows.iloc[-1]
        fields = ("run_id", "job_id", "status", "progress", "current_step", "error", "updated_at")
        cleaned: dict[str, Any] = {k: (None if _missing(row.get(k)) else row.get(k)) for k in fields}
        if cleaned.get("updated_at") is not None:
            cleaned["updated_at"] = cleaned["updated_at"].isoformat()
        return run_state(run_id, cleaned)


def _missing(value: Any) -> bool:
    try:
        return bool(value != value) or value is None  # NaN, NaT, pd.NA compare unequal / raise
    except (TypeError, ValueError):
        return True


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _in_thread(coro: Awaitable[T]) -> T:
    """Run a coroutine to the end on a new loop in a helper thread (the caller's may be running)."""
    result: list[Any] = []

    def main() -> None:
        try:
            result.append((True, asyncio.run(coro)))  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the caller below
            result.append((False, exc))

    thread = threading.Thread(target=main, name="aios-rest-call", daemon=True)
    thread.start()
    thread.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value
