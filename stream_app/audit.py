"""The shadow audit's sampling and estimate (pure).

A fraction of the tweets the student decides is also sent to the teacher on a topic of its
own; where the teacher agrees with the student is an estimate of the student's accuracy on
the tweets it keeps, with a Wilson score interval.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

Z_95 = 1.959963984540054


def in_shadow_sample(tweet_id: str, fraction: float) -> bool:
    """Whether ``tweet_id`` is in the shadow sample: a hash of the id, so a redelivered batch
    samples the same tweets, and ids spread uniformly whatever their form.

    >>> in_shadow_sample("a", 0.0), in_shadow_sample("a", 1.0)
    (False, True)
    >>> sum(in_shadow_sample(str(i), 0.1) for i in range(10_000))
    1033
    """
    if fraction <= 0.0:
        return False
    return zlib.crc32(tweet_id.encode("utf-8", "surrogatepass")) < fraction * 2**32


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default).

    >>> [round(x, 3) for x in wilson_interval(90, 100)]
    [0.826, 0.945]
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class AgreementEstimate:
    """Teacher agreement on the audited tweets, with its 95% interval."""

    audited: int
    agreed: int

    @property
    def agreement(self) -> float:
        return self.agreed / self.audited if self.audited else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.agreed, self.audited)

    def as_log(self) -> dict[str, float | int]:
        low, high = self.interval
        return {"audited": self.audited, "agreement": round(self.agreement, 4),
                "agreement_low": round(low, 4), "agreement_high": round(high, 4)}
