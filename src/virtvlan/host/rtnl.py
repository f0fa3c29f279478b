"""Read-only rtnetlink: the host's Snapshot without importing pyroute2.

Each libvirt hook call is a fresh process, and importing pyroute2 costs more
than the whole warm path (where the plan is usually empty). So reading is
five dumps on a stdlib socket (links, addresses, IPv4 and IPv6 routes, and
the bridge VLAN tables);
pyroute2 stays in apply/ for changes. read_snapshot() returns exactly what
pyroute2 reads (tests/kernel/test_rtnl.py compares the two).
Constants and message layouts: nlconst.py; the scoped read of a hook
alone (only what its plan looks at): scoped.py.
"""

# _socket is the C module behind `socket`: importing socket.py (its enum
# conversions, selectors) would add ~3 ms to every hook call, for nothing
# this module uses.
import _socket
import errno
import itertools
import logging
import os
import struct
import time
from typing import (Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Set, Tuple,
                    TypeVar)

from virtvlan.errors import ApplyError
from virtvlan.host.nlconst import (
    ADDR_SCOPES,
    AF_BRIDGE,
    BRIDGE_VLAN_INFO_PVID,
    BRIDGE_VLAN_INFO_RANGE_BEGIN,
    BRIDGE_VLAN_INFO_RANGE_END,
    BRIDGE_VLAN_INFO_UNTAGGED,
    BUFSIZE,
    CLONE_NEWNET,
    FAMILIES,
    IFADDRMSG,
    IFA_ADDRESS,
    IFA_BROADCAST,
    IFA_FLAGS,
    IFA_F_PERMANENT,
    IFA_LOCAL,
    IFF_UP,
    IFINFOMSG,
    IFLA_ADDRESS,
    IFLA_AF_SPEC,
    IFLA_BRPORT_ISOLATED,
    IFLA_PROTINFO,
    IFLA_BRIDGE_VLAN_INFO,
    IFLA_BR_NF_CALL_IPTABLES,
    IFLA_BR_STP_STATE,
    IFLA_BR_VLAN_DEFAULT_PVID,
    IFLA_BR_VLAN_FILTERING,
    IFLA_EXT_MASK,
    IFLA_IFALIAS,
    IFLA_IFNAME,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_INFO_SLAVE_DATA,
    IFLA_INFO_SLAVE_KIND,
    IFLA_LINK,
    IFLA_LINKINFO,
    IFLA_LINK_NETNSID,
    IFLA_MASTER,
    IFLA_MTU,
    IFLA_VLAN_ID,
    NETNS_RUN_DIR,
    NLMSGHDR,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
    PROTOS,
    ROUTE_SCOPES,
    RTATTR,
    RTA_DST,
    RTA_GATEWAY,
    RTA_NH_ID,
    RTA_OIF,
    RTA_PREFSRC,
    RTA_PRIORITY,
    RTA_TABLE,
    RTA_VIA,
    RTEXT_FILTER_BRVLAN_COMPRESSED,
    RTMSG,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTN_UNICAST,
    RTPROT_KERNEL,
    RT_TABLE_LOCAL,
)
from virtvlan.model import MANAGED_ALIAS, Address, Link, PortVlans, Route, Snapshot

log = logging.getLogger(__name__)

_INFO_ATTRS = frozenset({IFLA_INFO_KIND})
_OIF = frozenset({RTA_OIF})
# A dump that a change interrupted is repeated after a pause that doubles up
# to PAUSE_MAX, for at most DUMP_BUDGET seconds: a host starting many guests
# adds and enslaves taps in bursts, and the hook holds the host lock meanwhile.
DUMP_BUDGET, PAUSE_FIRST, PAUSE_MAX = 5.0, 0.001, 0.05
# AF_BRIDGE: one message per bridge port and per bridge (its self entries),
# VIDs compressed into ranges (a 1-4094 trunk is two entries, not 4094).
_BRIDGE_DUMP = (RTM_GETLINK, IFINFOMSG.pack(AF_BRIDGE, 0, 0, 0, 0)
                + struct.pack("=HHI", 8, IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN_COMPRESSED),
                "bridge VLAN tables")


def attr_u32(attrs: Dict[int, bytes], kind: int) -> Optional[int]:
    """The u32 attribute `kind` of `attrs` (as attributes() returns them),
    None when absent."""
    return struct.unpack_from("=I", attrs[kind])[0] if kind in attrs else None


def _ip(family: int, data: Optional[bytes]) -> Optional[str]:
    return _socket.inet_ntop(family, data) if data else None  # compressed IPv6, as pyroute2


def attr_text(data: bytes) -> str:
    """A string attribute's payload (NUL-terminated) as str; bytes that are
    not UTF-8 kept as surrogate escapes, so no name is ever lost."""
    return data.strip(b"\0").decode("utf-8", "surrogateescape")


def errno_name(code: int, text: Optional[str] = None) -> str:
    """'EPERM (Operation not permitted)': never a bare number. `text`
    replaces strerror (the kernel's extended ack, when there is one)."""
    return "%s (%s)" % (errno.errorcode.get(code, "errno %d" % code), text or os.strerror(code))


def _link_local6(data: bytes, prefixlen: int = 128) -> bool:
    return prefixlen >= 10 and data[0] == 0xFE and data[1] & 0xC0 == 0x80  # in fe80::/10


# The top-level attributes of an RTM_NEWLINK that a Snapshot uses. A link
# message carries about 40 (statistics, per-family settings: ~1.9 KiB), and
# at a thousand devices copying all of them out costs more than the dumps.
LINK_ATTRS = frozenset({IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER,
                        IFLA_LINKINFO, IFLA_IFALIAS, IFLA_LINK_NETNSID})
_PORT_ATTRS = frozenset({IFLA_MASTER, IFLA_AF_SPEC})
_PROTINFO = frozenset({IFLA_PROTINFO})
_LINKINFO = frozenset({IFLA_LINKINFO})
_SLAVE_ATTRS = frozenset({IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA})
_ISOLATED = frozenset({IFLA_BRPORT_ISOLATED})


def port_isolated(payload: bytes) -> Tuple[int, Optional[bool]]:
    """(ifindex, `isolated` flag) of one AF_BRIDGE RTM_NEWLINK; None when
    the message has no port attributes (a bridge's own message)."""
    index = IFINFOMSG.unpack_from(payload)[2]
    attrs = attributes(payload, IFINFOMSG.size, _PROTINFO)
    if IFLA_PROTINFO not in attrs:
        return index, None
    flags = attributes(attrs[IFLA_PROTINFO], 0, _ISOLATED)
    value = flags.get(IFLA_BRPORT_ISOLATED)
    return index, bool(value[0]) if value else False


def attributes(data: bytes, offset: int = 0,
               wanted: Optional[FrozenSet[int]] = None) -> Dict[int, bytes]:
    """The rtattr chain from `offset` as {type: payload}, only the types in
    `wanted` if given. The first of a repeated type wins, as with pyroute2's
    get_attr."""
    attrs: Dict[int, bytes] = {}
    unpack, end = RTATTR.unpack_from, len(data)
    while offset + 4 <= end:
        length, kind = unpack(data, offset)
        if length < 4:
            break  # malformed; the kernel never sends this
        # 0x3fff: without the NLA_F_NESTED / NLA_F_NET_BYTEORDER flag bits.
        kind &= 0x3FFF
        if (wanted is None or kind in wanted) and kind not in attrs:
            attrs[kind] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3  # attributes are 4-byte aligned (RTA_ALIGN)
    return attrs


class LinkMsg:
    """One RTM_NEWLINK payload with its header and used attributes parsed
    once: the snapshot, the consistency checks and the VLAN tables all
    look at every link."""

    __slots__ = ("payload", "index", "flags", "attrs", "name", "master", "kind")

    def __init__(self, payload: bytes) -> None:
        _family, _type, self.index, self.flags, _change = IFINFOMSG.unpack_from(payload)
        self.payload = payload
        self.attrs = attributes(payload, IFINFOMSG.size, LINK_ATTRS)
        self.name = attr_text(self.attrs.get(IFLA_IFNAME, b""))
        self.master = attr_u32(self.attrs, IFLA_MASTER)
        info = attributes(self.attrs.get(IFLA_LINKINFO, b""), 0, _INFO_ATTRS)
        self.kind = attr_text(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else ""


def attribute_list(data: bytes, offset: int = 0) -> List[Tuple[int, bytes]]:
    """The rtattr chain from `offset` as (type, payload) pairs, in order and
    with repeats (the entries of a nested list)."""
    attrs: List[Tuple[int, bytes]] = []
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        attrs.append((kind & 0x3FFF, data[offset + 4:offset + length]))
        offset += (length + 3) & ~3
    return attrs


def parse_port_vlans(payload: bytes) -> Tuple[int, Optional[int], PortVlans]:
    """(ifindex, master ifindex, entries) of one AF_BRIDGE RTM_NEWLINK.

    With RTEXT_FILTER_BRVLAN_COMPRESSED runs of VIDs with the same flags
    come as a RANGE_BEGIN entry and a RANGE_END entry (br_fill_ifvlaninfo_
    compressed); a port or bridge without entries has no IFLA_AF_SPEC.
    """
    index = IFINFOMSG.unpack_from(payload)[2]
    attrs = attributes(payload, IFINFOMSG.size, _PORT_ATTRS)
    tagged: Set[int] = set()
    untagged: Set[int] = set()
    pvid: Optional[int] = None
    begin: Optional[int] = None
    for kind, data in attribute_list(attrs.get(IFLA_AF_SPEC, b"")):
        if kind != IFLA_BRIDGE_VLAN_INFO or len(data) < 4:
            continue
        flags, vid = struct.unpack_from("=HH", data)
        if flags & BRIDGE_VLAN_INFO_RANGE_BEGIN:
            begin = vid
            continue
        first = begin if begin is not None and flags & BRIDGE_VLAN_INFO_RANGE_END else vid
        begin = None
        vids = range(first, vid + 1)
        (untagged if flags & BRIDGE_VLAN_INFO_UNTAGGED else tagged).update(vids)
        if flags & BRIDGE_VLAN_INFO_PVID:
            pvid = vid
    return (index, attr_u32(attrs, IFLA_MASTER),
            PortVlans(frozenset(tagged), frozenset(untagged), pvid))


class DumpFailed(ApplyError):
    """A dump the kernel answered with an errno (`code`, for the callers
    that tell one errno from another)."""

    def __init__(self, detail: str, code: int) -> None:
        super().__init__(detail)
        self.code = code


def split_messages(data: bytes, seq: int, what: str) -> Tuple[List[bytes], bool, bool]:
    """One received datagram as (payloads, done, interrupted).

    Messages of other sequence numbers are skipped. NLMSG_ERROR, or an
    NLMSG_DONE carrying a negative errno (a dump that failed midway), raise
    ApplyError naming `what` and the errno by its name.
    """
    payloads: List[bytes] = []
    offset, interrupted = 0, False
    while offset + NLMSGHDR.size <= len(data):
        length, kind, flags, mseq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            raise ApplyError("malformed netlink reply while dumping %s" % what)
        payload = data[offset + NLMSGHDR.size:offset + length]
        offset += (length + 3) & ~3
        if mseq != seq:
            log.debug("skipping netlink message type %s with seq %s, not %s", kind, mseq, seq)
            continue
        interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
        if kind in (NLMSG_ERROR, NLMSG_DONE):
            code = -struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else 0
            if code > 0:
                raise DumpFailed("netlink dump of %s failed: %s" % (what, errno_name(code)), code)
            return payloads, True, interrupted
        payloads.append(payload)
    return payloads, False, interrupted


def link_name(payload: bytes) -> Tuple[int, str]:
    """(ifindex, name) of an RTM_NEWLINK payload."""
    msg = LinkMsg(payload)
    return msg.index, msg.name


def _bridge_options(data: Dict[int, bytes]) -> Dict[str, object]:
    """Link fields from a bridge's IFLA_INFO_DATA. IFLA_BR_VLAN_DEFAULT_PVID
    is absent when the kernel lacks CONFIG_BRIDGE_VLAN_FILTERING: then no
    port gets a default entry, which default_pvid 0 (none) says."""
    def u8(kind: int) -> bool:
        return bool(data[kind][0]) if data.get(kind) else False

    pvid = data.get(IFLA_BR_VLAN_DEFAULT_PVID)
    return {"vlan_filtering": u8(IFLA_BR_VLAN_FILTERING),
            "default_pvid": struct.unpack_from("=H", pvid)[0] if pvid else 0,
            "stp": bool(attr_u32(data, IFLA_BR_STP_STATE)),
            "nf_call": u8(IFLA_BR_NF_CALL_IPTABLES)}


def parse_link(payload: bytes, names: Dict[int, str], addresses: Tuple[Address, ...],
               vlans: Optional[PortVlans] = None, isolated: Optional[bool] = None) -> Link:
    """An RTM_NEWLINK payload as a Link; `names` maps ifindex to name;
    `vlans` its bridge VLAN entries and `isolated` its port flag (from the
    AF_BRIDGE dump), if any."""
    return link_of(LinkMsg(payload), names, addresses, vlans, isolated)


def compact_link(payload: bytes) -> bytes:
    """An RTM_NEWLINK payload cut down to its header and the attributes a
    Link is made of (LINK_ATTRS): about 150 bytes of the kernel's ~1.9 KiB,
    for a model that keeps one per device."""
    kept = [payload[:IFINFOMSG.size]]
    offset, end = IFINFOMSG.size, len(payload)
    while offset + 4 <= end:
        length, kind = RTATTR.unpack_from(payload, offset)
        if length < 4:
            break
        step = (length + 3) & ~3
        if kind & 0x3FFF in LINK_ATTRS:
            kept.append(payload[offset:offset + step])
        offset += step
    return b"".join(kept)


def slave_isolated(payload: bytes) -> Optional[bool]:
    """A bridge port's `isolated` flag from its RTM_NEWLINK (AF_UNSPEC),
    whose IFLA_LINKINFO carries the port's settings; None for a device that
    is no bridge port. The kernel announces a change of the flag made
    through IFLA_INFO_SLAVE_DATA (`ip link set X type bridge_slave
    isolated on`) only this way."""
    linkinfo = attributes(payload, IFINFOMSG.size, _LINKINFO).get(IFLA_LINKINFO, b"")
    return linkinfo_isolated(linkinfo)


def linkinfo_isolated(linkinfo: bytes) -> Optional[bool]:
    """A bridge port's `isolated` flag from an IFLA_LINKINFO payload (the
    port's settings in IFLA_INFO_SLAVE_DATA); None when the device is no
    bridge port."""
    info = attributes(linkinfo, 0, _SLAVE_ATTRS)
    if attr_text(info.get(IFLA_INFO_SLAVE_KIND, b"")) != "bridge":
        return None
    value = attributes(info.get(IFLA_INFO_SLAVE_DATA, b""), 0, _ISOLATED).get(IFLA_BRPORT_ISOLATED)
    return bool(value[0]) if value else False


def link_refs(payload: bytes) -> Tuple[int, str, str, Optional[int], Optional[int], bool]:
    """(ifindex, name, kind, master ifindex, lower ifindex of a VLAN device,
    up) of an RTM_NEWLINK payload: what a Link resolves through other links."""
    msg = LinkMsg(payload)
    lower = None
    if msg.kind == "vlan" and IFLA_LINK_NETNSID not in msg.attrs:
        lower = attr_u32(msg.attrs, IFLA_LINK)
    return msg.index, msg.name, msg.kind or "device", msg.master, lower, bool(msg.flags & IFF_UP)


def link_of(msg: LinkMsg, names: Dict[int, str], addresses: Tuple[Address, ...],
            vlans: Optional[PortVlans], isolated: Optional[bool] = None) -> Link:
    """The Link of one parsed link message; `names` resolves the master's
    and the VLAN parent's ifindex, the rest is given (parse_link)."""
    index, flags, attrs = msg.index, msg.flags, msg.attrs
    kind = msg.kind or "device"
    # Only bridges and VLAN devices have IFLA_INFO_DATA we use.
    info = attributes(attrs[IFLA_LINKINFO]) if kind in ("bridge", "vlan") else {}
    vlan_id = parent = None
    bridge: Dict[str, object] = {}
    if kind == "bridge":
        bridge = _bridge_options(attributes(info.get(IFLA_INFO_DATA, b"")))
    if kind == "vlan":
        data = attributes(info.get(IFLA_INFO_DATA, b""))
        vlan_id = struct.unpack_from("=H", data[IFLA_VLAN_ID])[0] if IFLA_VLAN_ID in data else None
        # IFLA_LINK_NETNSID: the lower device lives in another namespace, so
        # IFLA_LINK is an index there and means nothing here.
        if IFLA_LINK_NETNSID not in attrs:
            parent = names.get(attr_u32(attrs, IFLA_LINK))  # type: ignore[arg-type]
    master = attr_u32(attrs, IFLA_MASTER)
    # mac: every byte of IFLA_ADDRESS (dev->addr_len of them; absent when 0).
    # pyroute2 agrees for Ethernet's 6 and reads 6 bytes whatever the length.
    return Link(name=attr_text(attrs.get(IFLA_IFNAME, b"")), kind=kind or "device", index=index,
                master=names.get(master) if master else None, vlan_id=vlan_id,
                parent=parent, mtu=attr_u32(attrs, IFLA_MTU) or 0, up=bool(flags & IFF_UP),
                managed=attr_text(attrs.get(IFLA_IFALIAS, b"")) == MANAGED_ALIAS,
                mac=attrs.get(IFLA_ADDRESS, b"").hex(":"),
                addresses=addresses, vlans=vlans, isolated=isolated,
                **bridge)  # type: ignore[arg-type]


def parse_address(payload: bytes) -> Optional[Tuple[int, Address]]:
    """(ifindex, Address) of an RTM_NEWADDR payload; None for other families
    and IPv6 link-local addresses (per device, regenerated, never moved)."""
    family, prefixlen, flags, scope, index = IFADDRMSG.unpack_from(payload)
    attrs = attributes(payload, IFADDRMSG.size)
    # IPv4 puts our own address in IFA_LOCAL (IFA_ADDRESS is the peer on
    # point-to-point links); IPv6 only has IFA_ADDRESS unless a peer is set.
    local = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if family not in FAMILIES or not local:
        return None
    if family == _socket.AF_INET6 and _link_local6(local):
        return None
    # IFA_FLAGS (32 bits) exists because ifa_flags (8 bits) ran out (Linux 3.14).
    flags = attr_u32(attrs, IFA_FLAGS) if IFA_FLAGS in attrs else flags
    return index, Address(family=FAMILIES[family], local=_socket.inet_ntop(family, local),
                          prefixlen=prefixlen, dynamic=not flags & IFA_F_PERMANENT,
                          scope=ADDR_SCOPES.get(scope, str(scope)),
                          broadcast=_ip(family, attrs.get(IFA_BROADCAST)))


def parse_route(payload: bytes, names: Dict[int, str]) -> Optional[Route]:
    """An RTM_NEWROUTE payload as a Route, or None for a route that is not
    re-homed with its device (tests/kernel/pyroute2_oracle.py applies the same
    rules through pyroute2)."""
    family, dst_len, src_len, _tos, rtm_table, proto, scope, kind, _flags = \
        RTMSG.unpack_from(payload)
    # The header alone rejects most routes of a busy host (a multicast route
    # in table local per IPv6 device, a proto-kernel route per address):
    # rtm_table is the table id when it is below 256, so 255 is local.
    if (family not in FAMILIES or rtm_table == RT_TABLE_LOCAL or proto == RTPROT_KERNEL
            or kind != RTN_UNICAST):
        return None
    attrs = attributes(payload, RTMSG.size)
    # rtm_table is 8 bits (RT_TABLE_COMPAT for larger ids): RTA_TABLE has the id.
    table = attr_u32(attrs, RTA_TABLE) or rtm_table
    oif = attr_u32(attrs, RTA_OIF)
    if (family not in FAMILIES or table == RT_TABLE_LOCAL or proto == RTPROT_KERNEL
            or kind != RTN_UNICAST or oif not in names):
        # Kernel routes come back with their address; local-table and
        # non-unicast routes are not re-homed; multipath routes have no
        # RTA_OIF (one device per nexthop) and cannot be moved as one.
        return None
    if RTA_VIA in attrs or RTA_NH_ID in attrs or src_len:
        log.debug("not modelling route %s/%s: nexthop object, RTA_VIA or source prefix",
                  _ip(family, attrs.get(RTA_DST)), dst_len)
        return None
    dst = attrs.get(RTA_DST, b"")
    if dst_len and family == _socket.AF_INET6 and (
            _link_local6(dst, dst_len) or (dst_len >= 8 and dst[0] == 0xFF)):  # ff00::/8
        return None
    assert oif is not None
    return Route(family=FAMILIES[family],
                 dst="%s/%d" % (_ip(family, dst), dst_len) if dst_len else "default",
                 dev=names[oif], gateway=_ip(family, attrs.get(RTA_GATEWAY)),
                 metric=attr_u32(attrs, RTA_PRIORITY), table=table,
                 proto=PROTOS.get(proto, str(proto)),
                 scope=ROUTE_SCOPES.get(scope, str(scope)),
                 prefsrc=_ip(family, attrs.get(RTA_PREFSRC)))


def bridge_tables(links: List[bytes], bridges: List[bytes]) -> Dict[int, PortVlans]:
    """ifindex -> VLAN entries, for every bridge and every port of a bridge
    (an empty PortVlans when it has none), from the AF_BRIDGE dump."""
    return _bridge_tables([LinkMsg(p) for p in links], [parse_port_vlans(p) for p in bridges])


def _bridge_tables(links: Sequence[LinkMsg],
                   ports: Sequence[Tuple[int, Optional[int], PortVlans]]) -> Dict[int, PortVlans]:
    kinds = {msg.index: msg.kind for msg in links}
    masters = {msg.index: msg.master for msg in links}
    tables: Dict[int, PortVlans] = {}
    for index, _master, vlans in ports:
        # A port is reported by its bridge first; a driver with its own
        # ndo_bridge_getlink (SR-IOV NICs) may report it again: first wins.
        tables.setdefault(index, vlans)
    out: Dict[int, PortVlans] = {}
    for index, kind in kinds.items():
        master = masters[index]
        if kind == "bridge" or (master is not None and kinds.get(master) == "bridge"):
            out[index] = tables.get(index, PortVlans())
    return out


def build_snapshot(links: List[bytes], addrs: List[bytes], routes: List[bytes],
                   bridges: Optional[List[bytes]] = None) -> Snapshot:
    """The Snapshot from the payloads of RTM_NEWLINK/NEWADDR/NEWROUTE dumps
    and of the AF_BRIDGE link dump (None: VLAN tables not read)."""
    return _build([LinkMsg(p) for p in links], addrs, routes,
                  None if bridges is None else [parse_port_vlans(p) for p in bridges],
                  dict(map(port_isolated, bridges or ())))


def _build(links: Sequence[LinkMsg], addrs: List[bytes], routes: List[bytes],
           ports: Optional[Sequence[Tuple[int, Optional[int], PortVlans]]],
           isolated: Optional[Dict[int, Optional[bool]]] = None) -> Snapshot:
    names = {msg.index: msg.name for msg in links}
    by_index: Dict[int, List[Address]] = {}
    for found in filter(None, map(parse_address, addrs)):
        by_index.setdefault(found[0], []).append(found[1])
    tables = _bridge_tables(links, ports) if ports is not None else {}
    return Snapshot(
        links=tuple(link_of(msg, names, tuple(by_index.get(msg.index, ())),
                                tables.get(msg.index), (isolated or {}).get(msg.index))
                    for msg in links),
        routes=tuple(filter(None, (parse_route(payload, names) for payload in routes))))


def dump(sock: _socket.socket, seq: int, kind: int, header: bytes,
          what: str) -> Tuple[List[bytes], bool]:
    """(payloads, interrupted) of one dump request, read up to NLMSG_DONE."""
    sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(header), kind, NLM_F_REQUEST | NLM_F_DUMP,
                             seq, 0) + header)
    payloads: List[bytes] = []
    buf, interrupted, done = bytearray(BUFSIZE), False, False
    while not done:
        # recv drops whatever part of a datagram does not fit, so peek first:
        # with MSG_TRUNC netlink returns the datagram's full size. EINTR is
        # retried by Python itself (PEP 475).
        size = sock.recv_into(buf, 0, _socket.MSG_PEEK | _socket.MSG_TRUNC)
        if size > len(buf):
            buf = bytearray(size)
        size = sock.recv_into(buf)
        found, done, intr = split_messages(bytes(buf[:size]), seq, what)
        payloads.extend(found)
        interrupted = interrupted or intr  # read on: the rest must not stay queued
    return payloads, interrupted


def unknown_indexes(links: List[bytes], addrs: List[bytes], routes: List[bytes],
                    bridges: Tuple[bytes, ...] = ()) -> Set[int]:
    """The ifindexes that addresses or routes name but the link dump lacks.

    Each dump is consistent on its own (NLM_F_DUMP_INTR says when not), but
    a device created between the link dump and a later one shows up there
    only: the four dumps then disagree and must all be read again.
    """
    # The index is in the ifinfomsg header: no attribute parsing (hot path).
    return _unknown({IFINFOMSG.unpack_from(payload)[2] for payload in links}, addrs, routes,
                    bridges)


def _unknown(known: Set[int], addrs: List[bytes], routes: List[bytes],
             bridges: Sequence[bytes]) -> Set[int]:
    named = {IFADDRMSG.unpack_from(payload)[4] for payload in addrs}
    for payload in routes:
        oif = attr_u32(attributes(payload, RTMSG.size, _OIF), RTA_OIF)
        if oif is not None:
            named.add(oif)
    named.update(IFINFOMSG.unpack_from(payload)[2] for payload in bridges)
    return named - known


def moved_ports(links: List[bytes], bridges: List[bytes]) -> Set[int]:
    """Ports whose master in the AF_BRIDGE dump is not the one of the link
    dump (enslaved or released between the two): the dumps must be re-read."""
    return _moved([LinkMsg(p) for p in links], [parse_port_vlans(p) for p in bridges])


def _moved(links: Sequence[LinkMsg],
           ports: Sequence[Tuple[int, Optional[int], PortVlans]]) -> Set[int]:
    masters = {msg.index: msg.master for msg in links}
    moved = set()
    for index, master, _vlans in ports:
        # A bridge's own message names itself as master (br_fill_ifinfo).
        if master not in (None, index) and index in masters and masters[index] != master:
            moved.add(index)
    return moved


def _read(sock: _socket.socket) -> Snapshot:
    parsed, addrs, routes, ports, bridges = _consistent_dumps(sock, itertools.count(1))
    # Each message parsed once, for the checks and the snapshot.
    return _build(parsed, addrs, routes, ports, dict(map(port_isolated, bridges)))


def read_dumps(sock: _socket.socket,
               seq: Iterator[int]) -> Tuple[List[bytes], List[bytes], List[bytes], List[bytes]]:
    """The payloads of one consistent set of dumps on `sock` (sequence
    numbers from `seq`): (links, addresses, IPv4+IPv6 routes, AF_BRIDGE
    links). Repeated while a change interrupts a dump or makes them
    disagree; ApplyError after DUMP_BUDGET s of that."""
    parsed, addrs, routes, _ports, bridges = _consistent_dumps(sock, seq)
    return [msg.payload for msg in parsed], addrs, routes, bridges


def _consistent_dumps(sock: _socket.socket, seq: Iterator[int]) -> Tuple[
        List[LinkMsg], List[bytes], List[bytes],
        List[Tuple[int, Optional[int], PortVlans]], List[bytes]]:
    # Family 0 (AF_UNSPEC) dumps links and IPv4+IPv6 addresses. A route dump
    # returns every table: without NETLINK_GET_STRICT_CHK the kernel ignores
    # all of the request header but the family.
    requests = ((RTM_GETLINK, IFINFOMSG.pack(0, 0, 0, 0, 0), "links"),
                (RTM_GETADDR, IFADDRMSG.pack(0, 0, 0, 0, 0), "addresses"),
                (RTM_GETROUTE, RTMSG.pack(_socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0), "routes"),
                (RTM_GETROUTE, RTMSG.pack(_socket.AF_INET6, 0, 0, 0, 0, 0, 0, 0, 0), "routes"),
                _BRIDGE_DUMP)
    deadline, pause, retries = time.monotonic() + DUMP_BUDGET, PAUSE_FIRST, 0

    def wait(why: str) -> None:
        nonlocal pause, retries
        retries += 1
        if time.monotonic() > deadline:
            raise ApplyError("netlink dumps kept changing under the read for %.0f s (%d retries, "
                             "last: %s); retry when the network configuration settles"
                             % (DUMP_BUDGET, retries, why))
        log.debug("netlink read retry %d: %s", retries, why)
        time.sleep(pause)
        pause = min(pause * 2, PAUSE_MAX)

    while True:
        dumps = []
        # Only an interrupted dump is repeated: under steady churn, four
        # uninterrupted dumps in a row are much rarer than one.
        for request in requests:
            payloads, interrupted = dump(sock, next(seq), *request)
            while interrupted:
                wait("%s dump interrupted by a change" % request[2])
                payloads, interrupted = dump(sock, next(seq), *request)
            dumps.append(payloads)
        links, addrs, routes4, routes6, bridges = dumps
        parsed = [LinkMsg(payload) for payload in links]
        ports = [parse_port_vlans(payload) for payload in bridges]
        unknown = _unknown({msg.index for msg in parsed}, addrs, routes4 + routes6, bridges)
        moved = _moved(parsed, ports)
        if not unknown and not moved:
            return parsed, addrs, routes4 + routes6, ports, bridges
        if unknown:
            wait("ifindex %s appeared after the link dump" % ",".join(map(str, sorted(unknown))))
        else:
            wait("ifindex %s changed bridge after the link dump"
                 % ",".join(map(str, sorted(moved))))


def netns_path(netns: str) -> str:
    """The file of network namespace `netns`: a name in /run/netns, or a path."""
    return netns if "/" in netns else os.path.join(NETNS_RUN_DIR, netns)


def route_socket(path: Optional[str] = None, protocol: int = 0) -> _socket.socket:
    """An rtnetlink socket (NETLINK_ROUTE, unbound; another netlink
    `protocol` if given), created in the namespace at `path` if given;
    OSError when it cannot be made.

    setns() moves only the calling thread, and a socket keeps the namespace
    it was created in: so a short-lived thread enters the namespace and
    creates the socket, and the caller never leaves its own namespace.
    """
    if path is None:
        return _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, protocol)  # 0: NETLINK_ROUTE
    return in_netns(path, lambda: route_socket(None, protocol))


T = TypeVar("T")


def in_netns(path: str, func: Callable[[], T]) -> T:
    """func() in a short-lived thread that entered the network namespace at
    `path` (a file under /run/netns, or /proc/PID/ns/net); its result or its
    exception comes back to the caller, which never leaves its own namespace
    (setns() moves only the calling thread). OSError when `path` cannot be
    opened or entered."""
    import threading  # only named namespaces need it (import cost)

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    result: List[object] = []

    def enter_and_run() -> None:
        try:
            if hasattr(os, "setns"):  # Python 3.12+
                os.setns(fd, CLONE_NEWNET)  # type: ignore[attr-defined]
            else:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, os.strerror(code), path)
            result.append(func())
        except BaseException as err:  # re-raised in the caller's thread
            result.append(err)

    try:
        thread = threading.Thread(target=enter_and_run, name="virt-vlan-setns", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]  # type: ignore[return-value]


def on_socket(netns: Optional[str], read: Callable[[_socket.socket], Snapshot]) -> Snapshot:
    """read(sock) on a fresh rtnetlink socket of the host or of `netns`;
    every OSError as an ApplyError naming the namespace and the errno."""
    where = " in netns %s" % netns if netns else ""
    try:
        sock = route_socket(None if netns is None else netns_path(netns))
    except OSError as err:
        if netns is not None and err.errno == errno.ENOENT:
            raise ApplyError("network namespace %s does not exist (see `ip netns list`)"
                             % netns) from err
        raise ApplyError("cannot open a netlink socket%s: %s"
                         % (where, errno_name(err.errno or 0))) from err
    try:
        return read(sock)
    except OSError as err:
        raise ApplyError("netlink dump%s failed: %s"
                         % (where, errno_name(err.errno or 0))) from err
    finally:
        sock.close()


def read_snapshot(netns: Optional[str] = None) -> Snapshot:
    """All links (kind, master, VLAN id/parent, MTU, up, managed mark, MAC,
    addresses without IPv6 link-local) and the routes that name a link as
    output device (all tables but local; no proto-kernel, no IPv6 link-local
    or multicast routes) of the host or of network namespace `netns` (a
    name in /run/netns, or a path), which is never created. Equal to
    what pyroute2 reads (tests/kernel/test_rtnl.py); ApplyError on any failure."""
    return on_socket(netns, _read)
