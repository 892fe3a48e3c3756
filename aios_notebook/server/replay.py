"""The replay server: a recording served over the AIOS v2 protocol, by the reference server itself.

``ReplayServer`` is the reference :class:`~aios_notebook.server.Simulator` with another event
source: instead of the seeded workload, :class:`RecordingSource` hands it the recorded events at
the recorded pace (times ``speed``). Everything else is the reference server's own code: auth,
subscriptions and filters, heartbeat, the global ``seq``, the replay buffer behind ``resync``,
the legacy ``subscribe_dag_run`` and the REST API (answered from the state the replayed events
built). So views and rules are built against yesterday's stream exactly as against a live one.

What is replayed: the events of the shared stream (the subscription types' events and
``processing_error``), in recorded order, each once (a resync overlap in the recording is
dropped), paced by the receive times; the server numbers them with its own ``seq``. Frames of
the recording's own connection (connected, ping, auth replies, resync_complete) are not: every
replay connection gets its own. Frames that were not readable events are counted in ``skipped``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from ..exceptions import RecordingError
from ..protocol.codec import decode, format_timestamp, parse_timestamp
from ..protocol.models import STREAM_EVENTS
from ..recording.reader import OnError, RecordingReader
from .rest import RestError
from .simulator import Simulator

__all__ = ["RecordingSource", "ReplayServer"]

_LOOP_PAUSE_MS = 1000  # between the end of the recording and its next round (--loop)
_KEEP_INSIGHTS = 1000


def _ms(received_at: str) -> int:
    moment = datetime.fromisoformat(received_at.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1000)


class _Entity:
    """The latest recorded state of one run, agent or knowledge item (what the REST API lists)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def update(self, data: dict[str, Any]) -> None:
        self.data.update({k: v for k, v in data.items() if v is not None})

    def __getattr__(self, name: str) -> Any:
        # the REST handlers read a few attributes (type, tags, title, status ...)
        if name.startswith("__"):
            raise AttributeError(name)
        return self.__dict__["data"].get(name, [] if name == "tags" else "")

    def to_rest(self) -> dict[str, Any]:
        rest = dict(self.data)
        if "timestamp" in rest:
            rest["updated_at"] = rest.pop("timestamp")
        return rest


class _Run(_Entity):
    """A DAG run: its dag_run_status, dag_run_progress, steps and its job's status."""

    def __init__(self) -> None:
        super().__init__()
        self.progress: dict[str, Any] = {}
        self.steps: dict[str, dict[str, Any]] = {}

    @property
    def dag_status(self) -> str:
        return str(self.data.get("status") or "")

    def dag_status_event(self, stamp: str) -> dict[str, Any]:
        return {**self.data, "timestamp": stamp}

    def dag_progress_event(self, stamp: str) -> dict[str, Any]:
        if self.progress:
            return {**self.progress, "timestamp": stamp}
        states = [step.get("status") for step in self.steps.values()]
        done = sum(s in ("success", "skipped") for s in states)
        return {
            "dag_id": self.data.get("dag_id"), "run_id": self.data.get("run_id"),
            "total_steps": len(states), "completed_steps": done,
            "running_steps": sum(s == "running" for s in states),
            "failed_steps": sum(s in ("failed", "upstream_failed") for s in states),
            "pending_steps": sum(s in (None, "pending", "queued", "up_for_retry") for s in states),
            "completion_percentage": round(100.0 * done / len(states), 1) if states else 0.0,
            "timestamp": stamp,
        }

    def to_rest(self, with_steps: bool = False) -> dict[str, Any]:
        rest = {**self.progress, **super().to_rest()}
        if with_steps:
            rest["steps"] = [dict(step) for step in self.steps.values()]
        return rest


class _Analytics:
    """The dashboard before any metrics event was replayed: zeros."""

    @staticmethod
    def metrics(now_ms: int, window: int) -> dict[str, Any]:
        return {"total_processed": 0, "processing_time": 0.0, "success_rate": 0.0,
                "active_agents": 0, "knowledge_items": 0}


class RecordingSource:
    """A recording as the reference server's event source (its ``workload``).

    The server's clock runs on the recording's receive times (``now_ms``); ``now`` and
    ``stamp()``, which date connection-scoped messages and REST answers, follow the event time of
    the last replayed event, as the simulator's do.

    Args:
        recording: a file, glob or list of files.
        loop: start again from the beginning after the end (after a one-second pause).
        on_error: a damaged recording: ``"raise"`` refuses it (checked before serving),
            ``"skip"`` serves what is readable.
        hold: while it returns True the recording's clock stands still (the replay server
            holds it until a client has subscribed, so nobody misses the beginning).
    """

    def __init__(self, recording: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                 *, loop: bool = False, on_error: OnError = "raise",
                 hold: Callable[[], bool] | None = None) -> None:
        self.recording = recording
        self.loop = loop
        self.on_error = on_error
        self.hold = hold
        first = last = None
        frames = 0
        for batch in RecordingReader(recording, on_error).batches():  # check it all before serving
            if first is None:
                first = batch.received_at[0]
            last = batch.received_at[-1]
            frames += len(batch)
        if first is None or last is None:
            raise RecordingError(f"{recording}: the recording holds no frame to replay")
        self.frames = frames
        self.origin_ms = _ms(first)
        self.duration_ms = max(0, _ms(last) - self.origin_ms)
        self.now_ms = self.origin_ms
        self.published = 0  # events handed to the server
        self.skipped = 0  # frames that were not events of the shared stream
        self.rounds = 0  # completed passes through the recording
        self.finished = False  # the end was reached (and loop is off)
        self._event_ms: int | None = None
        self._offset_ms = 0
        self._frames = self._read()
        self._pending: tuple[int, str | bytes, bool] | None = None
        self._seen: set[int] = set()
        self.runs: dict[str, _Run] = {}
        self.agents: dict[str, _Entity] = {}
        self.knowledge: dict[str, _Entity] = {}
        self.insights: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] = {}
        self.recent_activity: deque[dict[str, Any]] = deque(maxlen=20)
        self.analytics = _Analytics()

    # -- what the server reads ------------------------------------------------------------------
    @property
    def now(self) -> float:
        """Event time of the stream (epoch seconds): the last replayed event's timestamp."""
        return (self._event_ms if self._event_ms is not None else self.now_ms) / 1000

    def stamp(self) -> str:
        return format_timestamp(self.now)

    def run(self, run_id: str) -> _Run | None:
        return self.runs.get(run_id)

    def flush(self) -> list[tuple[float, str, dict[str, Any]]]:
        return []  # nothing happens between steps: no uploads on a replay

    def advance(self, until: float) -> list[tuple[float, str, dict[str, Any]]]:
        return self.advance_ms(int(until * 1000))

    def advance_ms(self, until_ms: int) -> list[tuple[float, str, dict[str, Any]]]:
        """The recorded events received up to ``until_ms`` (on the recording's clock), in order."""
        if self.hold is not None and self.hold():
            self._offset_ms += max(0, until_ms - self.now_ms)  # the recording waits
            self.now_ms = max(self.now_ms, until_ms)
            return []
        out: list[tuple[float, str, dict[str, Any]]] = []
        while True:
            if self._pending is None:
                self._pending = next(self._frames, None)
                if self._pending is None:
                    if not self.loop:
                        self.finished = True
                        break
                    self.rounds += 1
                    self._offset_ms += self.duration_ms + _LOOP_PAUSE_MS
                    self._frames = self._read()
                    continue
            at_ms, frame, fresh = self._pending
            at_ms += self._offset_ms
            if at_ms > until_ms:
                break
            self._pending = None
            if fresh:
                self._seen.clear()  # a new recording numbers its events afresh
            event = self._event(frame)
            if event is not None:
                out.append((at_ms / 1000, *event))
        self.now_ms = max(self.now_ms, until_ms)
        self.published += len(out)
        return out

    # -- internals --------------------------------------------------------------------------------
    def _read(self) -> Iterator[tuple[int, str | bytes, bool]]:
        last = self.origin_ms
        # checked when the source was made: what is left to skip was reported then
        reader = RecordingReader(self.recording, "skip", quiet=True)
        for batch in reader.batches():
            fresh = batch.starts_recording
            for received_at, frame in zip(batch.received_at, batch.frames, strict=True):
                last = max(last, _ms(received_at))  # a clock stepping back does not rewind the replay
                yield last, frame, fresh
                fresh = False

    def _event(self, frame: str | bytes) -> tuple[str, dict[str, Any]] | None:
        message = decode(frame, check=False).message
        if message is None or message.event not in STREAM_EVENTS:
            self.skipped += 1
            return None
        data = message.data
        if message.event == "error" and message.seq is None and data.get("code") != "processing_error":
            self.skipped += 1  # an error reply to the recording client, not part of the stream
            return None
        if message.seq is not None:
            if message.seq in self._seen:
                return None  # a resync replay overlapping what was already received
            self._seen.add(message.seq)
        self._track(message.event, data)
        return message.event, data

    def _track(self, event: str, data: dict[str, Any]) -> None:
        moment = parse_timestamp(data.get("timestamp"))
        if moment is not None:
            event_ms = int(moment.timestamp() * 1000)
            if self._event_ms is None or event_ms > self._event_ms:
                self._event_ms = event_ms
        run_id = data.get("run_id")
        if event in ("dag_run_status", "dag_run_progress", "step_status") or (
            event.startswith("processing_job_") and isinstance(run_id, str)
        ):
            if not isinstance(run_id, str):
                return
            run = self.runs.setdefault(run_id, _Run())
            if event == "dag_run_status":
                run.update(data)
            elif event == "dag_run_progress":
                run.progress.update(data)
            elif event == "step_status":
                step_id = data.get("step_id")
                if isinstance(step_id, str):
                    run.steps[step_id] = {**run.steps.get(step_id, {}), **data}
                run.data.setdefault("dag_id", data.get("dag_id"))
                run.data.setdefault("run_id", run_id)
            else:
                run.data.setdefault("run_id", run_id)
                for key in ("job_id", "type", "filename"):
                    if data.get(key) is not None:
                        run.data[key] = data[key]
                run.data["job_status"] = data.get("status")
                if event in ("processing_job_completed", "processing_job_failed"):
                    self.recent_activity.append({"timestamp": data.get("timestamp"), "event": event,
                                                 "job_id": data.get("job_id"), "type": data.get("type")})
        elif event == "agent_status_update" and isinstance(data.get("agent_id"), str):
            self.agents.setdefault(data["agent_id"], _Entity()).update(data)
        elif event.startswith("knowledge_item_") and isinstance(data.get("item_id"), str):
            self.knowledge.setdefault(data["item_id"], _Entity()).update(data)
        elif event == "insight_generated":
            self.insights.append(dict(data))
            del self.insights[:-_KEEP_INSIGHTS]
        elif event == "dashboard_metrics_update":
            self.metrics = {k: v for k, v in data.items() if k != "timestamp"}


class ReplayServer(Simulator):
    """The reference server serving a recording (see the module docstring).

    Args:
        recording: a file, glob or list of files.
        speed: recorded seconds per wall second.
        loop: start again when the recording ends.
        on_error: ``"raise"``: a damaged recording is refused before serving; ``"skip"``: served
            around the damage.
        wait_for_client: hold the recording until a client has subscribed (so the first client
            sees it from its beginning); False starts it with the server.
        token, host, port, heartbeat, replay_buffer, and keyword options: as for ``Simulator``.
    """

    def __init__(self, recording: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                 speed: float = 1.0, loop: bool = False, on_error: OnError = "raise",
                 wait_for_client: bool = True, token: str | None = None, host: str = "127.0.0.1",
                 port: int = 0, heartbeat: float = 30.0, replay_buffer: int = 100_000,
                 **options: Any) -> None:
        source = RecordingSource(recording, loop=loop, on_error=on_error,
                                 hold=self._nobody_listens if wait_for_client else None)
        self._started = False
        super().__init__(speed=speed, token=token, host=host, port=port, heartbeat=heartbeat,
                         start=source.origin_ms / 1000, replay_buffer=replay_buffer, **options)
        self.source = source
        self.scenario = "replay"  # what GET / says this server is

    def _make_workload(self, origin: float) -> Any:
        return self.source

    def _nobody_listens(self) -> bool:
        # once started, the replay runs on whoever comes and goes
        if not self._started:
            self._started = any(member.subscriptions.types or member.subscriptions.dag_runs
                                for member in self.hub.members)
        return not self._started

    def start_job(self, kind: str, filename: str) -> Any:
        raise RestError(501, "not_implemented", "this server replays a recording: it cannot start jobs")

    @property
    def labels(self) -> list[dict[str, Any]]:
        return []  # a recording has no ground truth

    @property
    def finished(self) -> bool:
        """Every recorded event has been sent (never true with ``loop``)."""
        return self.source.finished

    @property
    def sent(self) -> int:
        """Events handed to the stream so far."""
        return self.source.published

    def __repr__(self) -> str:
        where = self.url if self._runner is not None else "not started"
        return f"ReplayServer({self.source.recording!r}, speed={self.speed:g}, {where})"
