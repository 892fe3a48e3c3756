"""Running aggregates for incremental rules, and the small tail tests the built-ins use.

Each aggregate takes the rows entering a rule's window (``add``) and the rows leaving it
(``remove``), as numpy arrays of times (int ns) and keys, so an evaluation costs the size of the
change, not of the window. Time bins are half-open on the left like windows: bin ``k`` of width
``B`` holds the times in ``(k*B, (k+1)*B]``, so a window ``(t - w, t]`` with ``t`` and ``w``
multiples of ``B`` is a whole number of bins.

The built-ins also draw the series they judged from the same aggregates (``span_totals``,
``span_ends``) and find the edge their tests fire at (``edge``), for an insight's evidence figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import numpy as np

__all__ = [
    "BinnedCounts",
    "BinnedValues",
    "LatestByKey",
    "binomial_sf",
    "confidence",
    "edge",
    "median",
    "poisson_cdf",
    "poisson_sf",
    "span_ends",
]


def _bins(times: np.ndarray, width: int) -> np.ndarray:
    return (np.asarray(times, dtype=np.int64) - 1) // width


class BinnedCounts:
    """Event counts per key in time bins of ``width`` nanoseconds."""

    def __init__(self, width: int) -> None:
        if width <= 0:
            raise ValueError("bin width must be positive")
        self.width = width
        self.bins: dict[int, dict[Hashable, int]] = {}

    def clear(self) -> None:
        self.bins.clear()

    def add(self, times: np.ndarray, keys: Iterable[Hashable], sign: int = 1) -> None:
        """Count one event per (time, key); ``sign=-1`` takes them away again."""
        bins = self.bins
        for b, key in zip(_bins(times, self.width).tolist(), keys, strict=True):
            counts = bins.get(b)
            if counts is None:
                counts = bins[b] = {}
            value = counts.get(key, 0) + sign
            if value:
                counts[key] = value
            else:
                del counts[key]
                if not counts:
                    del bins[b]

    def remove(self, times: np.ndarray, keys: Iterable[Hashable]) -> None:
        self.add(times, keys, -1)

    def totals(self, start: int, end: int) -> dict[Hashable, int]:
        """Counts per key of the bins inside ``(start, end]`` (both multiples of the width)."""
        first, stop = start // self.width, end // self.width
        out: dict[Hashable, int] = {}
        for b, counts in self.bins.items():
            if first <= b < stop:
                for key, value in counts.items():
                    out[key] = out.get(key, 0) + value
        return out

    def keys(self) -> set[Hashable]:
        return {key for counts in self.bins.values() for key in counts}

    def span_totals(self, ends: np.ndarray, span: int, keys: Iterable[Hashable]) -> np.ndarray:
        """For each ``e`` of ``ends`` (ascending), the counts of ``keys`` in ``(e - span, e]``, as
        :meth:`totals` counts them (the same bins), from one pass over the bins."""
        if not len(ends):
            return np.zeros(0, dtype=np.int64)
        wanted = tuple(keys)
        first = (int(ends[0]) - span) // self.width
        per_bin = np.zeros(int(ends[-1]) // self.width - first, dtype=np.int64)
        for b, counts in self.bins.items():
            if 0 <= b - first < len(per_bin):
                per_bin[b - first] = sum(counts.get(key, 0) for key in wanted)
        running = np.concatenate(([0], np.cumsum(per_bin)))
        ends = np.asarray(ends, dtype=np.int64)
        return running[ends // self.width - first] - running[(ends - span) // self.width - first]


class BinnedValues:
    """Values (durations, sizes) per key in time bins, for quantiles over any span of bins."""

    def __init__(self, width: int) -> None:
        if width <= 0:
            raise ValueError("bin width must be positive")
        self.width = width
        self.bins: dict[int, dict[Hashable, list[float]]] = {}

    def clear(self) -> None:
        self.bins.clear()

    def add(self, times: np.ndarray, keys: Iterable[Hashable], values: Iterable[float]) -> None:
        bins = self.bins
        for b, key, value in zip(_bins(times, self.width).tolist(), keys, values, strict=True):
            bins.setdefault(b, {}).setdefault(key, []).append(value)

    def remove(self, times: np.ndarray, keys: Iterable[Hashable], values: Iterable[float]) -> None:
        """Take values away again (rows leave in the order they came, so from the front)."""
        bins = self.bins
        for b, key, value in zip(_bins(times, self.width).tolist(), keys, values, strict=True):
            per_key = bins.get(b)
            if per_key is None or key not in per_key:
                continue
            values_of = per_key[key]
            try:
                values_of.remove(value)
            except ValueError:
                continue
            if not values_of:
                del per_key[key]
                if not per_key:
                    del bins[b]

    def values(self, start: int, end: int) -> dict[Hashable, np.ndarray]:
        """The values per key of the bins inside ``(start, end]``."""
        first, stop = start // self.width, end // self.width
        gathered: dict[Hashable, list[float]] = {}
        for b, per_key in self.bins.items():
            if first <= b < stop:
                for key, values in per_key.items():
                    gathered.setdefault(key, []).extend(values)
        return {key: np.asarray(values, dtype=float) for key, values in gathered.items()}


class LatestByKey:
    """The latest (time, value) of each key among the rows in the window."""

    def __init__(self) -> None:
        self.latest: dict[Hashable, tuple[int, Any]] = {}

    def clear(self) -> None:
        self.latest.clear()

    def add(self, times: np.ndarray, keys: Iterable[Hashable], values: Iterable[Any]) -> None:
        latest = self.latest
        for t, key, value in zip(np.asarray(times).tolist(), keys, values, strict=True):
            current = latest.get(key)
            if current is None or t >= current[0]:
                latest[key] = (t, value)

    def remove(self, times: np.ndarray, keys: Iterable[Hashable]) -> None:
        """Forget keys whose latest row is among the rows leaving the window."""
        latest = self.latest
        for t, key in zip(np.asarray(times).tolist(), keys, strict=True):
            current = latest.get(key)
            if current is not None and current[0] <= t:
                del latest[key]


def span_ends(start: int, end: int, span: int, step: int, points: int = 48) -> np.ndarray:
    """Ends of the spans of length ``span`` inside ``(start, end]``, ``step`` apart and the last at
    ``end`` (every few steps when there would be more than ``points``): where an evidence series
    is sampled."""
    if step <= 0 or end - span < start:
        return np.array([end], dtype=np.int64)
    n = (end - span - start) // step + 1
    stride = -(-n // max(1, points))
    return end - step * stride * np.arange((n - 1) // stride, -1, -1, dtype=np.int64)


def edge(passes: Callable[[int], bool], known: int, toward: int) -> int:
    """The whole number farthest from ``known`` toward ``toward`` at which a test still ``passes``
    (it passes at ``known`` and, the test being monotone, at every number between the two): the
    smallest count a rule fires at, or the largest, shown as the threshold of its evidence."""
    if passes(toward):
        return toward
    good, bad = known, toward
    while abs(bad - good) > 1:
        middle = (good + bad) // 2
        if passes(middle):
            good = middle
        else:
            bad = middle
    return good


def median(values: Iterable[float] | np.ndarray) -> float:
    """``float(np.median(values))``, NaN when empty: the same value, 6 times faster on the few
    dozen values a rule's evaluation takes the median of (np.median's generality costs 17 us a
    call there, and a backtest makes tens of thousands of calls)."""
    ordered = np.sort(np.asarray(values, dtype=float))
    n = len(ordered)
    if not n or ordered[-1] != ordered[-1]:  # empty, or a NaN (sorted last): NaN, as np.median
        return math.nan
    half = n // 2
    return float(ordered[half]) if n % 2 else float((ordered[half - 1] + ordered[half]) / 2)


def confidence(p_value: float) -> float:
    """An insight's confidence from the p-value of its test: 1 - p, kept within 0.5..0.99."""
    return round(min(0.99, max(0.5, 1.0 - p_value)), 2)


def _log_poisson(i: int, mean: float) -> float:
    return -mean + i * math.log(mean) - math.lgamma(i + 1)


def poisson_sf(k: int, mean: float) -> float:
    """P(X >= k) for X ~ Poisson(mean)."""
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    if k <= mean:
        return max(0.0, 1.0 - poisson_cdf(k - 1, mean))
    # the tail above the mode: terms shrink as i grows, so start at the largest
    total, term, i = 0.0, math.exp(_log_poisson(k, mean)), k
    while term > total * 1e-17 and term > 0:
        total += term
        i += 1
        term *= mean / i
    return min(1.0, total)


def poisson_cdf(k: int, mean: float) -> float:
    """P(X <= k) for X ~ Poisson(mean)."""
    if k < 0:
        return 0.0
    if mean <= 0:
        return 1.0
    if k >= mean:
        return max(0.0, 1.0 - poisson_sf(k + 1, mean))
    # the tail below the mode: terms shrink as i falls, so start at the largest
    total, term = 0.0, math.exp(_log_poisson(k, mean))
    for i in range(k, -1, -1):
        total += term
        if term <= total * 1e-17:
            break
        term *= i / mean
    return min(1.0, total)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k, n + 1):
        total += math.exp(
            math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        )
    return min(1.0, total)
