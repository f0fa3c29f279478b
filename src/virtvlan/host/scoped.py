"""The scoped read: only the part of the host a plan looks at.

A hook alone reads what plan.scope.scope_for() names instead of the whole
host (rtnl.read_snapshot): per-name link requests, link dumps filtered in
the kernel by master and by kind, addresses and routes of single devices,
and per-device bridge VLAN tables (RTM_GETVLAN, Linux 5.8+). The live host
model reads a new bridge's table the same way. read_scoped() equals the
full read cut to the scope (tests/kernel/test_scope.py).
"""

# _socket, not socket: the hook's import cost (see rtnl.py).
import _socket
import errno
import itertools
import os
import struct
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

from virtvlan.errors import ApplyError
from virtvlan.host import rtnl
from virtvlan.host.nlconst import (
    AF_BRIDGE,
    BRIDGE_VLAN_INFO_PVID,
    BRIDGE_VLAN_INFO_UNTAGGED,
    BRIDGE_VLANDB_ENTRY,
    BRIDGE_VLANDB_ENTRY_INFO,
    BRIDGE_VLANDB_ENTRY_RANGE,
    BR_VLAN_MSG,
    BUFSIZE,
    IFADDRMSG,
    IFINFOMSG,
    IFLA_EXT_MASK,
    IFLA_IFNAME,
    IFLA_INFO_KIND,
    IFLA_LINK,
    IFLA_LINKINFO,
    IFLA_LINK_NETNSID,
    IFLA_MASTER,
    NETLINK_GET_STRICT_CHK,
    NLMSGHDR,
    NLMSG_ERROR,
    NLM_F_REQUEST,
    RTATTR,
    RTA_OIF,
    RTEXT_FILTER_SKIP_STATS,
    RTMSG,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_GETVLAN,
    SOL_NETLINK,
)
from virtvlan.model import Address, PortVlans, Scope, Snapshot

# Up to this many VLAN tables are asked for one device at a time; more (the
# ports of a busy trunk bridge) come from one dump of every table.
_TABLES_ONE_BY_ONE = 16
# Exists in every namespace while the 8021q module is loaded (vlan_proc_init,
# per namespace). Without the module no VLAN device can exist, and a link
# dump filtered by kind "vlan" would not be filtered at all: the kernel
# ignores a kind it has no rtnl_link_ops for (linkinfo_to_kind_ops).
_VLAN_PROC = "/proc/net/vlan"


def _attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    return RTATTR.pack(RTATTR.size + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


_SKIP_STATS = _attr(IFLA_EXT_MASK, struct.pack("=I", RTEXT_FILTER_SKIP_STATS))
_VLAN_KIND = _attr(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"vlan\0"))


def parse_vlan_entries(payload: bytes) -> Tuple[int, List[Tuple[int, int, int]]]:
    """(ifindex, [(flags, first VID, last VID), ...]) of one RTM_NEWVLAN
    payload (a dump reply, or an RTNLGRP_BRVLAN event), in message order.

    Each BRIDGE_VLANDB_ENTRY holds ENTRY_INFO (struct bridge_vlan_info:
    flags, VID) and, for a run of VIDs with the same flags, ENTRY_RANGE (the
    last VID). The kernel starts a run at the PVID (br_vlan_dump_dev), so a
    run flagged BRIDGE_VLAN_INFO_PVID has the PVID as its first VID."""
    index = BR_VLAN_MSG.unpack_from(payload)[3]
    entries: List[Tuple[int, int, int]] = []
    for kind, data in rtnl.attribute_list(payload, BR_VLAN_MSG.size):
        if kind != BRIDGE_VLANDB_ENTRY:
            continue
        attrs = rtnl.attributes(data)
        info = attrs.get(BRIDGE_VLANDB_ENTRY_INFO)
        if info is None or len(info) < 4:
            continue
        flags, vid = struct.unpack_from("=HH", info)
        last = attrs.get(BRIDGE_VLANDB_ENTRY_RANGE)
        entries.append((flags, vid, struct.unpack_from("=H", last)[0] if last else vid))
    return index, entries


def vlan_table(entries: Sequence[Tuple[int, int, int]]) -> PortVlans:
    """The PortVlans of parse_vlan_entries' entries."""
    tagged: Set[int] = set()
    untagged: Set[int] = set()
    pvid: Optional[int] = None
    for flags, first, last in entries:
        (untagged if flags & BRIDGE_VLAN_INFO_UNTAGGED else tagged).update(range(first, last + 1))
        if flags & BRIDGE_VLAN_INFO_PVID:
            pvid = first
    return PortVlans(frozenset(tagged), frozenset(untagged), pvid)


def _isolated(msg: rtnl.LinkMsg) -> Optional[bool]:
    """A bridge port's `isolated` flag from its own link message (the port
    options in IFLA_LINKINFO, as the AF_BRIDGE dump has them in
    IFLA_PROTINFO); None when it is not a bridge port."""
    return rtnl.linkinfo_isolated(msg.attrs.get(IFLA_LINKINFO, b""))


def read_vlan_tables(sock: _socket.socket, indexes: Sequence[int]) -> Dict[int, PortVlans]:
    """The bridge VLAN tables of the bridges and bridge ports `indexes`, as
    read_scoped reads them (RTM_GETVLAN per device; one dump above
    _TABLES_ONE_BY_ONE devices), on `sock`."""
    sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
    return _Scoped(sock).tables(indexes)


class _Scoped:
    """One scoped read on one socket (read_scoped)."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.seq = itertools.count(1)
        self.msgs: Dict[int, rtnl.LinkMsg] = {}  # every link message read, by ifindex
        self.by_name: Dict[str, int] = {}

    def ask(self, kind: int, body: bytes, what: str,
            absent: Tuple[int, ...] = ()) -> Optional[bytes]:
        """The one reply payload of a non-dump request; None when the
        kernel answers with an errno in `absent`."""
        seq = next(self.seq)
        self.sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, NLM_F_REQUEST, seq, 0)
                       + body)
        while True:
            data = self.sock.recv(BUFSIZE)
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                length, mtype, _flags, mseq, _pid = NLMSGHDR.unpack_from(data, offset)
                payload = data[offset + NLMSGHDR.size:offset + length]
                offset += (length + 3) & ~3
                if mseq != seq or length < NLMSGHDR.size:
                    continue
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code in absent:
                        return None
                    raise ApplyError("netlink request for %s failed: %s"
                                     % (what, rtnl.errno_name(code)))
                return payload

    def dump(self, kind: int, body: bytes, what: str) -> List[bytes]:
        """A dump's payloads, repeated while a change interrupts it."""
        pause, deadline = rtnl.PAUSE_FIRST, time.monotonic() + rtnl.DUMP_BUDGET
        while True:
            payloads, interrupted = rtnl.dump(self.sock, next(self.seq), kind, body, what)
            if not interrupted:
                return payloads
            if time.monotonic() > deadline:
                raise ApplyError("netlink dump of %s kept changing for %.0f s; retry when the "
                                 "network configuration settles" % (what, rtnl.DUMP_BUDGET))
            time.sleep(pause)
            pause = min(pause * 2, rtnl.PAUSE_MAX)

    def keep(self, payload: bytes) -> rtnl.LinkMsg:
        msg = self.msgs.setdefault(IFINFOMSG.unpack_from(payload)[2], rtnl.LinkMsg(payload))
        self.by_name[msg.name] = msg.index
        return msg

    def link(self, name: Optional[str] = None, index: int = 0) -> Optional[rtnl.LinkMsg]:
        """The link called `name` (not one that only has it as an
        alternative name), or of ifindex `index`; None when there is none."""
        if index in self.msgs:
            return self.msgs[index]
        body = IFINFOMSG.pack(0, 0, index, 0, 0) + _SKIP_STATS
        if name is not None:
            body += _attr(IFLA_IFNAME, name.encode("utf-8", "surrogateescape") + b"\0")
        # ENODEV: no such device; EINVAL/ERANGE: a name no device can have.
        payload = self.ask(RTM_GETLINK, body, "link %s" % (name or index),
                           (errno.ENODEV, errno.EINVAL, errno.ERANGE))
        if payload is None:
            return None
        msg = rtnl.LinkMsg(payload)
        if name is not None and msg.name != name:
            return None  # found by an alternative name (Linux 5.5+)
        return self.keep(payload)

    def table(self, index: int) -> PortVlans:
        """The bridge VLAN table of one bridge or bridge port."""
        try:
            found = self.dump(RTM_GETVLAN, BR_VLAN_MSG.pack(AF_BRIDGE, 0, 0, index),
                              "the VLAN table of ifindex %d" % index)
        except rtnl.DumpFailed as err:
            # No RTM_GETVLAN (a kernel without VLAN filtering: no entries
            # exist), or the device left its bridge or vanished meanwhile.
            if err.code not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
                raise
            return PortVlans()
        return vlan_table([entry for payload in found
                           for entry in parse_vlan_entries(payload)[1]])

    def tables(self, indexes: Sequence[int]) -> Dict[int, PortVlans]:
        if len(indexes) <= _TABLES_ONE_BY_ONE:
            return {index: self.table(index) for index in indexes}
        try:
            found = self.dump(RTM_GETVLAN, BR_VLAN_MSG.pack(AF_BRIDGE, 0, 0, 0), "VLAN tables")
        except rtnl.DumpFailed as err:
            if err.code != errno.EOPNOTSUPP:
                raise
            found = []
        entries: Dict[int, List[Tuple[int, int, int]]] = {}
        for payload in found:
            index, more = parse_vlan_entries(payload)
            entries.setdefault(index, []).extend(more)
        return {index: vlan_table(entries.get(index, ())) for index in indexes}

    def read(self, scope: Scope) -> Snapshot:
        self.sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        lookup = scope.names | scope.port_sets | scope.vlan_parents | scope.routes_of
        with_tables: Set[int] = set()
        for name in sorted(lookup):
            msg = self.link(name)
            if msg is not None:
                with_tables.add(msg.index)
        for index in sorted(with_tables):
            master = self.msgs[index].master
            if master and self.link(index=master) is not None:
                with_tables.add(master)
        for bridge in sorted(scope.port_sets):
            if bridge not in self.by_name:
                continue
            # Filtered in the kernel by master (rtnl_dump_ifinfo, IFLA_MASTER).
            body = (IFINFOMSG.pack(0, 0, 0, 0, 0) + _SKIP_STATS
                    + _attr(IFLA_MASTER, struct.pack("=I", self.by_name[bridge])))
            for payload in self.dump(RTM_GETLINK, body, "the ports of %s" % bridge):
                with_tables.add(self.keep(payload).index)
        children: Set[int] = set()
        parents = {self.by_name[name] for name in scope.vlan_parents if name in self.by_name}
        if parents and (os.path.exists(_VLAN_PROC) or not os.path.isdir("/proc/net")):
            body = IFINFOMSG.pack(0, 0, 0, 0, 0) + _SKIP_STATS + _VLAN_KIND
            for payload in self.dump(RTM_GETLINK, body, "VLAN devices"):
                msg = rtnl.LinkMsg(payload)
                if (msg.kind == "vlan" and IFLA_LINK_NETNSID not in msg.attrs
                        and rtnl.attr_u32(msg.attrs, IFLA_LINK) in parents):
                    children.add(self.keep(payload).index)
        # Names of masters and VLAN parents outside the scope: one by one.
        for msg in list(self.msgs.values()):
            for index in (msg.master, rtnl.attr_u32(msg.attrs, IFLA_LINK) if msg.kind == "vlan"
                          else None):
                if index:
                    self.link(index=index)
        names = {index: msg.name for index, msg in self.msgs.items()}
        kinds = {index: msg.kind for index, msg in self.msgs.items()}
        tables = self.tables(sorted(
            index for index in with_tables
            if kinds[index] == "bridge" or kinds.get(self.msgs[index].master or 0) == "bridge"))
        routed = sorted(self.by_name[n] for n in scope.routes_of if n in self.by_name)
        addresses: Dict[int, List[Address]] = {}
        routes: List[bytes] = []
        for index in routed:
            for payload in self.dump(RTM_GETADDR, IFADDRMSG.pack(0, 0, 0, 0, index),
                                     "the addresses of %s" % names[index]):
                found = rtnl.parse_address(payload)
                if found is not None and found[0] == index:
                    addresses.setdefault(index, []).append(found[1])
        for family in (_socket.AF_INET, _socket.AF_INET6):
            header = RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
            if len(routed) == 1:
                # Filtered in the kernel by output device (strict check).
                routes += self.dump(RTM_GETROUTE, header + _attr(
                    RTA_OIF, struct.pack("=I", routed[0])), "routes")
            elif routed:
                routes += self.dump(RTM_GETROUTE, header, "routes")  # the full read's order
        wanted = with_tables | children
        links = tuple(rtnl.link_of(self.msgs[index], names,
                                  tuple(addresses.get(index, ())) if index in routed else (),
                                  tables.get(index), _isolated(self.msgs[index]))
                      for index in sorted(wanted))
        keep = set(routed)
        return Snapshot(links=links, routes=tuple(
            route for route in filter(None, (rtnl.parse_route(p, names) for p in routes))
            if self.by_name.get(route.dev) in keep))


def read_scoped(scope: Scope, netns: Optional[str] = None) -> Snapshot:
    """The part of the host (or of `netns`) that `scope` names (model.Scope):
    per-name link requests, link dumps filtered in the kernel by master and
    by kind, addresses and routes of single devices, the VLAN tables of the
    bridges and ports read; equal to plan.scope.restrict(rtnl.read_snapshot(),
    scope) with links in ifindex order (tests/kernel/test_scope.py). The full
    scope is rtnl.read_snapshot(). Linux 5.8+ (RTM_GETVLAN); ApplyError on any
    failure."""
    if scope.full:
        return rtnl.read_snapshot(netns)
    return rtnl.on_socket(netns, lambda sock: _Scoped(sock).read(scope))
