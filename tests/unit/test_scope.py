"""plan/scope.py: a hook plans from what scope_for names, and gets the plan
(or the refusal) a full read would give.

Every plan() call of the planner test modules is checked that way too
(conftest.py, scope_checked); the cases here are the ones where the scope
must reach past the names a want spells: VLAN devices under the uplink or
the tap (the never-mixed rule), a second feed on an access bridge, a name
taken by a device of another kind, the trunk bridge's other ports.
"""

import struct
from dataclasses import replace

import pytest

from virtvlan.apply import engine
from virtvlan.errors import Refused
from virtvlan.hook import handler
from virtvlan.host import rtnl
from virtvlan.host import scoped as scoped_read
from virtvlan.host.nlconst import (
    AF_BRIDGE,
    BR_VLAN_MSG,
    BRIDGE_VLAN_INFO_PVID,
    BRIDGE_VLAN_INFO_UNTAGGED,
    BRIDGE_VLANDB_ENTRY,
    BRIDGE_VLANDB_ENTRY_INFO,
    BRIDGE_VLANDB_ENTRY_RANGE,
)
from virtvlan.model import Address, Link, PortVlans, Route, Snapshot, Want
from virtvlan.plan.planner import plan
from virtvlan.plan.scope import FULL, first_read, refine, restrict, scope_for

from conftest import SCOPE_CHECKS, parse_config, scope_checked

WHO = "domain vm1, interface 52:54:00:00:00:01"
ETH0 = Link("eth0", index=2, mac="52:54:00:aa:00:00")
ETH1 = Link("eth1", index=3, mac="52:54:00:aa:00:01",
            addresses=(Address("inet", "192.0.2.10", 24),))
VNET0 = Link("vnet0", kind="tun", index=20)
# Much else on the host: bridges, taps, VLAN devices nobody asked about.
CROWD = tuple(Link("br0%d" % (2000 + n), kind="bridge", index=100 + n, managed=True,
                   vlans=PortVlans()) for n in range(20)) + tuple(
    Link("vnet%d" % (100 + n), kind="tun", index=200 + n, master="br0%d" % (2000 + n % 20),
         vlans=PortVlans()) for n in range(40)) + (
    Link("eth9", index=9), Link("eth9.5", kind="vlan", index=10, vlan_id=5, parent="eth9"))
ROUTES = (Route("inet", "default", "eth1", gateway="192.0.2.1"),
          Route("inet", "198.51.100.0/24", "eth9", gateway="192.0.2.1"))

TRUNK_HOST_VLANS = """\
[uplink eth1]
wiring = trunk
allowed-vlans = 5,7
host-vlans = 100
port-security = no
"""


def access(vlan, port="vnet0"):
    return Want(uplink="eth0", mode="access", vlans=(vlan,), port=port, who=WHO)


def trunk(*vlans, port="vnet0"):
    return Want(uplink="eth1", mode="trunk", vlans=vlans, port=port, who=WHO)


def same_outcome(wants, config, snap):
    """plan() from the scoped snapshot equals plan() from all of `snap`
    (scope_checked asserts it); the outcome is returned for more checks."""
    try:
        return scope_checked(plan)(wants, config, snap)
    except Refused as err:
        return err


def test_the_planner_tests_were_scope_checked():
    # The wrapper counts each call it checked: this module's own cases go
    # through it; so did every plan() of test_plan, test_plan_properties,
    # test_port_security and test_protection_upgrade (conftest.py).
    before = SCOPE_CHECKS["calls"]
    same_outcome([access(5)], parse_config("[uplink eth0]\nallowed-vlans = 5\n"),
                 Snapshot((ETH0, VNET0)))
    assert SCOPE_CHECKS["calls"] == before + 1


def test_a_warm_access_call_reads_a_handful_of_names(access_config):
    scope = scope_for([access(5)], access_config)
    assert not scope.full
    assert scope.names == {"eth0", "eth0.5", "br05", "vnet0"}
    assert scope.port_sets == {"br05"}
    assert scope.routes_of == frozenset()
    snap = Snapshot((ETH0, Link("eth0.5", "vlan", 30, master="br05", vlan_id=5, parent="eth0"),
                     Link("br05", "bridge", 31), VNET0) + CROWD, ROUTES)
    cut = restrict(snap, scope)
    assert {link.name for link in cut} == {"eth0", "eth0.5", "br05", "vnet0"}
    assert cut.routes == ()


def test_a_trunk_call_reads_the_uplinks_addresses_routes_and_the_bridges_ports(trunk_config):
    scope = scope_for([trunk(5, 7)], trunk_config)
    assert scope.routes_of == {"eth1"}
    assert scope.port_sets == {"br0"}
    bridge = Link("br0", "bridge", 40, vlan_filtering=True, managed=True, vlans=PortVlans())
    other = Link("vnet7", "tun", 41, master="br0", vlans=PortVlans(tagged=frozenset({7})))
    snap = Snapshot((ETH1, bridge, other, VNET0) + CROWD, ROUTES)
    cut = restrict(snap, scope)
    assert [link.name for link in cut] == ["eth1", "br0", "vnet7", "vnet0"]
    assert cut.get("eth1").addresses == ETH1.addresses
    assert cut.routes == ROUTES[:1]
    same_outcome([trunk(5, 7)], trunk_config, snap)


def test_cold_trunk_wiring_of_an_uplink_with_vlan_devices_is_refused_alike(trunk_config):
    # The never-mixed rule: eth1 carries eth1.9, so it must not become a
    # port of br0. The VLAN device is found by the kind-filtered read.
    snap = Snapshot((ETH1, Link("eth1.9", "vlan", 50, vlan_id=9, parent="eth1"), VNET0) + CROWD)
    outcome = same_outcome([trunk(5)], trunk_config, snap)
    assert isinstance(outcome, Refused) and "eth1.9" in str(outcome)


def test_a_tap_with_vlan_devices_is_not_enslaved_alike(access_config):
    snap = Snapshot((ETH0, VNET0, Link("vnet0.3", "vlan", 51, vlan_id=3, parent="vnet0")))
    outcome = same_outcome([access(5)], access_config, snap)
    assert isinstance(outcome, Refused) and "vnet0.3" in str(outcome)


def test_a_vlan_taken_under_another_name_is_refused_alike(access_config):
    snap = Snapshot((ETH0, VNET0, Link("vlan5", "vlan", 52, vlan_id=5, parent="eth0")) + CROWD)
    outcome = same_outcome([access(5)], access_config, snap)
    assert isinstance(outcome, Refused) and "vlan5" in str(outcome)


def test_a_second_feed_on_the_access_bridge_is_refused_alike(access_config):
    snap = Snapshot((ETH0, VNET0, Link("br05", "bridge", 53),
                     Link("eth9.5", "vlan", 54, vlan_id=5, parent="eth9", master="br05")))
    outcome = same_outcome([access(5)], access_config, snap)
    assert isinstance(outcome, Refused) and "eth9.5" in str(outcome)


def test_a_feed_on_a_bridge_port_names_the_masters_kind_alike(access_config):
    # The refusal says what eth0's master is: the master is read with it.
    snap = Snapshot((Link("eth0", index=2, master="bond0"), Link("bond0", "bond", 3), VNET0))
    outcome = same_outcome([access(5)], access_config, snap)
    assert isinstance(outcome, Refused) and "bond bond0" in str(outcome)


def test_a_host_vlan_name_taken_by_another_kind_is_refused_alike():
    config = parse_config(TRUNK_HOST_VLANS)
    snap = Snapshot((ETH1, Link("br0.100", "dummy", 60), VNET0))
    outcome = same_outcome([trunk(5)], config, snap)
    assert isinstance(outcome, Refused) and "br0.100" in str(outcome)


def test_a_feed_with_vlan_devices_is_not_enslaved_alike(access_config):
    # The feed exists but is on no bridge yet: joining br05 needs its VLAN
    # devices (refine keeps the feed as a VLAN parent).
    snap = Snapshot((ETH0, Link("eth0.5", "vlan", 30, vlan_id=5, parent="eth0"),
                     Link("eth0.5.7", "vlan", 31, vlan_id=7, parent="eth0.5"), VNET0))
    outcome = same_outcome([access(5)], access_config, snap)
    assert isinstance(outcome, Refused) and "eth0.5.7" in str(outcome)


def test_a_missing_host_vlan_on_a_warm_trunk_checks_the_bridges_vlan_devices():
    # eth1 is on br0 (an admin's bridge that does not filter), but host VLAN
    # 100 is carried by vlan100 under another name: br0.100 cannot be made.
    config = parse_config(TRUNK_HOST_VLANS)
    snap = Snapshot((Link("eth1", index=3, master="br0"), Link("br0", "bridge", 40,
                                                                vlans=PortVlans()),
                     Link("vlan100", "vlan", 41, vlan_id=100, parent="br0"), VNET0))
    outcome = same_outcome([trunk(5)], config, snap)
    assert isinstance(outcome, Refused) and "vlan100" in str(outcome)


def test_a_warm_call_needs_no_vlan_device_dump(access_config):
    snap = Snapshot((ETH0, Link("eth0.5", "vlan", 30, master="br05", vlan_id=5, parent="eth0"),
                     Link("br05", "bridge", 31), Link("vnet0", "tun", 20, master="br05")))
    scope = scope_for([access(5)], access_config)
    first = restrict(snap, first_read(scope))
    assert refine(scope, [access(5)], access_config, first).vlan_parents == frozenset()
    moving = snap.changed("vnet0", master=None)
    assert refine(scope, [access(5)], access_config,
                  restrict(moving, first_read(scope))).vlan_parents == {"vnet0"}


def test_an_admins_trunk_bridge_that_does_not_filter_needs_no_port_dump():
    config = parse_config("[uplink eth1]\nwiring = trunk\nallowed-vlans = 5,7\n"
                          "port-security = no\n")
    snap = Snapshot((Link("eth1", index=3, master="br0"),
                     Link("br0", "bridge", 40, vlans=PortVlans()),
                     Link("vnet0", "tun", 20, master="br0", vlans=PortVlans())))
    scope = scope_for([trunk(5)], config)
    refined = refine(scope, [trunk(5)], config, restrict(snap, first_read(scope)))
    assert refined.port_sets == frozenset() and refined.vlan_parents == frozenset()
    owned = snap.changed("br0", managed=True)
    refined = refine(scope, [trunk(5)], config, restrict(owned, first_read(scope)))
    assert refined.port_sets == {"br0"} and refined.vlan_parents == {"br0"}


def test_an_unknown_uplink_gets_the_full_scope(access_config):
    assert scope_for([Want(uplink="nope", mode="access", vlans=(5,), port="vnet0")],
                     access_config) is FULL
    assert restrict(Snapshot(CROWD), FULL) == Snapshot(CROWD)


def test_a_prepare_without_a_port_reads_no_tap(access_config):
    scope = scope_for([access(5, port=None)], access_config)
    assert "vnet0" not in scope.names and "vnet0" not in scope.vlan_parents


# --- the engine and the hook ----------------------------------------------------------


@pytest.fixture
def host(monkeypatch, tmp_path):
    """The engine against a fake host: every read is recorded."""
    monkeypatch.setenv("VIRT_VLAN_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("VIRT_VLAN_LOCK", str(tmp_path / "lock"))
    reads = []
    snap = Snapshot((ETH0, Link("eth0.5", "vlan", 30, master="br05", vlan_id=5, parent="eth0",
                                managed=True),
                     Link("br05", "bridge", 31, managed=True),
                     Link("vnet0", "tun", 20, master="br05")) + CROWD)

    def full(netns=None):
        reads.append(FULL)
        return snap

    def scoped(scope, netns=None):
        reads.append(scope)
        return restrict(snap, scope)
    monkeypatch.setattr(rtnl, "read_snapshot", full)
    monkeypatch.setattr(scoped_read, "read_scoped", scoped)
    return reads


def test_a_warm_hook_wiring_call_reads_its_names_and_the_bridges_ports(host, access_config):
    assert not engine.wire([access(5)], access_config, why="test")
    scope = scope_for([access(5)], access_config)
    assert host == [first_read(scope), replace(scope, vlan_parents=frozenset())]


def test_a_tap_move_also_reads_the_taps_vlan_devices(host, access_config):
    # vnet101 is on another bridge: before it joins br05, its VLAN devices
    # are read (the never-mixed rule), and only its.
    want = access(5, port="vnet101")
    assert engine.wire([want], access_config, why="test", dry_run=True)
    scope = scope_for([want], access_config)
    assert host == [first_read(scope), replace(scope, vlan_parents=frozenset({"vnet101"}))]


def test_cleanup_reads_the_whole_host(host, access_config):
    engine.release(access_config, why="test", dry_run=True)
    assert host == [FULL]


def test_an_untagged_hook_call_reads_nothing(host, tmp_path, monkeypatch):
    # Past the drop-in's substring test (the namespace is mentioned), but
    # no NIC is tagged: the handler returns before any read.
    conf = tmp_path / "virt-vlan.conf"
    conf.write_text("[uplink eth0]\nallowed-vlans = 5\n")
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(conf))
    xml = (b"<domain type='kvm'><name>vm0</name><description>mentions urn:virt-vlan:2 only "
           b"in passing</description><devices><interface type='bridge'><mac address="
           b"'52:54:00:00:00:01'/><source bridge='virbr0'/><target dev='vnet0'/></interface>"
           b"</devices></domain>")
    for op in ("prepare", "start", "release"):
        assert handler.serve("qemu", ["vm0", op, "begin", "-"], xml) == (0, "")
    assert host == []


# --- the RTM_NEWVLAN parser ------------------------------------------------------------


def _nla(kind, payload):
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def _entry(flags, vid, last=None):
    body = _nla(BRIDGE_VLANDB_ENTRY_INFO, struct.pack("=HH", flags, vid))
    if last is not None:
        body += _nla(BRIDGE_VLANDB_ENTRY_RANGE, struct.pack("=H", last))
    return _nla(BRIDGE_VLANDB_ENTRY, body)


def test_vlan_entries_parse_runs_pvid_and_untagged():
    pvid_untagged = BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED
    payload = (BR_VLAN_MSG.pack(AF_BRIDGE, 0, 0, 7) + _entry(0, 2, 10)
               + _entry(pvid_untagged, 11, 12) + _entry(BRIDGE_VLAN_INFO_UNTAGGED, 20))
    index, entries = scoped_read.parse_vlan_entries(payload)
    assert index == 7
    assert entries == [(0, 2, 10), (pvid_untagged, 11, 12), (BRIDGE_VLAN_INFO_UNTAGGED, 20, 20)]
    assert scoped_read.vlan_table(entries) == PortVlans(tagged=frozenset(range(2, 11)),
                                                 untagged=frozenset({11, 12, 20}), pvid=11)
    assert scoped_read.parse_vlan_entries(BR_VLAN_MSG.pack(AF_BRIDGE, 0, 0, 8)) == (8, [])
