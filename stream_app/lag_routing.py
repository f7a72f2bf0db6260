"""Lag-aware routing (pure): the threshold follows the teacher group's lag.

While the teachers are behind (lag over budget, in records or in seconds), each check
lowers the effective threshold by one step, down to a floor, so fewer tweets are routed;
once the lag is under half the budget, each check raises it one step back up to the
target (the bundle's threshold). Between the two it holds: the band keeps it from
flapping around the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LagPolicy:
    target: float  # the bundle's threshold (or the threshold setting's)
    floor: float
    step: float
    budget_records: int
    budget_s: float = 0.0  # 0: only the records budget counts

    @property
    def lowest(self) -> float:
        return min(self.floor, self.target)


def lag_seconds(lag_records: int, drain_per_s: float) -> float:
    """How long the teachers need to clear the lag at the rate they committed lately.

    >>> lag_seconds(100, 50.0), lag_seconds(0, 0.0), lag_seconds(5, 0.0)
    (2.0, 0.0, inf)
    """
    if lag_records <= 0:
        return 0.0
    return lag_records / drain_per_s if drain_per_s > 0 else math.inf


def next_threshold(current: float, lag_records: int, drain_per_s: float, policy: LagPolicy) -> float:
    """The threshold after one check.

    >>> policy = LagPolicy(target=0.9, floor=0.5, step=0.25, budget_records=100)
    >>> next_threshold(0.9, 500, 0.0, policy), next_threshold(0.65, 500, 0.0, policy)
    (0.65, 0.5)
    >>> next_threshold(0.5, 80, 10.0, policy), next_threshold(0.5, 20, 10.0, policy)  # hold, then recover
    (0.5, 0.75)
    >>> next_threshold(0.9, 0, 0.0, policy)  # at the target and calm: no change
    0.9
    >>> next_threshold(0.75, 0, 0.0, policy)
    0.9
    """
    seconds = lag_seconds(lag_records, drain_per_s)
    over = lag_records > policy.budget_records or (policy.budget_s > 0 and seconds > policy.budget_s)
    calm = lag_records <= policy.budget_records / 2 and (policy.budget_s <= 0 or seconds <= policy.budget_s / 2)
    if over:
        return max(policy.lowest, current - policy.step)
    if calm:
        return min(policy.target, current + policy.step)
    return current


class DrainRate:
    """Records per second the teacher group committed, smoothed over the recent checks."""

    def __init__(self, smoothing: float = 0.5):
        self.smoothing = smoothing
        self.per_s = 0.0
        self._last: tuple[float, int] | None = None

    def update(self, now: float, committed_total: int) -> float:
        """Feed the group's committed offsets summed over partitions at time ``now``.

        >>> rate = DrainRate(smoothing=1.0)
        >>> rate.update(0.0, 100), rate.update(2.0, 300), rate.update(3.0, 300)
        (0.0, 100.0, 0.0)
        """
        if self._last is not None and now > self._last[0]:
            instant = max(0, committed_total - self._last[1]) / (now - self._last[0])
            self.per_s = self.smoothing * instant + (1 - self.smoothing) * self.per_s
        self._last = (now, committed_total)
        return self.per_s
