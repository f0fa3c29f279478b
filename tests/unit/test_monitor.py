"""The link monitor's pure parts on data: debounce, rebuild limiter, message
parsing (datagrams built here as the kernel lays them out), the held file.
The socket side runs against a real kernel in tests/kernel/test_monitor.py."""

import json
import struct

import pytest

from virtvlan.agent import monitor
from virtvlan.agent.monitor import LinkEvents, read_holds, write_holds, HeldDevice
from virtvlan.agent.ratelimit import ChangeSet, Debouncer, RebuildLimiter
from virtvlan.errors import VirtVlanError
from virtvlan.host import nlconst

# --- Debouncer ---------------------------------------------------------------------------


def test_burst_is_one_changeset_after_the_quiet_period():
    d = Debouncer(quiet=0.5, max_delay=5.0)
    # ifdown br0; ifup br0: events 0.1 s apart for a second
    for step in range(11):
        d.add({"br0.%d" % step}, False, now=10.0 + step * 0.1)
        assert d.flush(10.0 + step * 0.1) is None
    assert d.deadline() == pytest.approx(11.5)
    assert d.flush(11.49) is None
    changes = d.flush(11.5)
    assert changes == ChangeSet(names=frozenset("br0.%d" % s for s in range(11)), resync=False)
    assert d.flush(20.0) is None and d.deadline() is None


def test_endless_flapping_is_reported_after_max_delay():
    d = Debouncer(quiet=0.5, max_delay=2.0)
    t = 0.0
    reports = []
    while t < 5.0:
        d.add({"eth0.5"}, False, t)
        found = d.flush(t)
        if found:
            reports.append(t)
        t = round(t + 0.25, 2)
    # never quiet, yet reported every max_delay
    assert reports == [2.0, 4.25]


def test_resync_survives_merge_and_empty_events_are_ignored():
    d = Debouncer(quiet=1.0, max_delay=3.0)
    d.add(set(), False, 0.0)
    assert d.deadline() is None
    d.add({"a"}, False, 0.0)
    d.add(set(), True, 0.5)
    d.add({"b"}, False, 0.9)
    assert d.flush(1.9) == ChangeSet(names=frozenset({"a", "b"}), resync=True)
    d.add({"c"}, False, 5.0)
    assert d.flush(6.0) == ChangeSet(names=frozenset({"c"}), resync=False)


def test_debouncer_refuses_nonsense_timing():
    with pytest.raises(ValueError):
        Debouncer(quiet=0, max_delay=1)
    with pytest.raises(ValueError):
        Debouncer(quiet=2, max_delay=1)


# --- RebuildLimiter --------------------------------------------------------------------


def test_limiter_holds_after_more_than_limit_deletions_in_window():
    lim = RebuildLimiter(limit=3, window=10.0, hold=60.0)
    assert [lim.record("br1.5", t) for t in (0.0, 1.0, 2.0)] == [None, None, None]
    hold = lim.record("br1.5", 3.0)
    assert hold is not None and hold.device == "br1.5" and hold.deletions == 4
    assert hold.until == 63.0
    assert lim.held(3.0) == {"br1.5"}
    # further deletions while held start nothing new (logged once)
    assert lim.record("br1.5", 4.0) is None
    assert lim.held(62.9) == {"br1.5"} and lim.expire(62.9) == frozenset()
    assert lim.next_expiry() == 63.0
    assert lim.expire(63.0) == {"br1.5"}
    assert lim.held(63.0) == frozenset() and lim.next_expiry() is None
    # after the hold the count starts afresh
    assert [lim.record("br1.5", t) for t in (64.0, 65.0, 66.0)] == [None, None, None]


def test_limiter_counts_only_inside_the_window_and_per_name():
    lim = RebuildLimiter(limit=2, window=10.0, hold=5.0)
    # one deletion every 6 s never has 3 in any 10 s window
    assert all(lim.record("br05", t) is None for t in range(0, 120, 6))
    assert lim.record("br05", 120.0) is None  # 114, 120
    assert lim.record("br05", 121.0).deletions == 3  # 114, 120, 121: 3 in 10 s
    assert lim.held(121.0) == {"br05"}
    # another name has its own count
    assert lim.record("br07", 121.0) is None and lim.record("br07", 122.0) is None
    held = lim.record("br07", 123.0)
    assert held is not None and held.device == "br07"
    assert lim.held(123.0) == {"br05", "br07"}
    assert lim.held(126.0) == {"br07"}


def test_limiter_forgets_old_records():
    lim = RebuildLimiter(limit=1, window=10.0, hold=5.0)
    lim.record("vnet0", 0.0)
    lim.forget_older(10.0)
    assert lim.record("vnet0", 11.0) is None  # the first one was forgotten


def test_limiter_refuses_nonsense():
    with pytest.raises(ValueError):
        RebuildLimiter(limit=0)


def test_limiter_from_env(monkeypatch):
    monkeypatch.setenv(monitor.LIMIT_ENV, "3/30/120")
    lim = monitor.limiter_from_env()
    assert (lim.limit, lim.window, lim.hold) == (3, 30.0, 120.0)
    monkeypatch.setenv(monitor.LIMIT_ENV, "3/30")
    with pytest.raises(VirtVlanError, match="LIMIT/WINDOW/HOLD"):
        monitor.limiter_from_env()
    monkeypatch.delenv(monitor.LIMIT_ENV)
    lim = monitor.limiter_from_env()
    assert (lim.limit, lim.window, lim.hold) == (5, 60.0, 300.0)


# --- LinkEvents: rtnetlink messages as the kernel lays them out ---------------------------

def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * ((-len(raw)) % 4)


def _link_msg(kind: int, index: int, name: str, family: int = 0, up: bool = True,
              master: int = 0, link_kind: str = "", af_spec: bytes = b"") -> bytes:
    body = struct.pack("=BxHiII", family, 1, index, 0x1 if up else 0, 0)
    body += _attr(3, name.encode() + b"\0")
    if master:
        body += _attr(10, struct.pack("=I", master))
    if link_kind:
        body += _attr(18, _attr(1, link_kind.encode() + b"\0"))
    if af_spec:
        body += _attr(26, af_spec)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


NEW, DEL = nlconst.RTM_NEWLINK, nlconst.RTM_DELLINK


def _seeded() -> LinkEvents:
    ev = LinkEvents()
    # 2: vvtrk port of br1 (3); 4: br1.5 on br1, port of br15 (5); 6: vnet0 port of br15
    ev.seed({2: ("vvtrk", 3, True, "veth"), 3: ("br1", None, True, "bridge"),
             4: ("br1.5", 5, True, "vlan"), 5: ("br15", None, True, "bridge"),
             6: ("vnet0", 5, True, "tun")})
    return ev


def test_repeated_state_names_nothing():
    ev = _seeded()
    names, deleted = ev.feed(_link_msg(NEW, 6, "vnet0", master=5, link_kind="tun"))
    assert (names, deleted) == (set(), [])


def test_deleted_vlan_device_names_itself_and_its_bridge():
    ev = _seeded()
    names, deleted = ev.feed(_link_msg(DEL, 4, "br1.5", master=5, link_kind="vlan"))
    assert names == {"br1.5", "br15"}
    assert deleted == [("br1.5", "vlan")]
    assert 4 not in ev.devs


def test_bridge_deleted_in_one_datagram_with_its_vlan_devices():
    ev = _seeded()
    data = (_link_msg(DEL, 2, "vvtrk", family=7, master=3)
            + _link_msg(NEW, 2, "vvtrk", link_kind="veth")  # master gone
            + _link_msg(DEL, 4, "br1.5", link_kind="vlan")
            + _link_msg(DEL, 3, "br1", link_kind="bridge"))
    names, deleted = ev.feed(data)
    assert names == {"vvtrk", "br1", "br1.5", "br15"}
    assert deleted == [("br1.5", "vlan"), ("br1", "bridge")]
    # re-created with a new index (as ifup does), then the NIC re-enslaved
    names, _ = ev.feed(_link_msg(NEW, 9, "br1", up=False, link_kind="bridge"))
    assert names == {"br1"}
    names, _ = ev.feed(_link_msg(NEW, 2, "vvtrk", master=9, link_kind="veth"))
    assert names == {"vvtrk", "br1"}
    names, _ = ev.feed(_link_msg(NEW, 9, "br1", up=True, link_kind="bridge"))
    assert names == {"br1"}


def test_down_up_and_rename_are_changes():
    ev = _seeded()
    assert ev.feed(_link_msg(NEW, 5, "br15", up=False, link_kind="bridge"))[0] == {"br15"}
    assert ev.feed(_link_msg(NEW, 5, "br15", up=True, link_kind="bridge"))[0] == {"br15"}
    assert ev.feed(_link_msg(NEW, 6, "guest0", master=5, link_kind="tun"))[0] == {
        "guest0", "vnet0"}


def test_bridge_port_vlan_entries_reported_when_they_change():
    ev = _seeded()
    spec5 = _attr(2, struct.pack("=HH", 0, 5))  # IFLA_BRIDGE_VLAN_INFO vid 5
    spec57 = spec5 + _attr(2, struct.pack("=HH", 0, 7))
    assert ev.feed(_link_msg(NEW, 6, "vnet0", family=7, master=5, af_spec=spec5))[0] == {"vnet0"}
    assert ev.feed(_link_msg(NEW, 6, "vnet0", family=7, master=5, af_spec=spec5))[0] == set()
    assert ev.feed(_link_msg(NEW, 6, "vnet0", family=7, master=5, af_spec=spec57))[0] == {
        "vnet0"}
    # RTM_NEWVLAN (RTNLGRP_BRVLAN) carries an ifindex only
    vlan_msg = struct.pack("=BBHI", 7, 0, 0, 6)
    data = struct.pack("=IHHII", 16 + len(vlan_msg), nlconst.RTM_NEWVLAN, 0, 0, 0) + vlan_msg
    assert ev.feed(data)[0] == {"vnet0"}


def test_unknown_messages_and_truncation_are_harmless():
    ev = _seeded()
    other = struct.pack("=IHHII", 20, 20, 0, 0, 0) + b"\0" * 4  # RTM_NEWADDR-ish
    assert ev.feed(other) == (set(), [])
    good = _link_msg(DEL, 4, "br1.5", link_kind="vlan")
    assert ev.feed(good[:10]) == (set(), [])
    assert ev.feed(good + good[:20])[1] == [("br1.5", "vlan")]


def test_device_unknown_to_the_view_is_new():
    ev = LinkEvents()
    names, deleted = ev.feed(_link_msg(NEW, 11, "br05", link_kind="bridge"))
    assert names == {"br05"} and deleted == []
    names, deleted = ev.feed(_link_msg(DEL, 12, "eth0.5"))  # no linkinfo, never seen
    assert names == {"eth0.5"} and deleted == [("eth0.5", "device")]


# --- the held file --------------------------------------------------------------------


def test_held_file_round_trip_and_expiry(tmp_path):
    path = str(tmp_path / "run" / "heal-held.json")
    holds = [HeldDevice("br1.5", 6, 60.0, since=1000.0, until=1300.0),
             HeldDevice("eth0.7", 7, 60.0, since=1100.0, until=1400.0)]
    write_holds(holds, path)
    body = json.loads(open(path, encoding="utf-8").read())
    assert body["version"] == 1 and [e["device"] for e in body["held"]] == ["br1.5", "eth0.7"]
    assert read_holds(path, now=1200.0) == holds
    assert read_holds(path, now=1350.0) == holds[1:]  # a stale hold is not reported
    write_holds([], path)
    assert read_holds(path, now=0.0) == []


def test_held_file_default_path_is_under_the_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRT_VLAN_RUN_DIR", str(tmp_path))
    assert monitor.held_path() == str(tmp_path / "heal-held.json")
    (tmp_path / "heal-held.json").write_text("{not json")
    with pytest.raises(VirtVlanError, match="heal-held.json"):
        read_holds()
