"""Where a hook call's time goes: named time points, for `make bench` only.

A timed call (a hook run whose $VIRT_VLAN_BENCH_TIMES names a file, or a
served call whose request asks for its times) calls `start()` on its
thread, the code it runs calls `mark(name)` at each step, and `stop()`
returns the points. Times are CLOCK_MONOTONIC (time.monotonic()), one clock
for every process of the host, so the drop-in, the agent and the bench can
put their points on one line. The time between two points belongs to the
later point's name (tests/bench/harness.py names them for the table).

Untimed, `mark()` costs a call and the test of an empty dict: no thread of
the agent and no hook run pays more.
"""

import time
from _thread import get_ident
from typing import Dict, List, Tuple

ENV = "VIRT_VLAN_BENCH_TIMES"  # the drop-in reads it (dropin.py spells it out)

Marks = List[Tuple[str, float]]

_timed: Dict[int, Marks] = {}  # thread id -> its points, while that thread is timed


def start() -> None:
    """Time this thread's marks from now on (until stop())."""
    _timed[get_ident()] = []


def mark(name: str) -> None:
    """Record `name` now, if this thread is timed."""
    if _timed:
        marks = _timed.get(get_ident())
        if marks is not None:
            marks.append((name, time.monotonic()))


def stop() -> Marks:
    """This thread's points since start() (empty if it was not timed)."""
    return _timed.pop(get_ident(), [])


def encode(marks: Marks) -> str:
    """"name=seconds name=seconds ..." (the drop-in parses it without this module)."""
    return " ".join("%s=%.6f" % (name, when) for name, when in marks)
