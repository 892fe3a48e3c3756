"""Follow one DAG run to its end: a progress bar in a notebook, a text progress line in a script.

``client.watch(run_id)`` returns a :class:`RunWatch` at once; the watching itself runs on the
client's I/O loop, so the notebook stays free. The watch reads the run over REST (the dialect's run
route: ``GET /api/workflows/dag-runs/{run_id}``, ``GET /api/dag-runs/{run_id}`` on autopilot) every
``interval`` seconds, and the client's store when it has newer news of the run's job (live
``processing_job_*`` events). It ends on completed or failed (with the error; cancelled and
autopilot's ``partial_success`` are failed), and never raises for the run's own failure: the final
:class:`RunState` says so.

::

    watch = client.watch(run_id)     # notebook: the bar shows and updates by itself
    state = watch.wait()             # script: block (the text line is printed meanwhile)
    state = await client.watch(run_id)   # async code, or a notebook cell
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from ..exceptions import APIError, AuthError, ConfigurationError
from ..protocol.codec import parse_timestamp

__all__ = ["DISPLAY_MODES", "RunState", "RunWatch", "in_notebook", "run_state"]

#: how a watch shows itself: "auto" (widget in a kernel, else text), "widget", "text", "none"
DISPLAY_MODES = ("auto", "widget", "text", "none")

_COMPLETED = frozenset({"completed", "success", "succeeded", "done"})
_FAILED = frozenset({"failed", "error", "upstream_failed", "cancelled", "partial_success"})
# consecutive REST failures (other than auth) a watch rides out before it gives up
_MAX_MISSES = 20


@dataclass(frozen=True, slots=True)
class RunState:
    """What is known of a run at one moment.

    Attributes:
        run_id: the run.
        status: ``queued``, ``running``, ``completed``, ``failed`` or ``unknown``.
        progress: 0-100 (the job's progress, else the share of completed steps), or None.
        current_step: the step running now (the failing one once failed).
        error: why it failed (or why the watch could not follow it).
        job_id: the job the run processes, when known.
        dag_id: the DAG.
        updated_at: the time of this news (server time).
    """

    run_id: str
    status: str = "unknown"
    progress: float | None = None
    current_step: str | None = None
    error: str | None = None
    job_id: str | None = None
    dag_id: str | None = None
    updated_at: datetime | None = None

    @property
    def done(self) -> bool:
        """True once the run completed or failed."""
        return self.status in ("completed", "failed")

    @property
    def ok(self) -> bool:
        """True when the run completed."""
        return self.status == "completed"

    def line(self) -> str:
        """One line for a log or a label: ``run-1  62%  summarization`` / ``failed at analysis: ...``."""
        percent = f"{self.progress:3.0f}%" if self.progress is not None else "  ?%"
        if self.status == "failed":
            where = f" at {self.current_step}" if self.current_step else ""
            return f"{self.run_id}  failed{where}: {self.error or 'no reason given'}"
        if self.status == "completed":
            return f"{self.run_id}  completed  100%"
        step = f"  {self.current_step}" if self.current_step else ""
        return f"{self.run_id}  {self.status}  {percent}{step}"


def _status(value: Any) -> str:
    text = str(value or "").lower()
    if text in _COMPLETED:
        return "completed"
    if text in _FAILED:
        return "failed"
    if text in ("queued", "scheduled", "pending", "none", ""):
        return "queued" if text else "unknown"
    return "running"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is no number


def run_state(run_id: str, run: Mapping[str, Any]) -> RunState:
    """A :class:`RunState` from a REST run (``GET /api/workflows/dag-runs/{run_id}``) or a job row.

    The job's own status and progress win over the DAG's when both are given (they are finer).
    """
    status = _status(run.get("job_status") or run.get("status") or run.get("state"))
    steps = [step for step in run.get("steps") or () if isinstance(step, Mapping)]
    progress = _number(run.get("progress"))
    if progress is None:
        progress = _number(run.get("completion_percentage"))
    current = run.get("current_step")
    error = run.get("error")
    errors = run.get("errors")  # autopilot's runs: a list, [the run's error] or []
    if not error and isinstance(errors, list) and errors:
        error = errors[0]
    if steps:
        failed = next((s for s in steps if _status(s.get("status")) == "failed"), None)
        running = next((s for s in steps if str(s.get("status")) in ("running", "up_for_retry")), None)
        pick = failed if status == "failed" and failed is not None else running
        if pick is not None:
            current = pick.get("step_id") or current
        if status == "failed" and not error and failed is not None:
            error = failed.get("error")
        if progress is None:
            done = sum(_status(s.get("status")) == "completed" for s in steps)
            progress = 100.0 * done / len(steps)
    if status == "failed" and not error and str(run.get("status")).lower() == "partial_success":
        error = "partial_success: the run ended with some steps failed"
    if status == "completed":
        progress = 100.0
    return RunState(
        run_id=str(run.get("run_id") or run_id),
        status=status,
        progress=progress,
        current_step=str(current) if current else None,
        error=str(error) if error and status == "failed" else None,
        job_id=str(run["job_id"]) if run.get("job_id") else None,
        dag_id=str(run["dag_id"]) if run.get("dag_id") else None,
        updated_at=parse_timestamp(run.get("updated_at") or run.get("timestamp")),
    )


def _newer(first: RunState | None, second: RunState | None) -> RunState | None:
    """The fresher of two states; a finished one wins over an unfinished one."""
    if first is None or second is None:
        return first or second
    if first.done != second.done:
        return first if first.done else second
    if first.updated_at and second.updated_at and second.updated_at > first.updated_at:
        return second
    return first


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where widgets can show)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ipython = shell.get_ipython()
    except Exception:  # an IPython that is half imported or shutting down
        return False
    return ipython is not None and getattr(ipython, "kernel", None) is not None


class _TextView:
    """A progress line on a stream: rewritten in place on a terminal, one line per change elsewhere."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = ""

    def show(self, state: RunState) -> None:
        text = state.line()
        if text == self._last:
            return
        if self.tty:
            pad = " " * max(0, len(self._last) - len(text))
            self.stream.write("\r" + text + pad + ("\n" if state.done else ""))
        else:
            self.stream.write(text + "\n")
        self._last = text
        self.stream.flush()


class _WidgetView:
    """An ipywidgets progress bar with a label: the current step, then completed or the error."""

    def __init__(self, run_id: str) -> None:
        import ipywidgets  # only here: scripts and the protocol layer never need it

        self.bar = ipywidgets.FloatProgress(value=0.0, min=0.0, max=100.0, bar_style="info",
                                            description=run_id[-24:], layout={"width": "50%"})
        self.label = ipywidgets.HTML(value="waiting for the run…")
        self.widget = ipywidgets.HBox([self.bar, self.label])

    def show(self, state: RunState) -> None:
        import html

        if state.progress is not None:
            self.bar.value = max(0.0, min(100.0, state.progress))
        if state.status == "completed":
            self.bar.bar_style = "success"
            self.label.value = "completed"
        elif state.status == "failed":
            self.bar.bar_style = "danger"
            where = f" at <b>{html.escape(state.current_step)}</b>" if state.current_step else ""
            self.label.value = f"failed{where}: {html.escape(state.error or 'no reason given')}"
        else:
            step = f" · <b>{html.escape(state.current_step)}</b>" if state.current_step else ""
            percent = f"{state.progress:.0f}%" if state.progress is not None else ""
            self.label.value = f"{html.escape(state.status)}{step} {percent}".strip()


class RunWatch:
    """A running watch of one run; await it, or ``wait()``, for the final :class:`RunState`.

    Args:
        run_id: the run to follow.
        fetch: returns the run as REST gives it (``GET /api/workflows/dag-runs/{run_id}``).
        local: returns the freshest local news of the run (the store's job row), or None.
        display: one of :data:`DISPLAY_MODES`.
        interval: seconds between two looks at the run.
        timeout: give up after this many seconds (the final state is ``unknown`` with a reason).
        stream: where the text line goes (stderr by default).
    """

    def __init__(
        self,
        run_id: str,
        fetch: Callable[[], Awaitable[Any]],
        *,
        local: Callable[[], RunState | None] | None = None,
        display: str = "auto",
        interval: float = 0.5,
        timeout: float | None = None,
        stream: TextIO | None = None,
    ) -> None:
        if not isinstance(run_id, str) or not run_id:
            raise ConfigurationError(f"watch needs a run_id string, got {run_id!r}")
        if display not in DISPLAY_MODES:
            raise ConfigurationError(f"display must be one of {', '.join(DISPLAY_MODES)}, got {display!r}")
        if not interval > 0:
            raise ConfigurationError(f"interval must be > 0 s, got {interval!r}")
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"timeout must be > 0 s or None (no limit), got {timeout!r}")
        self.run_id = run_id
        self.interval = float(interval)
        self.timeout = timeout
        self._fetch = fetch
        self._local = local
        self.state = RunState(run_id)
        self._future: concurrent.futures.Future[RunState] = concurrent.futures.Future()
        self._task: asyncio.Task[RunState] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None  # the thread of the loop that runs the watch
        self._stopped = False
        if display == "auto":
            display = "widget" if in_notebook() else "text"
        self._view: _WidgetView | _TextView | None = None
        self._shown = False
        if display == "widget":
            self._view = _WidgetView(run_id)
            if in_notebook():  # show it now, from the cell's thread, so it lands in that cell
                from IPython.display import display as show

                show(self._view.widget)
                self._shown = True
        elif display == "text":
            self._view = _TextView(stream)

    # -- running --------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> RunWatch:
        """Start following on ``loop`` (another thread's loop, or the running one when None)."""
        if self._loop is not None:
            return self
        if loop is None:
            loop = asyncio.get_running_loop()
        self._loop = loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._task = loop.create_task(self._run())
        else:
            asyncio.run_coroutine_threadsafe(self._begin(), loop)
        return self

    async def _begin(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> RunState:
        self._thread = threading.get_ident()
        try:
            state = await asyncio.wait_for(self._follow(), self.timeout) if self.timeout else await self._follow()
        except asyncio.TimeoutError:
            state = RunState(self.run_id, "unknown", self.state.progress, self.state.current_step,
                             f"still {self.state.status} after {self.timeout:g} s; stopped watching",
                             self.state.job_id, self.state.dag_id, self.state.updated_at)
        except asyncio.CancelledError:
            # the client stopped (or cancel()): waiters get a final state, not an exception
            self._finish(self._stopped_state())
            raise
        except Exception as exc:  # a bug must not leave a waiter hanging forever
            state = RunState(self.run_id, "unknown", error=f"watch failed: {exc}")
        self._publish(state)
        self._finish(state)
        return state

    async def _follow(self) -> RunState:
        misses = 0
        while not self._stopped:
            remote: RunState | None = None
            try:
                answer = await self._fetch()
                if isinstance(answer, Mapping):
                    remote = run_state(self.run_id, answer)
                misses = 0
            except AuthError as exc:
                return RunState(self.run_id, "unknown", error=str(exc))
            except APIError as exc:
                misses += 1
                if misses >= _MAX_MISSES:
                    return RunState(self.run_id, "unknown", self.state.progress, self.state.current_step,
                                    f"cannot follow the run: {exc}")
            # the store's frame may take a moment to build: off the loop, which carries the stream
            local = await asyncio.to_thread(self._local) if self._local else None
            state = _newer(remote, local)
            if state is not None:
                self._publish(state)
                if state.done:
                    return state
            await asyncio.sleep(self.interval)
        return self._stopped_state()

    def _publish(self, state: RunState) -> None:
        self.state = state
        if self._view is not None:
            try:
                self._view.show(state)
            except Exception:  # a closed stream or a dead comm must not stop the watch
                self._view = None

    # -- waiting --------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once the run completed or failed (or the watch gave up)."""
        return self._future.done()

    def wait(self, timeout: float | None = None) -> RunState:
        """Block until the run ends; returns the final state.

        Raises:
            TimeoutError: ``timeout`` seconds passed first (the watch goes on).
            RuntimeError: called on the loop that runs the watch (it would wait for itself).
        """
        if not self._future.done() and self._thread == threading.get_ident():
            raise RuntimeError("wait() on the watch's own event loop would block it: use `await watch`")
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"run {self.run_id} still {self.state.status} after {timeout:g} s") from None

    def __await__(self) -> Generator[Any, None, RunState]:
        return asyncio.wrap_future(self._future).__await__()

    def add_done_callback(self, callback: Callable[[RunWatch], Any]) -> None:
        """Call ``callback(watch)`` once the watch has ended (on the thread that ends it)."""
        self._future.add_done_callback(lambda _: callback(self))

    def cancel(self) -> None:
        """Stop watching (the run itself goes on): waiters get a final state ``unknown``."""
        self._stopped = True
        task, loop = self._task, self._loop
        if task is not None and loop is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # the loop is gone: the task went with it
                loop.call_soon_threadsafe(task.cancel)
        if task is None or loop is None or loop.is_closed():
            self._finish(self._stopped_state())

    async def aclose(self) -> None:
        """Stop watching from the watch's own loop, and wait until it has stopped."""
        self._stopped = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._finish(self._stopped_state())

    def _stopped_state(self) -> RunState:
        state = self.state
        return RunState(self.run_id, "unknown", state.progress, state.current_step, "stopped watching",
                        state.job_id, state.dag_id, state.updated_at)

    def _finish(self, state: RunState) -> None:
        if not self._future.done():
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # a race with the loop
                self._future.set_result(state)

    @property
    def widget(self) -> Any:
        """The ipywidgets box (None unless the display is a widget)."""
        return self._view.widget if isinstance(self._view, _WidgetView) else None

    def _ipython_display_(self) -> None:
        # shown already when created in a cell; showing it a second time would draw a twin bar
        if isinstance(self._view, _WidgetView) and not self._shown:
            from IPython.display import display as show

            show(self._view.widget)
            self._shown = True
        elif not isinstance(self._view, _WidgetView):
            print(repr(self))

    def __repr__(self) -> str:
        return f"<RunWatch {self.state.line()}>"
