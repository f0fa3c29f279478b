"""scoped.read_scoped against a real kernel: for each scope it returns what
plan.scope.restrict cuts out of a full read_snapshot() of the same host
(links in ifindex order), so the unit tests' scope check (tests/unit,
restrict) holds for the kernel's own answers.

The VLAN variant (`vlan_support`, in the test VM) adds VLAN devices and a
VLAN-filtering bridge whose ports carry tagged runs, an untagged PVID and
self entries, more ports than read_scoped asks for one by one (the
RTM_GETVLAN dump of every table) and an isolated port.
"""

import pytest
from test_rtnl import build

from virtvlan.host import rtnl, scoped
from virtvlan.model import Scope, Snapshot
from virtvlan.plan.scope import FULL, restrict

MANY = 20  # ports of brt: more than scoped._TABLES_ONE_BY_ONE


def filtering_bridge(ns) -> None:
    """brt (vlan_filtering 1) with MANY veth ports: t0 tagged 10-20 with
    PVID 9 untagged, t1 isolated with 5 and 7, the others the default; brt
    self entries 5 and 7; brt.5 a VLAN device on it."""
    ns.ip("link", "add", "brt", "type", "bridge", "vlan_filtering", "1")
    for n in range(MANY):
        ns.ip("link", "add", "t%d" % n, "type", "veth", "peer", "name", "t%dp" % n)
        ns.ip("link", "set", "t%d" % n, "master", "brt")
    ns.ip("link", "set", "brt", "up")
    # Via `bridge`: the runs and flags as the kernel stores them.
    import subprocess

    def bridge(*args: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns.name, "bridge"] + list(args), check=True)
    bridge("vlan", "add", "dev", "t0", "vid", "10-20")
    bridge("vlan", "add", "dev", "t0", "vid", "9", "pvid", "untagged")
    bridge("vlan", "add", "dev", "t1", "vid", "5")
    bridge("vlan", "add", "dev", "t1", "vid", "7")
    bridge("vlan", "add", "dev", "t2", "vid", "1", "pvid", "untagged")
    bridge("vlan", "add", "dev", "t2", "vid", "2-4", "untagged")
    bridge("vlan", "add", "dev", "brt", "vid", "5", "self")
    bridge("vlan", "add", "dev", "brt", "vid", "7", "self")
    ns.ip("link", "set", "t1", "type", "bridge_slave", "isolated", "on")
    ns.ip("link", "add", "link", "brt", "name", "brt.5", "type", "vlan", "id", "5")


def in_index_order(snap: Snapshot) -> Snapshot:
    return Snapshot(tuple(sorted(snap.links, key=lambda link: link.index)), snap.routes,
                    snap.filters)


def check(ns, scope: Scope) -> Snapshot:
    got = scoped.read_scoped(scope, ns.name)
    want = restrict(rtnl.read_snapshot(ns.name), scope)
    assert got == (want if scope.full else in_index_order(want))
    return got


SCOPES = [
    # A trunk call: uplink with addresses and routes, its bridge and ports,
    # VLAN devices of the uplink, the bridge and the tap; a missing name.
    Scope(names=frozenset({"h0", "br0", "tap0", "nope"}), port_sets=frozenset({"br0"}),
          vlan_parents=frozenset({"h0", "br0", "u1", "tap0"}), routes_of=frozenset({"h0"})),
    # An access call: bridge, feed, tap.
    Scope(names=frozenset({"br07", "br0.7", "u0"}), port_sets=frozenset({"br07"}),
          vlan_parents=frozenset({"br0.7", "br0"})),
    # Two route devices: the routes of both, in the full read's order.
    Scope(names=frozenset({"tun0"}), routes_of=frozenset({"h0", "br0"})),
    # A VLAN device whose lower device lives in another namespace.
    Scope(names=frozenset({"p0.9", "u1.5"})),
    Scope(),
    FULL,
]


@pytest.mark.parametrize("vlans", [False, True], ids=["plain", "vlans"])
def test_read_scoped_equals_the_full_read_cut_to_the_scope(netns, netns2, vlans, request):
    if vlans:
        request.getfixturevalue("vlan_support")
    build(netns, netns2, vlans)
    for scope in SCOPES:
        check(netns, scope)
    got = check(netns, SCOPES[0])
    assert got.get("nope") is None
    assert {link.name for link in got} >= {"h0", "br0", "u0", "tap0"}
    assert got.get("h0").addresses and got.routes
    assert got.get("u0").addresses == ()
    if vlans:
        # A VLAN device of a VLAN parent: read without its VLAN table.
        assert got.get("u1.5").vlan_id == 5 and got.get("u1.5").parent == "u1"
        assert got.get("br0.7").vlans is None


def test_vlan_tables_of_a_filtering_bridge(netns, netns2, vlan_support):
    build(netns, netns2, True)
    filtering_bridge(netns)
    few = Scope(names=frozenset({"brt", "t0", "t1", "t2"}), vlan_parents=frozenset({"brt"}))
    many = Scope(names=frozenset({"brt"}), port_sets=frozenset({"brt"}),
                 vlan_parents=frozenset({"brt"}))
    for scope in (few, many, FULL):
        check(netns, scope)
    snap = check(netns, many)
    t0, t1, t2, brt = (snap.get(name) for name in ("t0", "t1", "t2", "brt"))
    assert t0.vlans.tagged == frozenset(range(10, 21))
    # The default PVID's entry stays untagged; the PVID moved to 9.
    assert (t0.vlans.untagged, t0.vlans.pvid) == ({1, 9}, 9)
    assert t1.isolated and not t0.isolated and brt.isolated is None
    assert t1.vlans.tagged >= {5, 7}
    assert (t2.vlans.untagged, t2.vlans.pvid) == ({1, 2, 3, 4}, 1)
    assert brt.vlans.tagged >= {5, 7} and brt.vlan_filtering
    assert snap.get("brt.5").vlans is None and snap.get("brt.5").parent == "brt"
    assert len(snap.ports("brt")) == MANY
