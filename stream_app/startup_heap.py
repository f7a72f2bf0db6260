"""Keep the cyclic garbage collector off what a worker builds at startup (``gc.freeze``).

Loading torch, the model and Faust leaves a stream worker with about 240,000 objects that
live as long as the process. Python's collector walks every one of them in each full
(oldest-generation) collection, and under load such a collection came every 2 s and held the
interpreter for 120-190 ms: the event loop, the stage thread and the consumer's thread all
stopped (measured on a 100,000-record burst, docs/benchmarks.md). Frozen, they are left out of
every later collection; what the worker allocates afterwards is collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect the startup's garbage, then freeze what is left; returns how many objects were frozen.

    >>> freeze_startup_heap() > 0 and gc.get_freeze_count() > 0
    True
    >>> gc.unfreeze()  # (this example's process goes back to collecting everything)
    """
    gc.collect()  # startup's garbage is freed, not kept forever
    gc.freeze()
    return gc.get_freeze_count()


def refreeze_heap() -> int:
    """After a model reload, in a worker that froze its startup heap: unfreeze, collect (what the
    old model left in reference cycles goes too) and freeze again; one full collection, about
    0.1-0.2 s, once per reload. A process that froze nothing is left as it is (returns 0).

    >>> refreeze_heap()
    0
    >>> freeze_startup_heap() > 0 and refreeze_heap() > 0
    True
    >>> gc.unfreeze()
    """
    if not gc.get_freeze_count():
        return 0
    gc.unfreeze()
    return freeze_startup_heap()
