"""Simulated time as integer milliseconds, and fast formatting of it.

The workload keeps time in integer epoch milliseconds: heap keys compare exactly, and every
timestamp it formats is the same string ``protocol.codec.format_timestamp`` gives for that instant
(``YYYY-MM-DDTHH:MM:SS.mmmZ``), only several times faster, which matters at a million events.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

__all__ = ["DAY_MS", "HOUR_MS", "MINUTE_MS", "epoch_of", "iso_ms", "ms_from_epoch", "run_id_ms"]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

_day_prefix: dict[int, str] = {}


def _prefix(day: int) -> str:
    prefix = _day_prefix.get(day)
    if prefix is None:
        prefix = datetime.fromtimestamp(day * 86_400, tz=timezone.utc).strftime("%Y-%m-%dT")
        if len(_day_prefix) > 4096:  # a long run crosses many days: keep the cache small
            _day_prefix.clear()
        _day_prefix[day] = prefix
    return prefix


_second_text: dict[int, str] = {}


def iso_ms(ms: int) -> str:
    """Epoch milliseconds -> ``2026-01-05T14:03:07.250Z``."""
    second, milli = divmod(ms, 1000)
    text = _second_text.get(second)
    if text is None:
        # events cluster in time, so most seconds are formatted many times: remember recent ones
        day, rest = divmod(second, 86_400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        text = f"{_prefix(day)}{hours:02d}:{minutes:02d}:{seconds:02d}"
        if len(_second_text) > 8192:
            _second_text.clear()
        _second_text[second] = text
    return f"{text}.{milli:03d}Z"


def run_id_ms(us: int) -> str:
    """An Airflow manual run id for epoch microseconds: ``manual__2026-01-05T14:03:07.250001+00:00``."""
    ms, micro = divmod(us, 1000)
    text = iso_ms(ms)
    return f"manual__{text[:-1]}{micro:03d}+00:00"


def ms_from_epoch(seconds: float) -> int:
    """Epoch seconds (float) -> integer milliseconds, rounded to the nearest."""
    return round(seconds * 1000)


def epoch_of(moment: Any) -> float | None:
    """A start given as epoch seconds, a datetime (naive = UTC) or an ISO string -> epoch seconds.

    Raises:
        ConfigurationError: the value is none of those.
    """
    from ..exceptions import ConfigurationError
    from ..protocol.codec import parse_timestamp

    if moment is None:
        return None
    if isinstance(moment, datetime):
        parsed: datetime | None = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    else:
        parsed = parse_timestamp(moment)
    if parsed is None:
        raise ConfigurationError(f"start must be epoch seconds, a datetime or an ISO 8601 time, got {moment!r}")
    return parsed.timestamp()
