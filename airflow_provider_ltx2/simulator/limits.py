"""The gateway's per-key limits, as Lightricks' LTX API enforces them, and how busy its slots were.

Two limits, each off unless configured (``max_concurrent_jobs``, ``rate_limit_per_minute``):

- concurrency: a submit while ``max_concurrent_jobs`` jobs are queued or processing is refused (429,
  ``concurrency_limit_error``) and creates no job; ``Retry-After`` is the time until enough of them end.
- rate: every call that carries the key (submits and polls, not video downloads) counts in a sliding
  window of :data:`WINDOW_SECONDS`; a call beyond ``rate_limit_per_minute`` is refused (429,
  ``rate_limit_error``) with ``Retry-After`` = the time until the window frees a place. A refused call
  does not count in the window, so a client that waits as told always gets in.

Everything here is pure (times are passed in), so the HTTP side only decides what a call is.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

WINDOW_SECONDS = 60.0
# Retry-After when every job holding a slot never ends (outcome never_finish): a minute, as for the rate.
NEVER_FREES_SECONDS = 60
CONCURRENCY_ERROR = "concurrency_limit_error"
RATE_ERROR = "rate_limit_error"


def whole_seconds(wait: float) -> int:
    """A ``Retry-After`` value: ``wait`` rounded up to whole seconds, at least 1 (0 would invite a spin)."""
    return max(1, math.ceil(wait))


class RateWindow:
    """The calls admitted in the last :data:`WINDOW_SECONDS` (monotonic times, oldest first)."""

    def __init__(self) -> None:
        self.calls: deque[float] = deque()

    def admit(self, limit: int | None, now: float) -> int | None:
        """Count a call at ``now`` and return None, or refuse it uncounted: return its ``Retry-After``.

        ``limit`` None or 0 admits every call (calls are still counted, so a limit set later applies
        to the last minute's traffic, as on a gateway that always counts).
        """
        while self.calls and self.calls[0] <= now - WINDOW_SECONDS:
            self.calls.popleft()
        if limit and len(self.calls) >= limit:
            # the place frees when the call that leaves exactly ``limit - 1`` behind it drops out
            return whole_seconds(self.calls[len(self.calls) - limit] + WINDOW_SECONDS - now)
        self.calls.append(now)
        return None


def concurrency_wait(busy_until: Sequence[float | None], limit: int | None, now: float) -> int | None:
    """``Retry-After`` for a submit at ``now``, or None when a slot is free.

    ``busy_until`` has one entry per job holding a slot: when it is due to end, None if it never ends.
    With more busy jobs than ``limit`` (a limit lowered at run time) enough of them must end to bring
    the count below it.
    """
    if not limit or len(busy_until) < limit:
        return None
    must_end = len(busy_until) - limit + 1
    ends = sorted(end for end in busy_until if end is not None)
    if len(ends) < must_end:
        return NEVER_FREES_SECONDS
    return whole_seconds(ends[must_end - 1] - now)


def slot_utilisation(
    jobs: Iterable[Mapping[str, Any]], slots: int, start: float | None = None, end: float | None = None
) -> float:
    """Busy slot-seconds within [start, end] over ``slots`` x (end - start), from ``/_sim/stats`` ``job_times``.

    Each job is busy from ``started`` to ``ended`` (a job still running, ``ended`` None, to ``end``).
    ``start`` defaults to the first job's start, ``end`` to the last job's end. 1.0 means every slot
    was busy all the time; above 1 more jobs ran at once than there are slots (no limit set).
    """
    if slots < 1:
        raise ValueError("slots must be at least 1")
    spans = [(float(job["started"]), None if job["ended"] is None else float(job["ended"])) for job in jobs]
    if start is None:
        start = min((began for began, _ in spans), default=None)
    if end is None:
        end = max((ended for _, ended in spans if ended is not None), default=None)
    if start is None or end is None or end <= start:
        raise ValueError("the window is empty: give jobs that have started and ended, or start < end")
    busy = sum(max(0.0, min(end if ended is None else ended, end) - max(began, start)) for began, ended in spans)
    return busy / (slots * (end - start))
