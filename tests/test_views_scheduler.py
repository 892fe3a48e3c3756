"""The redraw scheduler: coalescing, throttling, pausing, periodic redraws, failures, its thread."""

from __future__ import annotations

import threading

import pytest

from aios_notebook.clock import ManualClock
from aios_notebook.exceptions import ConfigurationError
from aios_notebook.views.scheduler import RedrawScheduler


class Counter:
    """A redraw target that counts its redraws (and can be told to fail)."""

    def __init__(self, fail: bool = False) -> None:
        self.count = 0
        self.fail = fail

    def redraw(self) -> None:
        self.count += 1
        if self.fail:
            raise RuntimeError("boom")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def scheduler(clock: ManualClock) -> RedrawScheduler:
    return RedrawScheduler(clock=clock, start=False)


def test_many_changes_make_one_redraw(scheduler: RedrawScheduler) -> None:
    view = Counter()
    scheduler.register(view, max_rate=4, dirty=False)
    for _ in range(1000):
        scheduler.mark_dirty(view)
    assert scheduler.run_due() is None  # nothing waits after the redraw
    assert view.count == 1
    assert scheduler.redraws(view) == 1


def test_rate_is_never_exceeded_and_the_last_change_is_drawn(scheduler: RedrawScheduler, clock: ManualClock) -> None:
    view = Counter()
    scheduler.register(view, max_rate=4, dirty=False)
    scheduler.mark_dirty(view)
    scheduler.run_due()
    assert view.count == 1
    # changes keep coming every 10 ms for 2 s: at most 4 redraws a second, plus the first
    for _ in range(200):
        clock.advance(0.01)
        scheduler.mark_dirty(view)
        scheduler.run_due()
    assert 8 <= view.count <= 9
    # the burst is over: the trailing change is still drawn, once its interval has passed
    count = view.count
    delay = scheduler.run_due()
    assert delay is not None and 0 < delay <= 0.25
    clock.advance(delay)
    assert scheduler.run_due() is None
    assert view.count == count + 1


def test_run_due_says_how_long_until_the_next_redraw(scheduler: RedrawScheduler, clock: ManualClock) -> None:
    view = Counter()
    scheduler.register(view, max_rate=2, dirty=True)
    assert scheduler.run_due() is None
    scheduler.mark_dirty(view)
    clock.advance(0.1)
    assert scheduler.run_due() == pytest.approx(0.4)
    assert view.count == 1


def test_paused_views_keep_their_changes_for_later(scheduler: RedrawScheduler, clock: ManualClock) -> None:
    shown, hidden = Counter(), Counter()
    scheduler.register(shown, dirty=False)
    scheduler.register(hidden, dirty=False)
    scheduler.set_active(hidden, False)
    for view in (shown, hidden):
        scheduler.mark_dirty(view)
    scheduler.run_due()
    assert (shown.count, hidden.count) == (1, 0)
    clock.advance(10)
    scheduler.set_active(hidden, True)
    scheduler.run_due()
    assert hidden.count == 1


def test_periodic_redraws_while_active(scheduler: RedrawScheduler, clock: ManualClock) -> None:
    badge = Counter()
    scheduler.register(badge, every=1.0, dirty=False)
    scheduler.run_due()
    for _ in range(10):
        clock.advance(0.5)
        scheduler.run_due()
    assert badge.count == 6  # at 0, 1, 2, 3, 4, 5 s
    scheduler.set_active(badge, False)
    clock.advance(5)
    assert scheduler.run_due() is None
    assert badge.count == 6


def test_a_failing_view_does_not_stop_the_others(scheduler: RedrawScheduler, caplog: pytest.LogCaptureFixture) -> None:
    broken, fine = Counter(fail=True), Counter()
    scheduler.register(broken)
    scheduler.register(fine)
    scheduler.run_due()
    assert (broken.count, fine.count) == (1, 1)
    assert "redrawing" in caplog.text and "boom" in caplog.text


def test_unregistered_views_are_forgotten(scheduler: RedrawScheduler) -> None:
    view = Counter()
    scheduler.register(view)
    scheduler.unregister(view)
    scheduler.mark_dirty(view)
    assert scheduler.run_due() is None
    assert view.count == 0


class Slow:
    """A redraw target that takes ``cost`` seconds of the manual clock."""

    def __init__(self, clock: ManualClock, cost: float) -> None:
        self.clock, self.cost, self.count = clock, cost, 0

    def redraw(self) -> None:
        self.count += 1
        self.clock.advance(self.cost)


def test_drawing_takes_at_most_its_share_of_the_time() -> None:
    clock = ManualClock(0.0)  # small numbers: exact sums
    scheduler = RedrawScheduler(clock=clock, start=False, max_busy=0.5)
    first, second = Slow(clock, 0.15), Slow(clock, 0.05)
    scheduler.register(first, max_rate=100)
    scheduler.register(second, max_rate=100)
    assert scheduler.run_due() is None  # both drawn: 0.2 s of drawing, so 0.2 s of rest
    for view in (first, second):
        scheduler.mark_dirty(view)
    assert scheduler.run_due() == pytest.approx(0.2)
    clock.advance(0.1)
    assert scheduler.run_due() == pytest.approx(0.1)
    assert (first.count, second.count) == (1, 1)
    clock.advance(0.1)
    scheduler.run_due()
    assert (first.count, second.count) == (2, 2)


@pytest.mark.parametrize("share", [0, 1.5, -0.1, "half"])
def test_bad_busy_share_is_refused(share: object) -> None:
    with pytest.raises(ConfigurationError, match="max_busy"):
        RedrawScheduler(start=False, max_busy=share)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan"), "fast", None])
def test_bad_rates_are_refused(scheduler: RedrawScheduler, rate: object) -> None:
    with pytest.raises(ConfigurationError, match="max_redraws_per_second"):
        scheduler.register(Counter(), max_rate=rate)  # type: ignore[arg-type]


def test_bad_period_is_refused(scheduler: RedrawScheduler) -> None:
    with pytest.raises(ConfigurationError, match="every"):
        scheduler.register(Counter(), every=0)


@pytest.mark.timeout(30)
def test_the_thread_redraws_changes_made_on_other_threads() -> None:
    scheduler = RedrawScheduler()
    drawn = threading.Event()

    class Target:
        def redraw(self) -> None:
            drawn.set()

    target = Target()
    try:
        scheduler.register(target, max_rate=50, dirty=False)
        assert scheduler.running
        marker = threading.Thread(target=scheduler.mark_dirty, args=(target,))
        marker.start()
        marker.join()
        assert drawn.wait(10), "the scheduler thread never redrew"
    finally:
        scheduler.stop()
    assert not scheduler.running
