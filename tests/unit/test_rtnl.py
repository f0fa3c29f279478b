"""rtnl's parsing on hand-built netlink messages (no kernel needed).

The byte strings are built here with struct from the layouts in
linux/netlink.h, rtnetlink.h and if_link.h; tests/kernel/test_rtnl.py checks
the same code against a real kernel, pyroute2 and `ip -json`.
"""

import errno
import itertools
import socket
import struct
import uuid
from typing import Callable, List

import pytest

from virtvlan.host import rtnl
from virtvlan.errors import ApplyError
from virtvlan.model import MANAGED_ALIAS, Address, Link, PortVlans, Route

NLA_F_NESTED = 0x8000
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 20, 24


def nla(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes (the padding is not in its length)."""
    head = struct.pack("=HH", 4 + len(payload), kind)
    return head + payload + b"\0" * (-len(payload) % 4)


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def nlmsg(kind: int, payload: bytes, seq: int = 7, flags: int = 2) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload


def done(seq: int = 7, code: int = 0, flags: int = 2) -> bytes:
    return nlmsg(3, struct.pack("=i", code), seq, flags)


def link(index: int, name: str, *attrs: bytes, flags: int = 0x1) -> bytes:
    return (struct.pack("=BxHiII", 0, 1, index, flags, 0)
            + nla(3, name.encode() + b"\0") + b"".join(attrs))


def addr(family: int, prefixlen: int, index: int, *attrs: bytes, flags: int = 0x80,
         scope: int = 0) -> bytes:
    return struct.pack("=BBBBI", family, prefixlen, flags, scope, index) + b"".join(attrs)


def route(family: int, dst_len: int, *attrs: bytes, table: int = 254, proto: int = 4,
          scope: int = 0, kind: int = 1, src_len: int = 0) -> bytes:
    return struct.pack("=BBBBBBBBI", family, dst_len, src_len, 0, table, proto, scope,
                       kind, 0) + b"".join(attrs)


def ip(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


VLAN_LINKINFO = nla(18 | NLA_F_NESTED, nla(1, b"vlan\0")
                    + nla(2 | NLA_F_NESTED, nla(1, struct.pack("=H", 5))))


def test_attributes_are_aligned_unnested_and_first_wins():
    data = nla(3, b"eth0\0") + nla(4, u32(9000)) + nla(4, u32(1)) + nla(18 | NLA_F_NESTED, b"")
    assert rtnl.attributes(data) == {3: b"eth0\0", 4: u32(9000), 18: b""}


def test_vlan_link_with_nested_linkinfo():
    payload = link(8, "eth0.5", nla(4, u32(1496)), nla(5, u32(2)), nla(10, u32(9)),
                   nla(1, bytes.fromhex("525400AB0C0D")), nla(20, MANAGED_ALIAS.encode()),
                   VLAN_LINKINFO)
    names = {2: "eth0", 8: "eth0.5", 9: "br05"}
    mine = (Address("inet", "10.5.0.2", 24),)
    assert rtnl.parse_link(payload, names, mine) == Link(
        name="eth0.5", kind="vlan", index=8, master="br05", vlan_id=5, parent="eth0",
        mtu=1496, up=True, managed=True, mac="52:54:00:ab:0c:0d", addresses=mine)


def test_vlan_on_a_device_in_another_namespace_has_no_parent():
    payload = link(8, "eth0.5", nla(5, u32(2)), nla(37, struct.pack("=i", 0)), VLAN_LINKINFO)
    got = rtnl.parse_link(payload, {2: "eth0"}, ())
    assert (got.vlan_id, got.parent) == (5, None)


def test_plain_device_down_without_alias():
    payload = link(3, "eth1", nla(4, u32(1500)), nla(10, u32(0)), nla(20, b"uplink\0"),
                   flags=0x1002)  # IFF_BROADCAST | IFF_MULTICAST, not IFF_UP
    assert rtnl.parse_link(payload, {3: "eth1"}, ()) == Link(
        name="eth1", kind="device", index=3, mtu=1500, up=False, managed=False, mac="")
    assert rtnl.link_name(payload) == (3, "eth1")


def test_multipart_datagram_with_two_messages_then_done():
    first, second = link(1, "lo"), link(2, "eth0")
    data = (nlmsg(RTM_NEWLINK, first) + nlmsg(RTM_NEWLINK, link(9, "stale"), seq=3)
            + nlmsg(RTM_NEWLINK, second) + done())
    assert rtnl.split_messages(data, 7, "links") == ([first, second], True, False)
    # Without NLMSG_DONE the dump goes on in the next datagram.
    assert rtnl.split_messages(nlmsg(RTM_NEWLINK, first), 7, "links") == ([first], False, False)


def test_dump_interrupted_flag_is_reported():
    data = nlmsg(RTM_NEWLINK, link(1, "lo"), flags=2 | 0x10) + done()
    assert rtnl.split_messages(data, 7, "links")[1:] == (True, True)


@pytest.mark.parametrize("kind", [2, 3])  # NLMSG_ERROR, and NLMSG_DONE of a failed dump
def test_error_names_the_errno(kind):
    data = nlmsg(kind, struct.pack("=i", -errno.EPERM) + b"\0" * 16)
    with pytest.raises(ApplyError, match=r"dump of links failed: EPERM \(Operation not "
                                         r"permitted\)$"):
        rtnl.split_messages(data, 7, "links")


def test_malformed_length_is_an_error_not_a_loop():
    with pytest.raises(ApplyError, match="malformed"):
        rtnl.split_messages(struct.pack("=IHHII", 8, 16, 2, 7, 0), 7, "links")


def test_ipv6_address_is_compressed_and_permanent_comes_from_ifa_flags():
    payload = addr(socket.AF_INET6, 64, 4, nla(1, ip("2001:db8:0:0:0:0:0:10")),
                   nla(8, u32(0x80 | 0x100)), flags=0)  # ifa_flags says dynamic: ignored
    assert rtnl.parse_address(payload) == (4, Address("inet6", "2001:db8::10", 64))
    dynamic = addr(socket.AF_INET6, 64, 4, nla(1, ip("2001:db8::11")), nla(8, u32(0)))
    assert rtnl.parse_address(dynamic)[1].dynamic is True


def test_ipv4_address_prefers_ifa_local_and_keeps_broadcast():
    payload = addr(socket.AF_INET, 24, 2, nla(1, ip("10.0.0.9")), nla(2, ip("10.0.0.1")),
                   nla(4, ip("10.0.0.255")), flags=0)  # no IFA_FLAGS: ifa_flags counts
    assert rtnl.parse_address(payload) == (2, Address(
        "inet", "10.0.0.1", 24, dynamic=True, broadcast="10.0.0.255"))


def test_link_local_and_foreign_family_addresses_are_skipped():
    assert rtnl.parse_address(addr(socket.AF_INET6, 64, 2, nla(1, ip("fe80::1")),
                                   scope=253)) is None
    assert rtnl.parse_address(addr(socket.AF_INET6, 64, 2, nla(1, ip("fec0::1")))) is not None
    assert rtnl.parse_address(addr(44, 8, 2, nla(1, b"\x07"))) is None


def test_route_table_from_rta_table():
    payload = route(socket.AF_INET, 24, nla(15, u32(1000)), nla(1, ip("203.0.113.0")),
                    nla(4, u32(2)), nla(5, ip("192.0.2.1")), nla(6, u32(50)),
                    nla(7, ip("192.0.2.10")), table=252, proto=3, scope=0)
    assert rtnl.parse_route(payload, {2: "h0"}) == Route(
        "inet", "203.0.113.0/24", "h0", gateway="192.0.2.1", metric=50, table=1000,
        proto="boot", prefsrc="192.0.2.10")


def test_ipv6_default_route():
    payload = route(socket.AF_INET6, 0, nla(4, u32(2)), nla(5, ip("2001:db8::1")),
                    nla(6, u32(1024)), proto=4)
    assert rtnl.parse_route(payload, {2: "h0"}) == Route(
        "inet6", "default", "h0", gateway="2001:db8::1", metric=1024, proto="static")


OIF = nla(4, u32(2))


@pytest.mark.parametrize("payload", [
    route(socket.AF_INET, 24, nla(1, ip("10.0.0.0")), OIF, proto=2),  # proto kernel
    route(socket.AF_INET, 32, nla(1, ip("10.0.0.1")), OIF, nla(15, u32(255)), table=255,
          kind=2),  # local table
    route(socket.AF_INET, 16, nla(1, ip("10.1.0.0")), OIF, kind=6),  # blackhole
    route(socket.AF_INET, 16, nla(1, ip("10.2.0.0")), nla(9, b"\0" * 16)),  # multipath
    route(socket.AF_INET, 16, nla(1, ip("10.3.0.0")), nla(4, u32(99))),  # unknown device
    route(socket.AF_INET, 16, nla(1, ip("10.4.0.0")), OIF, nla(18, b"\x0a\x00" + b"\0" * 16)),
    route(socket.AF_INET, 16, nla(1, ip("10.5.0.0")), OIF, nla(30, u32(1))),  # nexthop id
    route(socket.AF_INET, 16, nla(1, ip("10.6.0.0")), OIF, src_len=8),
    route(socket.AF_INET6, 64, nla(1, ip("fe80::")), OIF, proto=3),
    route(socket.AF_INET6, 8, nla(1, ip("ff00::")), OIF, proto=3),
], ids=["kernel", "local", "blackhole", "multipath", "oif", "via", "nhid", "src", "fe80",
        "mcast"])
def test_routes_that_are_not_rehomed(payload):
    assert rtnl.parse_route(payload, {2: "h0"}) is None


def test_ipv6_route_near_link_local_is_kept():
    payload = route(socket.AF_INET6, 9, nla(1, ip("fe00::")), OIF)  # fe00::/9 contains fe80::/10
    assert rtnl.parse_route(payload, {2: "h0"}).dst == "fe00::/9"


def test_build_snapshot_joins_by_index():
    links = [link(1, "lo"), link(2, "h0", nla(10, u32(3))), link(3, "br0")]
    addrs = [addr(socket.AF_INET, 24, 2, nla(2, ip("10.0.0.1"))),
             addr(socket.AF_INET6, 64, 2, nla(1, ip("fe80::1")))]
    routes = [route(socket.AF_INET, 0, nla(4, u32(3)), nla(5, ip("10.0.0.254")))]
    snap = rtnl.build_snapshot(links, addrs, routes)
    assert [l.name for l in snap] == ["lo", "h0", "br0"]
    assert snap.get("h0").master == "br0"
    assert snap.get("h0").addresses == (Address("inet", "10.0.0.1", 24),)
    assert snap.routes == (Route("inet", "default", "br0", gateway="10.0.0.254"),)


BRIDGE_DUMP = 1018  # FakeSocket's name for RTM_GETLINK with family AF_BRIDGE


class FakeSocket:
    """Answers each dump request with what `answer(kind, seq, attempt)` says,
    one datagram per recv, honouring MSG_PEEK and MSG_TRUNC like netlink.
    The AF_BRIDGE link dump is told apart as kind BRIDGE_DUMP."""

    def __init__(self, answer: Callable[[int, int, int], List[bytes]]) -> None:
        self.answer, self.queue, self.requests = answer, [], []  # type: ignore[var-annotated]

    def send(self, data: bytes) -> int:
        _length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", data)
        assert flags == 0x301  # NLM_F_REQUEST | NLM_F_DUMP
        if kind == 18 and data[16] == 7:  # ifi_family AF_BRIDGE
            assert data[32:40] == struct.pack("=HHI", 8, 29, 4)  # IFLA_EXT_MASK: compressed
            kind = BRIDGE_DUMP
        self.requests.append(kind)
        self.queue.extend(self.answer(kind, seq, self.requests.count(18)))
        return len(data)

    def recv_into(self, buf: bytearray, nbytes: int = 0, flags: int = 0) -> int:
        datagram = self.queue[0] if flags & socket.MSG_PEEK else self.queue.pop(0)
        size = min(len(datagram), len(buf))
        buf[:size] = datagram[:size]
        return len(datagram) if flags & socket.MSG_TRUNC else size


@pytest.fixture
def pauses(monkeypatch) -> List[float]:
    """The pauses _read takes between retries (recorded, not slept)."""
    taken: List[float] = []
    monkeypatch.setattr(rtnl.time, "sleep", taken.append)
    return taken


def test_only_the_interrupted_dump_is_repeated_and_big_datagrams_are_read(pauses):
    def answer(kind: int, seq: int, attempt: int) -> List[bytes]:
        if kind != 18:
            return [done(seq)]
        if attempt == 1:  # NLM_F_MULTI | NLM_F_DUMP_INTR: links changed under the dump
            return [nlmsg(RTM_NEWLINK, link(1, "old"), seq=seq, flags=0x12) + done(seq)]
        big = b"".join(nlmsg(RTM_NEWLINK, link(i, "d%d" % i), seq=seq) for i in range(1, 3000))
        assert len(big) > 2 * 65536  # more than the first receive buffer
        return [big, done(seq)]

    sock = FakeSocket(answer)
    snap = rtnl._read(sock)  # type: ignore[arg-type]
    assert sock.requests == [18, 18, 22, 26, 26, BRIDGE_DUMP]
    assert pauses == [0.001]
    assert [l.name for l in snap][::1000] == ["d1", "d1001", "d2001"]
    assert len(snap.links) == 2999 and snap.links[-1].name == "d2999"


def test_a_device_newer_than_the_link_dump_repeats_all_four(pauses):
    def answer(kind: int, seq: int, attempt: int) -> List[bytes]:
        if kind == 18:  # device 7 is created right after the first link dump
            found = [link(i, "d%d" % i) for i in ([1] if attempt == 1 else [1, 7])]
        elif kind == 22:
            found = [addr(socket.AF_INET, 24, i, nla(2, ip("10.0.0.%d" % i))) for i in (1, 7)]
        else:
            found = []
        kind = RTM_NEWLINK if kind == BRIDGE_DUMP else kind - 2
        return [b"".join(nlmsg(kind, payload, seq=seq) for payload in found) + done(seq)]

    sock = FakeSocket(answer)
    snap = rtnl._read(sock)  # type: ignore[arg-type]
    assert sock.requests == [18, 22, 26, 26, BRIDGE_DUMP] * 2
    assert snap.get("d7").addresses == (Address("inet", "10.0.0.7", 24),)
    assert pauses == [0.001]


def test_unknown_indexes_of_addresses_and_routes():
    links = [link(1, "lo"), link(2, "eth0")]
    addrs = [addr(socket.AF_INET, 24, 2, nla(2, ip("10.0.0.1"))),
             addr(socket.AF_INET, 24, 9, nla(2, ip("10.0.9.1")))]
    routes = [route(socket.AF_INET, 0, nla(4, u32(5))),
              route(socket.AF_INET, 8, nla(1, ip("10.0.0.0")))]  # multipath: no RTA_OIF
    assert rtnl.unknown_indexes(links, addrs, routes) == {5, 9}
    assert rtnl.unknown_indexes(links, addrs[:1], routes[1:]) == set()


def test_endless_interruptions_give_up_after_the_budget(pauses, monkeypatch):
    ticks = itertools.count()  # 0.2 s pass per look at the clock
    monkeypatch.setattr(rtnl.time, "monotonic", lambda: next(ticks) * 0.2)

    def answer(kind: int, seq: int, attempt: int) -> List[bytes]:
        return [nlmsg(kind - 2, link(1, "lo"), seq=seq, flags=0x12) + done(seq)]

    sock = FakeSocket(answer)
    with pytest.raises(ApplyError, match=r"^netlink dumps kept changing under the read for 5 s "
                                         r"\(26 retries, last: links dump interrupted by a "
                                         r"change\); retry when the network configuration "
                                         r"settles$"):
        rtnl._read(sock)  # type: ignore[arg-type]
    assert set(sock.requests) == {18}  # never got past an interrupted link dump
    # The pause doubles from 1 ms and stops growing at 50 ms.
    assert pauses[:7] == [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05]
    assert set(pauses[6:]) == {0.05} and len(pauses) == 25


def test_missing_netns_is_named():
    name = "vvt-missing-%s" % uuid.uuid4().hex[:8]
    with pytest.raises(ApplyError, match="network namespace %s does not exist" % name):
        rtnl.read_snapshot(name)


# --- bridge options and VLAN tables -----------------------------------------


def bridge_info(*data: bytes) -> bytes:
    """IFLA_LINKINFO {KIND "bridge", DATA {data}}."""
    return nla(18 | NLA_F_NESTED, nla(1, b"bridge\0") + nla(2 | NLA_F_NESTED, b"".join(data)))


def vinfo(flags: int, vid: int) -> bytes:
    return nla(2, struct.pack("=HH", flags, vid))  # IFLA_BRIDGE_VLAN_INFO


def bridge_msg(index: int, name: str, master: int, *entries: bytes) -> bytes:
    """An AF_BRIDGE RTM_NEWLINK as br_fill_ifinfo builds it."""
    head = struct.pack("=BxHiII", 7, 1, index, 0x1, 0) + nla(3, name.encode() + b"\0")
    head += nla(10, u32(master))
    if entries:
        head += nla(26 | NLA_F_NESTED, b"".join(entries))  # IFLA_AF_SPEC
    return head


def test_bridge_options_are_read_from_info_data():
    payload = link(4, "br0", bridge_info(nla(5, u32(1)), nla(7, b"\1"), nla(36, b"\1"),
                                         nla(39, struct.pack("=H", 11))))
    got = rtnl.parse_link(payload, {}, ())
    assert (got.vlan_filtering, got.default_pvid, got.stp, got.nf_call) == (True, 11, True, True)


def test_bridge_without_vlan_support_has_no_default_pvid():
    # CONFIG_BRIDGE_VLAN_FILTERING off: IFLA_BR_VLAN_DEFAULT_PVID is not sent.
    got = rtnl.parse_link(link(4, "br0", bridge_info(nla(5, u32(0)), nla(7, b"\0"))), {}, ())
    assert (got.vlan_filtering, got.default_pvid, got.stp, got.nf_call) == (False, 0, False, False)


def test_compressed_vlan_ranges_are_expanded():
    # 1 PVID untagged, 2-4094 as a RANGE_BEGIN/RANGE_END pair, tagged.
    payload = bridge_msg(5, "vnet0", 4, vinfo(0x6, 1), vinfo(0x8, 2), vinfo(0x10, 4094))
    index, master, vlans = rtnl.parse_port_vlans(payload)
    assert (index, master) == (5, 4)
    assert vlans == PortVlans(tagged=frozenset(range(2, 4095)), untagged=frozenset({1}), pvid=1)


def test_native_and_untagged_ranges_keep_their_flags():
    payload = bridge_msg(5, "vnet0", 4, vinfo(0x4 | 0x8, 20), vinfo(0x4 | 0x10, 22),
                         vinfo(0x6, 9), vinfo(0, 5), vinfo(0, 7))
    assert rtnl.parse_port_vlans(payload)[2] == PortVlans(
        tagged=frozenset({5, 7}), untagged=frozenset({9, 20, 21, 22}), pvid=9)


def test_snapshot_gives_tables_to_bridges_and_their_ports_only():
    links = [link(4, "br0", bridge_info(nla(7, b"\1"), nla(39, struct.pack("=H", 1)))),
             link(5, "vnet0", nla(10, u32(4))),
             link(6, "eth0", nla(10, u32(4))),
             link(7, "eth9")]
    bridges = [bridge_msg(4, "br0", 4, vinfo(0x6, 1), vinfo(0, 10)),  # self entries
               bridge_msg(5, "vnet0", 4, vinfo(0x8, 5), vinfo(0x10, 7)),
               bridge_msg(6, "eth0", 4)]  # a port without entries: no IFLA_AF_SPEC
    snap = rtnl.build_snapshot(links, [], [], bridges)
    assert snap.get("br0").vlans == PortVlans(frozenset({10}), frozenset({1}), 1)
    assert snap.get("vnet0").vlans == PortVlans(tagged=frozenset({5, 6, 7}))
    assert snap.get("eth0").vlans == PortVlans()
    assert snap.get("eth9").vlans is None
    # Without the AF_BRIDGE dump nothing is known.
    assert rtnl.build_snapshot(links, [], []).get("vnet0").vlans is None


def test_a_port_that_changed_bridge_between_dumps_is_noticed():
    links = [link(4, "br0", bridge_info()), link(8, "br1", bridge_info()),
             link(5, "vnet0", nla(10, u32(4)))]
    assert rtnl.moved_ports(links, [bridge_msg(5, "vnet0", 4), bridge_msg(4, "br0", 4)]) == set()
    assert rtnl.moved_ports(links, [bridge_msg(5, "vnet0", 8)]) == {5}
    assert rtnl.unknown_indexes(links, [], [], (bridge_msg(9, "vnet9", 4),)) == {9}


# --- parsing only what a Snapshot uses ----------------------------------------


def test_wanted_attributes_only_and_first_still_wins():
    data = nla(3, b"eth0\0") + nla(4, u32(9000)) + nla(4, u32(1)) + nla(7, u32(2))
    assert rtnl.attributes(data, 0, frozenset({4, 99})) == {4: u32(9000)}
    assert rtnl.attributes(data, 0, frozenset()) == {}


# What a kernel puts around the attributes we use (rtnl_fill_ifinfo): the
# queue length, operstate, statistics, per-family settings; some of them use
# numbers that are meaningful inside IFLA_LINKINFO (1, 2), a trap for a
# parser that looked them up at the wrong level.
NOISE = (nla(13, u32(1000)) + nla(16, b"\6") + nla(23, b"\0" * 192) + nla(7, b"\0" * 24)
         + nla(26 | NLA_F_NESTED, nla(2, b"\0" * 700) + nla(10, b"\0" * 900))
         + nla(2, b"\xff" * 6))  # IFLA_BROADCAST


def test_a_busy_link_message_gives_the_same_snapshot_as_a_lean_one():
    def links(noise: bytes) -> List[bytes]:
        return [link(4, "br0", noise, bridge_info(nla(7, b"\1"), nla(39, struct.pack("=H", 1)))),
                link(5, "vnet0", noise, nla(10, u32(4)), nla(1, b"\x52\x54\0\0\0\1"),
                     nla(20, MANAGED_ALIAS.encode())),
                link(6, "br0.5", noise, nla(5, u32(4)), VLAN_LINKINFO, nla(4, u32(1496)))]
    bridges = [bridge_msg(4, "br0", 4, vinfo(0x6, 1)), bridge_msg(5, "vnet0", 4, vinfo(0, 5))]
    lean = rtnl.build_snapshot(links(b""), [], [], bridges)
    busy = rtnl.build_snapshot(links(NOISE), [], [], bridges)
    assert busy == lean
    # Not vacuous: the lean snapshot has what the noise sits around.
    assert lean.get("vnet0") == Link(name="vnet0", kind="device", index=5, master="br0",
                                     managed=True, mac="52:54:00:00:00:01", mtu=0,
                                     vlans=PortVlans(tagged=frozenset({5})))
    assert (lean.get("br0.5").parent, lean.get("br0.5").vlan_id,
            lean.get("br0.5").mtu) == ("br0", 5, 1496)


def test_compact_link_keeps_what_a_link_is_made_of_and_drops_the_rest():
    stats = nla(7, b"\1" * 200)  # IFLA_STATS and such: not part of a Link
    payload = link(8, "eth0.5", stats, nla(4, u32(1496)), nla(5, u32(2)), nla(10, u32(9)),
                   nla(26 | NLA_F_NESTED, b"\2" * 64), nla(20, MANAGED_ALIAS.encode()),
                   VLAN_LINKINFO)
    small = rtnl.compact_link(payload)
    names = {2: "eth0", 9: "br05"}
    assert len(small) < len(payload) - 250
    assert rtnl.parse_link(small, names, ()) == rtnl.parse_link(payload, names, ())
    assert rtnl.link_refs(small) == (8, "eth0.5", "vlan", 9, 2, True)


def test_a_bridge_port_flag_comes_in_its_link_message_too():
    slave = nla(18 | NLA_F_NESTED, nla(4, b"bridge\0") + nla(5 | NLA_F_NESTED, nla(33, b"\1")))
    assert rtnl.slave_isolated(link(4, "t0", slave)) is True
    plain = nla(18 | NLA_F_NESTED, nla(4, b"bridge\0") + nla(5 | NLA_F_NESTED, nla(8, b"\1")))
    assert rtnl.slave_isolated(link(4, "t0", plain)) is False
    bond = nla(18 | NLA_F_NESTED, nla(4, b"bond\0"))
    assert rtnl.slave_isolated(link(4, "t0", bond)) is None
    assert rtnl.slave_isolated(link(4, "t0")) is None
