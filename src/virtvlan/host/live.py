"""The agent's live host model: one full read, then kept current from events.

A served hook call used to read the whole host (five dumps: 2 ms on an
empty host, 170-250 ms at 1000 bridges and 2000 taps). LiveHost reads it
once, subscribes to the rtnetlink groups of everything a Snapshot holds
(links, bridge ports and their VLAN tables, IPv4/IPv6 addresses and
routes) and applies each notification to its tables; snapshot() then costs
what changed since the last call, not what the host has.

Why draining at snapshot() is enough (no thread): the kernel queues a
notification on every listening socket inside the request that made the
change (rtnl_notify, under RTNL), before that request returns. A caller
that holds the host lock therefore finds every change another virt-vlan
process made before letting the lock go already in this socket's queue,
and every change of its own apply as soon as pyroute2's request returned.

What the kernel changes without telling (net/ipv4/fib_frontend.c), and
which the model does itself, as the kernel does:
- a device going down, or losing its last IPv4 address, loses its IPv4
  routes (fib_disable_ip; IPv6 routes are deleted with notifications);
- an IPv4 address deleted takes the routes that used it as preferred
  source with it (fib_sync_down_addr);
- a deleted device takes all its routes (for IPv4 without notifications).
One change is not announced at all: a bridge port flag set through
IFLA_INFO_SLAVE_DATA (`ip link set X type bridge_slave isolated on`) on a
device that is down (netdev_state_change announces only devices that are
up; virt-vlan sets the flag with AF_BRIDGE, which is always announced, on
taps libvirt has brought up). The agent's periodic check finds it.
A receive queue that overflowed (recv fails with ENOBUFS: notifications
lost) makes the next snapshot() read everything again.

VLAN tables: a port's AF_BRIDGE RTM_NEWLINK carries its whole table,
compressed (br_ifinfo_notify); RTM_NEWVLAN/DELVLAN (Linux 5.8+) carry
per-VID changes and are applied as such. A bridge's own entries, changed
(RTM_NEWVLAN) or made with it and never announced, are read again for that
bridge alone (RTM_GETVLAN; rare: a bridge or a trunk VLAN added).

consistency() compares the model with a fresh full read (differences that
last over three comparisons: others change the host meanwhile); with
VIRT_VLAN_MODEL_CHECK=1 in the agent's environment every snapshot() does
(docs/agent.md): a debug aid, it costs the full read it replaces.
"""

import _socket
import errno
import itertools
import logging
import os
import threading
from dataclasses import replace
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

from virtvlan.errors import ApplyError
from virtvlan.host import nftables, rtnl, scoped
from virtvlan.host.nlconst import (
    AF_BRIDGE,
    BRIDGE_VLAN_INFO_PVID,
    BRIDGE_VLAN_INFO_UNTAGGED,
    BUFSIZE,
    IFADDRMSG,
    IFA_LOCAL,
    IFINFOMSG,
    NETLINK_ADD_MEMBERSHIP,
    NETLINK_NETFILTER,
    NFNLGRP_NFTABLES,
    NLMSGHDR,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_PREFSRC,
    RTA_PRIORITY,
    RTA_TABLE,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    RTMSG,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_DELVLAN,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTM_NEWVLAN,
    RTNLGRP_BRVLAN,
    SOL_NETLINK,
    SO_RCVBUFFORCE,
)
from virtvlan.model import Address, Link, PortFilter, PortVlans, Route, Snapshot

log = logging.getLogger(__name__)

CHECK_ENV = "VIRT_VLAN_MODEL_CHECK"
# Big enough for a network restart's burst at 1000 bridges; above rmem_max
# it needs CAP_NET_ADMIN (SO_RCVBUFFORCE), which the agent has.
RCVBUF = 8 << 20
_GROUPS = (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR
           | RTMGRP_IPV6_ROUTE)
_ROUTE_ATTRS = frozenset({RTA_TABLE, RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC})

# (ifindex, name, kind, master ifindex, VLAN lower ifindex, up): rtnl.link_refs.
_Refs = Tuple[int, str, str, Optional[int], Optional[int], bool]
# A route's identity: family, table, dst, dst_len, tos, metric, oif, gateway.
_RouteKey = Tuple[int, int, bytes, int, int, Optional[int], Optional[int], bytes]


def route_key(payload: bytes) -> Tuple[_RouteKey, Optional[int], bytes]:
    """(identity, output ifindex, preferred source) of an RTM_NEWROUTE or
    RTM_DELROUTE payload: a deletion names its route by the same fields."""
    family, dst_len, _src, tos, table, _proto, _scope, _kind, _flags = RTMSG.unpack_from(payload)
    attrs = rtnl.attributes(payload, RTMSG.size, _ROUTE_ATTRS)
    oif = rtnl.attr_u32(attrs, RTA_OIF)
    key = (family, rtnl.attr_u32(attrs, RTA_TABLE) or table, attrs.get(RTA_DST, b""), dst_len,
           tos, rtnl.attr_u32(attrs, RTA_PRIORITY), oif, attrs.get(RTA_GATEWAY, b""))
    return key, oif, attrs.get(RTA_PREFSRC, b"")


def apply_vlan_change(table: PortVlans, kind: int, flags: int, first: int,
                      last: int) -> PortVlans:
    """`table` after RTM_NEWVLAN (`kind`) set VIDs first..last with `flags`
    (their egress untagged or tagged, the PVID among them), or after
    RTM_DELVLAN removed them."""
    vids = set(range(first, last + 1))
    tagged, untagged, pvid = set(table.tagged) - vids, set(table.untagged) - vids, table.pvid
    if pvid in vids:
        pvid = None
    if kind == RTM_NEWVLAN:
        (untagged if flags & BRIDGE_VLAN_INFO_UNTAGGED else tagged).update(vids)
        if flags & BRIDGE_VLAN_INFO_PVID:
            pvid = last
    return PortVlans(frozenset(tagged), frozenset(untagged), pvid)


def differences(model: Snapshot, actual: Snapshot) -> List[str]:
    """Every way `model` differs from `actual` (a full read), one phrase
    each; empty when they agree. Links by name, field by field; addresses,
    routes and filters as sets (their order is the kernel's business)."""
    out = []
    have = {link.name: link for link in model.links}
    for link in actual.links:
        mine = have.pop(link.name, None)
        if mine is None:
            out.append("%s (ifindex %d) is missing" % (link.name, link.index))
            continue
        for field in Link.__dataclass_fields__:
            want, got = getattr(link, field), getattr(mine, field)
            if field == "addresses":
                want, got = set(want), set(got)
            if want != got:
                out.append("%s has %s=%r in the model, %r on the host" % (link.name, field, got,
                                                                          want))
    out.extend("%s is in the model but not on the host" % name for name in sorted(have))
    extra, missing = set(model.routes) - set(actual.routes), set(actual.routes) - set(model.routes)
    out.extend("route %s is in the model but not on the host" % _route(r) for r in extra)
    out.extend("route %s is missing" % _route(r) for r in missing)
    if actual.filters is not None and model.filters is not None and \
            set(actual.filters) != set(model.filters):
        out.append("port filters differ: model %s, host %s"
                   % (sorted(f.port for f in model.filters),
                      sorted(f.port for f in actual.filters)))
    return out


def _route(route: Route) -> str:
    via = " via %s" % route.gateway if route.gateway else ""
    return "%s%s dev %s table %s" % (route.dst, via, route.dev, route.table)


class LiveHost:
    """The host's (or `netns`'s) links, addresses, routes and bridge VLAN
    tables, current as of each snapshot() call. Thread-safe. ApplyError
    when the first read or a re-read fails; OSError when the netlink
    sockets cannot be made or subscribed."""

    def __init__(self, netns: Optional[str] = None, rcvbuf: int = RCVBUF,
                 check: Optional[bool] = None) -> None:
        self.netns = netns
        self.check = os.environ.get(CHECK_ENV, "") == "1" if check is None else check
        self.full_reads = 0  # the first, and one after each overflow
        self.events = 0
        self._mutex = threading.Lock()
        path = None if netns is None else rtnl.netns_path(netns)
        self._events = rtnl.route_socket(path)
        self._requests = rtnl.route_socket(path)
        self._seq: Iterator[int] = itertools.count(1)
        try:
            try:
                self._events.setsockopt(_socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                self._events.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, rcvbuf)
            self._events.bind((0, _GROUPS))
            try:
                self._events.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_BRVLAN)
            except OSError as err:  # before 5.8: AF_BRIDGE RTM_NEWLINK carries the tables
                log.debug("no RTNLGRP_BRVLAN: %s", rtnl.errno_name(err.errno or 0))
        except OSError:
            self.close()
            raise
        self._buf = bytearray(BUFSIZE)
        # Port filters: subscribed to nftables changes at the first call that
        # asks for them (filters()); None until then, or when nft is missing.
        self._nft: Optional[_socket.socket] = None
        self._filters: Optional[Tuple[PortFilter, ...]] = None
        self._filters_stale = True
        # Subscribed first, read second: nothing falls between the two.
        self._reset()

    def close(self) -> None:
        for sock in (self._events, self._requests, self._nft):
            if sock is not None:
                sock.close()

    # --- the tables -----------------------------------------------------------------------

    def _reset(self) -> None:
        """Drop everything and read the host in full (the queued
        notifications, replayed over it later, repeat what it shows)."""
        links, addrs, routes, bridges = rtnl.read_dumps(self._requests, self._seq)
        self.full_reads += 1
        self._raw: Dict[int, bytes] = {}
        self._refs: Dict[int, _Refs] = {}
        self._names: Dict[int, str] = {}
        self._index_of: Dict[str, int] = {}
        self._addrs: Dict[int, Dict[Tuple[str, str, int], Address]] = {}
        self._routes: Dict[_RouteKey, bytes] = {}
        self._tables: Dict[int, PortVlans] = {}
        self._isolated: Dict[int, Optional[bool]] = {}
        self._links: Dict[int, Link] = {}
        self._dirty: Set[int] = set()
        self._snap: Optional[Snapshot] = None
        self._route_cache: Optional[tuple] = None
        self._stale: Set[int] = set()  # bridges whose own VLAN entries are to be read
        self._seeded = False
        for payload in links:
            self._store_link(payload)
        for payload in addrs:
            self._address(RTM_NEWADDR, payload)
        for payload in routes:
            self._route(RTM_NEWROUTE, payload)
        self._set_tables(bridges)
        self._seeded = True

    def _set_tables(self, bridges: List[bytes]) -> None:
        self._tables, self._isolated = {}, {}
        for payload in bridges:
            index, _master, vlans = rtnl.parse_port_vlans(payload)
            # First wins, as in rtnl (a port reported again by its own driver).
            self._tables.setdefault(index, vlans)
            self._isolated.setdefault(index, rtnl.port_isolated(payload)[1])
        self._dirty.update(self._refs)

    def _store_link(self, payload: bytes) -> None:
        payload = rtnl.compact_link(payload)
        refs = rtnl.link_refs(payload)
        index = refs[0]
        old = self._refs.get(index)
        if old is not None and old[1] != refs[1]:
            self._index_of.pop(old[1], None)
        self._raw[index], self._refs[index], self._names[index] = payload, refs, refs[1]
        self._index_of[refs[1]] = index
        self._dirty.add(index)
        isolated = rtnl.slave_isolated(payload)
        if isolated is not None:  # a bridge port: its flag as of this message
            self._isolated[index] = isolated
        if old is None and refs[2] == "bridge" and self._seeded:
            # A new bridge's own VLAN entry (its default PVID) is made while
            # it registers, and no notification reports it: read it.
            self._stale.add(index)
        if old is None or old[1] != refs[1] or old[2] != refs[2]:
            self._dependents(index)  # its name or kind is part of other links
        if old is not None and old[5] and not refs[5]:
            self._drop_routes(index, _socket.AF_INET)  # went down: fib_disable_ip

    def _dependents(self, index: int) -> None:
        """Links and routes that name `index` (as master, VLAN lower device
        or output device) are rebuilt."""
        self._route_cache = None
        for other, refs in self._refs.items():
            if refs[3] == index or refs[4] == index:
                self._dirty.add(other)

    def _drop_link(self, index: int) -> None:
        refs = self._refs.pop(index, None)
        if refs is None:
            return
        if self._index_of.get(refs[1]) == index:
            del self._index_of[refs[1]]
        self._snap = None
        for table in (self._raw, self._names, self._addrs, self._tables, self._isolated,
                      self._links):
            table.pop(index, None)  # type: ignore[attr-defined]
        self._dirty.discard(index)
        self._dependents(index)
        self._drop_routes(index, None)

    def _drop_routes(self, index: int, family: Optional[int],
                     prefsrc: Optional[bytes] = None) -> None:
        # A preferred source is dropped on every device that uses it.
        doomed = [key for key, payload in self._routes.items()
                  if (family is None or key[0] == family)
                  and (key[6] == index if prefsrc is None else route_key(payload)[2] == prefsrc)]
        for key in doomed:
            del self._routes[key]
        if doomed:
            self._route_cache = None

    def _address(self, kind: int, payload: bytes) -> None:
        found = rtnl.parse_address(payload)
        if found is None:
            return
        index, addr = found
        key = (addr.family, addr.local, addr.prefixlen)
        mine = self._addrs.setdefault(index, {})
        if kind == RTM_NEWADDR:
            mine[key] = addr
        elif mine.pop(key, None) is not None and addr.family == "inet":
            local = rtnl.attributes(payload, IFADDRMSG.size).get(IFA_LOCAL)
            if local:
                self._drop_routes(index, _socket.AF_INET, local)  # fib_sync_down_addr
            if not any(key[0] == "inet" for key in mine):
                self._drop_routes(index, _socket.AF_INET)  # the last one: fib_disable_ip
        self._dirty.add(index)

    def _route(self, kind: int, payload: bytes) -> None:
        key = route_key(payload)[0]
        if kind == RTM_NEWROUTE:
            self._routes[key] = payload
        else:
            self._routes.pop(key, None)
        self._route_cache = None

    def _bridge(self, kind: int, payload: bytes) -> None:
        index = IFINFOMSG.unpack_from(payload)[2]
        if kind == RTM_DELLINK:  # AF_BRIDGE: the port left its bridge
            self._tables.pop(index, None)
            self._isolated.pop(index, None)
        else:
            self._tables[index] = rtnl.parse_port_vlans(payload)[2]
            self._isolated[index] = rtnl.port_isolated(payload)[1]
        self._dirty.add(index)

    def _vlan(self, kind: int, payload: bytes) -> None:
        index, entries = scoped.parse_vlan_entries(payload)
        refs = self._refs.get(index)
        if refs is None or refs[2] == "bridge":
            # A bridge's own entries: read again (RTM_GETVLAN of that bridge),
            # which lists exactly the ones a bridge reports (rare: trunk set-up).
            self._stale.add(index)
            return
        table = self._tables.get(index, PortVlans())
        for flags, first, last in entries:
            table = apply_vlan_change(table, kind, flags, first, last)
        self._tables[index] = table
        self._dirty.add(index)

    # --- events ---------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        offset = 0
        while offset + NLMSGHDR.size <= len(data):
            length, kind, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, offset)
            if length < NLMSGHDR.size or offset + length > len(data):
                break
            payload = data[offset + NLMSGHDR.size:offset + length]
            offset += (length + 3) & ~3
            self.events += 1
            if kind in (RTM_NEWLINK, RTM_DELLINK):
                if payload[0] == AF_BRIDGE:
                    self._bridge(kind, payload)
                elif kind == RTM_NEWLINK:
                    self._store_link(payload)
                else:
                    self._drop_link(IFINFOMSG.unpack_from(payload)[2])
            elif kind in (RTM_NEWADDR, RTM_DELADDR):
                self._address(kind, payload)
            elif kind in (RTM_NEWROUTE, RTM_DELROUTE):
                self._route(kind, payload)
            elif kind in (RTM_NEWVLAN, RTM_DELVLAN):
                self._vlan(kind, payload)

    def _drain(self) -> None:
        """Apply every queued notification; read all again after an overflow."""
        while True:
            try:
                size = self._events.recv_into(self._buf, 0, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise ApplyError("live host model: netlink receive failed: %s"
                                     % rtnl.errno_name(err.errno or 0)) from err
                log.warning("live host model: notifications were lost (the receive queue "
                            "overflowed); reading the host again")
                # What is still queued is older than what was lost: replayed
                # over the new read, it would undo changes whose newer
                # notifications are gone. Dropped unread.
                self._discard()
                self._reset()
                continue
            self._feed(bytes(self._buf[:size]))
        stale = sorted(index for index in self._stale if index in self._refs)
        self._stale.clear()
        if stale:
            self._tables.update(scoped.read_vlan_tables(self._requests, stale))
            self._dirty.update(stale)

    def _discard(self) -> None:
        for _ in range(100000):  # bounded: a storm that never pauses is read later
            try:
                self._events.recv_into(self._buf, 0, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise

    # --- the snapshot ---------------------------------------------------------------------

    def _link(self, index: int) -> Link:
        refs = self._refs[index]
        master = refs[3]
        bridged = refs[2] == "bridge" or (master is not None and master in self._refs
                                          and self._refs[master][2] == "bridge")
        return rtnl.parse_link(self._raw[index], self._names,
                               tuple(self._addrs.get(index, {}).values()),
                               self._tables.get(index, PortVlans()) if bridged else None,
                               self._isolated.get(index))

    def _refresh(self) -> None:
        """Links rebuilt where their messages changed, routes where theirs
        did; the whole-host Snapshot is made again only if anything did."""
        if self._dirty:
            for index in self._dirty:
                self._links[index] = self._link(index)
            self._dirty.clear()
            self._snap = None
        if self._route_cache is None:
            self._route_cache = tuple(filter(None, (rtnl.parse_route(p, self._names)
                                                    for p in self._routes.values())))
            self._snap = None

    def _build(self) -> Snapshot:
        self._refresh()
        if self._snap is None:
            self._snap = Snapshot(links=tuple(self._links[i] for i in sorted(self._links)),
                                  routes=self._route_cache or ())
        return self._snap

    def snapshot(self) -> Snapshot:
        """The host as of now (links, addresses, routes, VLAN tables; no
        port filters: the caller adds them). Call it with the host lock
        held, as a fresh read is."""
        with self._mutex:
            self._drain()
            if self.check:
                found = self._lasting_differences(with_filters=False)
                if found:
                    log.error("live host model differs from the host (%d): %s; reading it again",
                              len(found), "; ".join(found[:20]))
                    self._reset()
            # Built after the check, which drains what arrived meanwhile.
            return self._build()

    def snapshot_of(self, names: Sequence[str]) -> Snapshot:
        """The devices `names` (those present) and their routes, as of now:
        what verification after an apply compares (executor's read_back),
        without making the whole-host Snapshot."""
        with self._mutex:
            self._drain()
            self._refresh()
            wanted = set(names)
            indexes = sorted(self._index_of[name] for name in wanted if name in self._index_of)
            return Snapshot(links=tuple(self._links[i] for i in indexes),
                            routes=tuple(r for r in self._route_cache or () if r.dev in wanted))

    def reset(self) -> None:
        """Forget everything and read the host in full again."""
        with self._mutex:
            self._reset()
            self._filters_stale = True

    def filters(self) -> Optional[Tuple[PortFilter, ...]]:
        """virt-vlan's port filters as nftables.read_filters() reads them,
        read again only after nftables announced a change (NFNLGRP_NFTABLES:
        any change of any table, announced inside the transaction that made
        it, as rtnetlink's are). Call it with the host lock held."""
        with self._mutex:
            return self._current_filters()

    def _current_filters(self) -> Optional[Tuple[PortFilter, ...]]:
        """filters() with the mutex held."""
        if self._nft is None:
            try:
                path = None if self.netns is None else rtnl.netns_path(self.netns)
                sock = rtnl.route_socket(path, NETLINK_NETFILTER)
                sock.bind((0, 0))
                sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
            except OSError as err:  # then every call reads them, as before
                log.debug("no nftables notifications: %s", rtnl.errno_name(err.errno or 0))
                return nftables.read_filters(self.netns)
            self._nft, self._filters_stale = sock, True
        while True:
            try:
                self._nft.recv_into(self._buf, 0, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as err:  # ENOBUFS: some lost; read them all again
                if err.errno != errno.ENOBUFS:
                    raise ApplyError("live host model: nftables notifications: %s"
                                     % rtnl.errno_name(err.errno or 0)) from err
            self._filters_stale = True
        if self._filters_stale:
            # Stale first, read second: a change during the read is
            # announced after it and makes the next call read again.
            self._filters_stale = False
            try:
                self._filters = nftables.read_filters(self.netns)
            except BaseException:
                self._filters_stale = True
                raise
        return self._filters

    def _fresh(self) -> Snapshot:
        return rtnl.build_snapshot(*rtnl.read_dumps(self._requests, self._seq))

    def consistency(self) -> List[str]:
        """differences() between the model, brought up to date, and a
        fresh full read that last over three comparisons (tests, and the
        periodic check); port filters too once a caller asked for them."""
        with self._mutex:
            return self._lasting_differences(with_filters=self._nft is not None)

    def _compare(self, with_filters: bool) -> List[str]:
        self._drain()
        mine, fresh = self._build(), self._fresh()
        if with_filters:
            mine = replace(mine, filters=self._current_filters())
            fresh = replace(fresh, filters=nftables.read_filters(self.netns))
        return differences(mine, fresh)

    def _lasting_differences(self, with_filters: bool) -> List[str]:
        """The differences found in each of up to three comparisons.

        The host lock serializes virt-vlan, not the rest of the host:
        libvirt creates a guest's taps while other guests' hooks run, so a
        device made between the drain and the full read is in the read and
        not yet in the model. The kernel queues its notification as the
        change completes, so the next comparison agrees on it; a
        notification the kernel never sends leaves the same difference
        every time."""
        found = self._compare(with_filters)
        for _ in range(2):
            if not found:
                break
            again = set(self._compare(with_filters))
            found = [line for line in found if line in again]
        return found
