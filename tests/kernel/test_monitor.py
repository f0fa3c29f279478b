"""The link monitor against a real kernel, in a scratch namespace.

The monitor (virtvlan.agent.monitor.LinkMonitor) must see what no libvirt
hook sees: a VLAN device deleted by hand, a bridge deleted and re-created
as `ifdown br1; ifup br1` does, a socket overflow, and a device that keeps
being deleted. `ip -json` is the oracle for what the kernel holds.
"""

import json
import threading
import time
from typing import Callable, List

import pytest

from virtvlan.agent.monitor import LinkMonitor, read_holds
from virtvlan.agent.ratelimit import ChangeSet, RebuildLimiter


class Calls:
    """Collects the monitor's callbacks; waits on a condition, never sleeps."""

    def __init__(self) -> None:
        self.seen: List[ChangeSet] = []
        self.cond = threading.Condition()

    def __call__(self, changes: ChangeSet) -> None:
        with self.cond:
            self.seen.append(changes)
            self.cond.notify_all()

    def names(self, start: int = 0) -> set:
        with self.cond:
            return set().union(*(c.names for c in self.seen[start:]))

    def wait(self, what: str, predicate: Callable[[List[ChangeSet]], bool],
             timeout: float = 60) -> List[ChangeSet]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.seen):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail("monitor never reported %s within %gs; it reported %s"
                                % (what, timeout, self.seen))
                self.cond.wait(left)
            return list(self.seen)

    def wait_names(self, names: set, start: int = 0, timeout: float = 60) -> None:
        self.wait("%s (after callback %d)" % (sorted(names), start),
                  lambda seen: names <= set().union(*(c.names for c in seen[start:])),
                  timeout)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def start_monitor(netns, calls):
    monitors = []

    def start(**kwargs) -> LinkMonitor:
        mon = LinkMonitor(calls, netns=netns.name, quiet=kwargs.pop("quiet", 0.3), **kwargs)
        mon.start()
        monitors.append(mon)
        return mon

    yield start
    for mon in monitors:
        mon.stop()


def _batch(netns, lines: List[str]) -> None:
    """One `ip -batch`: the changes arrive as one burst, as from ifdown/ifup."""
    import subprocess

    proc = subprocess.run(["ip", "-n", netns.name, "-batch", "-"], input="\n".join(lines) + "\n",
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _index(netns, name: str) -> int:
    return netns.link(name)["ifindex"]


def test_deleted_vlan_device_is_reported_with_its_bridge(netns, vlan_support, calls,
                                                         start_monitor):
    _batch(netns, ["link add v0 type veth peer name v1",
                   "link add link v0 name v0.5 type vlan id 5",
                   "link add br15 type bridge",
                   "link set v0.5 master br15",
                   "link set v0 up", "link set v0.5 up", "link set br15 up"])
    start_monitor()
    netns.ip("link", "del", "v0.5")
    calls.wait_names({"v0.5", "br15"})
    assert "v0.5" not in netns.names()  # the oracle agrees it is gone
    assert all(not c.resync for c in calls.seen)


def test_bridge_deleted_and_recreated_like_ifdown_ifup(netns, vlan_support, calls,
                                                      start_monitor):
    # trunk wiring: the uplink v0 is a port of br1; br1.5 on br1 feeds br15
    _batch(netns, ["link add v0 type veth peer name v1",
                   "link add br1 type bridge", "link set v0 master br1",
                   "link add link br1 name br1.5 type vlan id 5",
                   "link add br15 type bridge", "link set br1.5 master br15",
                   "link set v0 up", "link set br1 up", "link set br1.5 up",
                   "link set br15 up"])
    before = _index(netns, "br1")
    mon = start_monitor()
    # ifdown br1 deletes it (the kernel deletes br1.5 with it); ifup re-creates it
    _batch(netns, ["link del br1",
                   "link add br1 type bridge", "link set v0 master br1", "link set br1 up"])
    calls.wait_names({"br1", "br1.5", "br15", "v0"})
    after = _index(netns, "br1")
    assert after != before
    assert "br1.5" not in netns.names()
    # The monitor's view follows the kernel: the new br1 is known, up, with v0 as port.
    calls.wait("the re-created br1 in the monitor's view",
               lambda seen: mon.events.devs.get(after) is not None
               and mon.events.devs[after].up)
    v0 = mon.events.devs[_index(netns, "v0")]
    assert v0.master == after
    # A later change to the new bridge is reported too (the view was not lost).
    start = len(calls.seen)
    netns.ip("link", "set", "br1", "down")
    calls.wait_names({"br1"}, start)


def test_burst_is_reported_in_few_callbacks(netns, calls, start_monitor):
    start_monitor(quiet=1.0, max_delay=10.0)
    names = ["b%d" % i for i in range(20)]
    _batch(netns, ["link add %s type bridge" % n for n in names]
           + ["link set %s up" % n for n in names] + ["link del %s" % n for n in names])
    calls.wait_names(set(names))
    # Speed is not asserted (an emulated VM may pause a batch); the count is shown.
    print("20 bridges created, upped, deleted: %d callback(s)" % len(calls.seen))


def test_overflow_recreates_the_socket_and_asks_for_resync(netns, calls, start_monitor):
    # A one-byte buffer (the kernel rounds it up to its minimum) overflows
    # on any burst: recv fails with ENOBUFS and events are lost.
    start_monitor(rcvbuf=1)
    _batch(netns, ["link add b%d type bridge" % i for i in range(200)])
    calls.wait("a resync", lambda seen: any(c.resync for c in seen))
    # The replacement socket works: a later deletion is named.
    start = len(calls.seen)
    netns.ip("link", "del", "b7")
    calls.wait_names({"b7"}, start)


def test_device_deleted_over_and_over_is_held(netns, calls, start_monitor, tmp_path):
    held_file = str(tmp_path / "heal-held.json")
    start_monitor(limiter=RebuildLimiter(limit=2, window=600, hold=600), held_file=held_file)
    for _round in range(3):  # 3 deletions > limit 2
        start = len(calls.seen)
        _batch(netns, ["link add brx type bridge", "link set brx up"])
        calls.wait_names({"brx"}, start)
        start = len(calls.seen)  # from here on, only the deletion can name brx
        netns.ip("link", "del", "brx")
        calls.wait("brx deleted or held", lambda seen: any(
            "brx" in c.names or "brx" in c.held for c in seen[start:]))
    holds = read_holds(held_file)
    assert [(h.device, h.deletions) for h in holds] == [("brx", 3)], holds
    assert json.load(open(held_file))["held"][0]["device"] == "brx"
    # While held, changes to brx are not passed on for rebuilding.
    start = len(calls.seen)
    _batch(netns, ["link add brx type bridge", "link add bry type bridge"])
    seen = calls.wait("bry", lambda seen: any("bry" in c.names for c in seen[start:]))
    assert all("brx" not in c.names for c in seen[start:])
    assert all("brx" in c.held for c in seen[start:])
