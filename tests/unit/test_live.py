"""The live host model's pure parts (host/live.py): RTM_NEWVLAN/DELVLAN
payloads, VLAN table updates, route identity, the consistency diff. The
model itself runs against a real kernel in tests/kernel/test_live.py."""

import socket
import struct

from virtvlan.host import scoped
from virtvlan.host.live import apply_vlan_change, differences, route_key
from virtvlan.host.nlconst import (BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED,
                                   RTM_DELVLAN, RTM_NEWVLAN, RTMSG)
from virtvlan.model import Address, Link, PortVlans, Route, Snapshot


def attr(kind: int, data: bytes) -> bytes:
    size = 4 + len(data)
    return struct.pack("=HH", size, kind) + data + b"\0" * (-size % 4)


def vlan_msg(index: int, *entries: tuple) -> bytes:
    body = b""
    for flags, vid, last in entries:
        inner = attr(1, struct.pack("=HH", flags, vid))
        if last is not None:
            inner += attr(2, struct.pack("=H", last))
        body += attr(1 | 0x8000, inner)  # BRIDGE_VLANDB_ENTRY, NLA_F_NESTED
    return struct.pack("=BBHI", 7, 0, 0, index) + body


def test_vlan_entries_with_and_without_ranges():
    payload = vlan_msg(9, (0, 10, 20), (BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED, 5, None))
    assert scoped.parse_vlan_entries(payload) == (9, [(0, 10, 20), (6, 5, 5)])


def test_vlan_changes_update_the_table():
    table = PortVlans(frozenset({1}), frozenset(), None)
    table = apply_vlan_change(table, RTM_NEWVLAN, 0, 10, 12)
    table = apply_vlan_change(table, RTM_NEWVLAN,
                              BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED, 30, 30)
    assert table == PortVlans(frozenset({1, 10, 11, 12}), frozenset({30}), 30)
    # Re-adding 30 tagged without PVID: it moves to tagged and is no PVID.
    moved = apply_vlan_change(table, RTM_NEWVLAN, 0, 30, 30)
    assert moved == PortVlans(frozenset({1, 10, 11, 12, 30}), frozenset(), None)
    gone = apply_vlan_change(table, RTM_DELVLAN, 0, 11, 30)
    assert gone == PortVlans(frozenset({1, 10}), frozenset(), None)


def route(dst: bytes, oif: int, gateway: bytes = b"", prefsrc: bytes = b"") -> bytes:
    body = attr(1, dst) + attr(4, struct.pack("=I", oif)) + attr(15, struct.pack("=I", 254))
    if gateway:
        body += attr(5, gateway)
    if prefsrc:
        body += attr(7, prefsrc)
    return RTMSG.pack(socket.AF_INET, 24, 0, 0, 254, 4, 0, 1, 0) + body


def test_route_identity_ignores_the_preferred_source_but_keeps_the_gateway():
    net = socket.inet_aton("203.0.113.0")
    one = route(net, 3, socket.inet_aton("192.0.2.1"), socket.inet_aton("192.0.2.10"))
    key, oif, prefsrc = route_key(one)
    assert (oif, prefsrc) == (3, socket.inet_aton("192.0.2.10"))
    assert route_key(route(net, 3, socket.inet_aton("192.0.2.1")))[0] == key
    assert route_key(route(net, 3, socket.inet_aton("192.0.2.2")))[0] != key
    assert route_key(route(net, 4, socket.inet_aton("192.0.2.1")))[0] != key


def test_differences_name_each_field_and_ignore_order_of_sets():
    a4 = Address("inet", "192.0.2.10", 24)
    a6 = Address("inet6", "2001:db8::1", 64)
    r = Route("inet", "default", "br0", "192.0.2.1")
    host = Snapshot(links=(Link("br0", "bridge", 2, addresses=(a4, a6)), Link("t0", "tun", 3)),
                    routes=(r,))
    same = Snapshot(links=(Link("t0", "tun", 3), Link("br0", "bridge", 2, addresses=(a6, a4))),
                    routes=(r,))
    assert differences(same, host) == []
    drifted = Snapshot(links=(Link("br0", "bridge", 2, mtu=1400), Link("x9", "veth", 9)))
    found = differences(drifted, host)
    assert "br0 has mtu=1400 in the model, 1500 on the host" in found
    assert any(line.startswith("br0 has addresses=") for line in found)
    assert "t0 (ifindex 3) is missing" in found
    assert "x9 is in the model but not on the host" in found
    assert any(line.startswith("route default") and line.endswith("is missing") for line in found)
