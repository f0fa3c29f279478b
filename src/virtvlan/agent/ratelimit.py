"""Pure timing logic of the link monitor: debounce and the rebuild limiter.

No I/O and no clock of its own: every method takes `now` (seconds, any
monotonic origin), so both are tested on data (tests/unit/test_monitor.py).
"""

from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, List, Optional, Set


@dataclass(frozen=True)
class ChangeSet:
    """What changed since the last callback.

    names: devices created, deleted or changed (renamed, master, up/down,
    bridge VLAN entries), and bridges that gained or lost a port. resync:
    events were lost (socket overflow): re-check everything, not just names.
    held: devices the rate limiter holds back; do not rebuild them now.
    """

    names: FrozenSet[str]
    resync: bool
    held: FrozenSet[str] = frozenset()


class Debouncer:
    """Collects events and says when to report them, once, as one ChangeSet.

    A burst (`systemctl restart networking`, `ifdown br0; ifup br0`) is many
    netlink messages over up to a few seconds: the report is due `quiet`
    seconds after the last event, but never later than `max_delay` seconds
    after the first one, so a device flapping without pause is still reported.
    """

    def __init__(self, quiet: float = 0.5, max_delay: float = 5.0) -> None:
        if quiet <= 0 or max_delay < quiet:
            raise ValueError("need 0 < quiet <= max_delay, got %r, %r" % (quiet, max_delay))
        self.quiet, self.max_delay = quiet, max_delay
        self._names: Set[str] = set()
        self._resync = False
        self._first: Optional[float] = None
        self._last: Optional[float] = None

    def add(self, names: Iterable[str], resync: bool, now: float) -> None:
        """Record an event. An event with no names and no resync is ignored."""
        names = set(names)
        if not names and not resync:
            return
        self._names |= names
        self._resync = self._resync or resync
        if self._first is None:
            self._first = now
        self._last = now

    def deadline(self) -> Optional[float]:
        """When the pending events are due; None when nothing is pending."""
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.quiet, self._first + self.max_delay)

    def flush(self, now: float) -> Optional[ChangeSet]:
        """The pending events as a ChangeSet if due at `now` (then cleared)."""
        due = self.deadline()
        if due is None or now < due:
            return None
        changes = ChangeSet(names=frozenset(self._names), resync=self._resync)
        self._names, self._resync, self._first, self._last = set(), False, None, None
        return changes


@dataclass(frozen=True)
class Hold:
    """A device the limiter holds back: `deletions` seen in `window` s."""

    device: str
    deletions: int
    since: float
    until: float


class RebuildLimiter:
    """Stops the agent from fighting whoever keeps deleting a device.

    Every deletion of a device the agent would rebuild is recorded. More
    than `limit` deletions of one name within `window` seconds put that name
    on hold for `hold` seconds: the agent leaves it alone meanwhile (the
    admin, or a script, obviously wants it gone), and tries again once after
    the hold ends (the name is then reported as changed).
    """

    def __init__(self, limit: int = 5, window: float = 60.0, hold: float = 300.0) -> None:
        if limit < 1 or window <= 0 or hold <= 0:
            raise ValueError("need limit >= 1, window > 0, hold > 0, got %r, %r, %r"
                             % (limit, window, hold))
        self.limit, self.window, self.hold = limit, window, hold
        self._deleted: Dict[str, List[float]] = {}
        self._holds: Dict[str, Hold] = {}

    def record(self, name: str, now: float) -> Optional[Hold]:
        """Record one deletion of `name`; the new Hold if this one starts it
        (None otherwise, also for deletions of a name already on hold)."""
        if name in self._holds and now < self._holds[name].until:
            return None
        times = [t for t in self._deleted.get(name, ()) if t > now - self.window] + [now]
        self._deleted[name] = times
        if len(times) <= self.limit:
            return None
        del self._deleted[name]  # the count starts afresh after the hold
        held = Hold(device=name, deletions=len(times), since=now, until=now + self.hold)
        self._holds[name] = held
        return held

    def held(self, now: float) -> FrozenSet[str]:
        """The names on hold at `now`."""
        return frozenset(n for n, h in self._holds.items() if now < h.until)

    def holds(self, now: float) -> List[Hold]:
        """The Holds in force at `now`, by name."""
        return sorted((h for h in self._holds.values() if now < h.until), key=lambda h: h.device)

    def expire(self, now: float) -> FrozenSet[str]:
        """Drop the holds that ended by `now`; their names (to retry once)."""
        ended = frozenset(n for n, h in self._holds.items() if now >= h.until)
        for name in ended:
            del self._holds[name]
        return ended

    def next_expiry(self) -> Optional[float]:
        """When the earliest hold ends; None without holds."""
        return min((h.until for h in self._holds.values()), default=None)

    def forget_older(self, now: float) -> None:
        """Drop deletion records that left the window (bounded memory for
        names that come and go rarely, e.g. taps of guests long stopped)."""
        for name in [n for n, ts in self._deleted.items() if ts[-1] <= now - self.window]:
            del self._deleted[name]
