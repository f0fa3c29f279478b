"""Netlink reading for the executor: open a socket, turn dumps into a Snapshot.

Together with apply.py this is the only code that imports pyroute2. It is
written against the API common to pyroute2 0.7.3 (Debian 12, RHEL 9) and
0.9.x: `IPRoute()`, `NetNS(name, flags=0)`, `link/addr/route` calls and
`get_attr` on the messages.
"""

import errno
import ipaddress
import logging
from contextlib import contextmanager
from socket import AF_INET, AF_INET6
from typing import Dict, Iterator, List, Optional, Tuple

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError

from virtvlan.errors import ApplyError
from virtvlan.model import MANAGED_ALIAS, Address, Link, PortVlans, Route, Snapshot
from virtvlan.host.rtnl import (
    ADDR_SCOPES,
    AF_BRIDGE,
    BRIDGE_VLAN_INFO_PVID,
    BRIDGE_VLAN_INFO_RANGE_BEGIN,
    BRIDGE_VLAN_INFO_RANGE_END,
    BRIDGE_VLAN_INFO_UNTAGGED,
    errno_name,
    FAMILIES,
    IFA_F_PERMANENT,
    IFF_UP,
    PROTOS,
    ROUTE_SCOPES,
    RT_TABLE_LOCAL,
    RTN_UNICAST,
    RTEXT_FILTER_BRVLAN_COMPRESSED,
    RTPROT_KERNEL,
)

log = logging.getLogger(__name__)

IFA_F_NODAD = 0x02

_LINK_LOCAL6 = ipaddress.ip_network("fe80::/10")
_MULTICAST6 = ipaddress.ip_network("ff00::/8")


def family_number(family: str) -> int:
    return AF_INET6 if family == "inet6" else AF_INET


def proto_number(name: str) -> int:
    """`ip` accepts a protocol by name or number; so do we."""
    for number, known in PROTOS.items():
        if known == name:
            return number
    return int(name)


def scope_number(name: str) -> int:
    for number, known in ROUTE_SCOPES.items():
        if known == name:
            return number
    if name == "global":
        return 0
    return int(name)


def errno_text(err: BaseException) -> str:
    """'EEXIST (File exists)': errno name plus the kernel's (or extack) text."""
    code = getattr(err, "code", None) or getattr(err, "errno", None)
    if not isinstance(code, int):
        return str(err)
    return errno_name(code, err.args[1] if len(err.args) > 1 else None)


@contextmanager
def open_socket(netns: Optional[str] = None) -> Iterator[IPRoute]:
    """An rtnetlink socket in the current or the named network namespace.

    flags=0: NetNS would otherwise create a missing namespace (O_CREAT), and a
    typo in a namespace name must not silently configure an empty one.
    """
    try:
        ipr = IPRoute() if netns is None else NetNS(netns, flags=0)
    except OSError as err:
        if netns is not None and err.errno == errno.ENOENT:
            raise ApplyError("network namespace %s does not exist (see `ip netns list`)"
                             % netns) from err
        raise ApplyError("cannot open a netlink socket%s: %s"
                         % (" in netns %s" % netns if netns else "", errno_text(err))) from err
    try:
        yield ipr
    finally:
        ipr.close()


def link_index(ipr: IPRoute, name: str) -> Optional[int]:
    """Index of the link called `name`, None when there is none (ENODEV)."""
    try:
        return int(ipr.link("get", ifname=name)[0]["index"])
    except NetlinkError as err:
        if err.code == errno.ENODEV:
            return None
        raise


def link_alias(ipr: IPRoute, index: int) -> Optional[str]:
    return ipr.link("get", index=index)[0].get_attr("IFLA_IFALIAS")


def _bridge_options(info) -> Dict[str, object]:  # type: ignore[no-untyped-def]
    data = info.get_attr("IFLA_INFO_DATA")
    if data is None:
        return {"default_pvid": 0}
    return {"vlan_filtering": bool(data.get_attr("IFLA_BR_VLAN_FILTERING")),
            # Absent without CONFIG_BRIDGE_VLAN_FILTERING: no default entry.
            "default_pvid": data.get_attr("IFLA_BR_VLAN_DEFAULT_PVID") or 0,
            "stp": bool(data.get_attr("IFLA_BR_STP_STATE")),
            "nf_call": bool(data.get_attr("IFLA_BR_NF_CALL_IPTABLES"))}


def _port_vlans(msg) -> PortVlans:  # type: ignore[no-untyped-def]
    """The entries of one AF_BRIDGE link message (ranges expanded)."""
    tagged, untagged, pvid, begin = set(), set(), None, None
    spec = msg.get_attr("IFLA_AF_SPEC")
    for entry in (spec.get_attrs("IFLA_BRIDGE_VLAN_INFO") if spec is not None else ()):
        flags, vid = entry["flags"], entry["vid"]
        if flags & BRIDGE_VLAN_INFO_RANGE_BEGIN:
            begin = vid
            continue
        first = begin if begin is not None and flags & BRIDGE_VLAN_INFO_RANGE_END else vid
        begin = None
        (untagged if flags & BRIDGE_VLAN_INFO_UNTAGGED else tagged).update(range(first, vid + 1))
        if flags & BRIDGE_VLAN_INFO_PVID:
            pvid = vid
    return PortVlans(frozenset(tagged), frozenset(untagged), pvid)


def _link(msg, names: Dict[int, str],  # type: ignore[no-untyped-def]
          addresses: Tuple[Address, ...], vlans: Optional[PortVlans] = None) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    vlan_id = parent = None
    bridge: Dict[str, object] = {}
    if kind == "bridge":
        bridge = _bridge_options(info)
    if kind == "vlan":
        data = info.get_attr("IFLA_INFO_DATA")
        vlan_id = data.get_attr("IFLA_VLAN_ID") if data is not None else None
        # IFLA_LINK_NETNSID: the lower device lives in another namespace, so
        # the index means nothing here.
        if msg.get_attr("IFLA_LINK_NETNSID") is None:
            parent = names.get(msg.get_attr("IFLA_LINK"))
    master = msg.get_attr("IFLA_MASTER")
    return Link(name=msg.get_attr("IFLA_IFNAME"), kind=kind or "device", index=msg["index"],
                master=names.get(master) if master else None, vlan_id=vlan_id,
                parent=parent, mtu=msg.get_attr("IFLA_MTU") or 0,
                up=bool(msg["flags"] & IFF_UP),
                managed=msg.get_attr("IFLA_IFALIAS") == MANAGED_ALIAS,
                mac=msg.get_attr("IFLA_ADDRESS") or "", addresses=addresses, vlans=vlans,
                **bridge)  # type: ignore[arg-type]


def _address(msg) -> Optional[Address]:  # type: ignore[no-untyped-def]
    family = FAMILIES.get(msg["family"])
    # IPv4 puts our own address in IFA_LOCAL (IFA_ADDRESS is the peer on
    # point-to-point links); IPv6 only has IFA_ADDRESS unless a peer is set.
    local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    if family is None or local is None:
        return None
    if family == "inet6" and ipaddress.ip_address(local) in _LINK_LOCAL6:
        return None  # per-device, regenerated by the kernel, never moved
    flags = msg.get_attr("IFA_FLAGS")
    flags = msg["flags"] if flags is None else flags
    return Address(family=family, local=local, prefixlen=msg["prefixlen"],
                   dynamic=not flags & IFA_F_PERMANENT,
                   scope=ADDR_SCOPES.get(msg["scope"], str(msg["scope"])),
                   broadcast=msg.get_attr("IFA_BROADCAST"))


def _route(msg, names: Dict[int, str]) -> Optional[Route]:  # type: ignore[no-untyped-def]
    family = FAMILIES.get(msg["family"])
    table = msg.get_attr("RTA_TABLE") or msg["table"]
    oif = msg.get_attr("RTA_OIF")
    if (family is None or table == RT_TABLE_LOCAL or msg["proto"] == RTPROT_KERNEL
            or msg["type"] != RTN_UNICAST or oif not in names):
        # Kernel routes come back with their address; local-table and
        # non-unicast routes are not re-homed; multipath routes have no
        # RTA_OIF (one device per nexthop) and cannot be moved as one.
        return None
    if msg.get_attr("RTA_VIA") or msg.get_attr("RTA_NH_ID") or msg["src_len"]:
        log.debug("not modelling route %s: nexthop object, RTA_VIA or source prefix", msg)
        return None
    dst = msg.get_attr("RTA_DST")
    if msg["dst_len"] == 0:
        dst_text = "default"
    else:
        dst_text = "%s/%d" % (dst, msg["dst_len"])
        if family == "inet6":
            net = ipaddress.ip_network(dst_text, strict=False)
            if net.subnet_of(_LINK_LOCAL6) or net.subnet_of(_MULTICAST6):  # type: ignore[arg-type]
                return None
    return Route(family=family, dst=dst_text, dev=names[oif],
                 gateway=msg.get_attr("RTA_GATEWAY"), metric=msg.get_attr("RTA_PRIORITY"),
                 table=table, proto=PROTOS.get(msg["proto"], str(msg["proto"])),
                 scope=ROUTE_SCOPES.get(msg["scope"], str(msg["scope"])),
                 prefsrc=msg.get_attr("RTA_PREFSRC"))


def read(ipr: IPRoute) -> Snapshot:
    """The Snapshot seen through an open socket (see apply.read_snapshot)."""
    raw = list(ipr.get_links())
    names = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in raw}
    addresses: Dict[int, List[Address]] = {}
    for msg in ipr.get_addr():
        addr = _address(msg)
        if addr is not None:
            addresses.setdefault(msg["index"], []).append(addr)
    tables: Dict[int, PortVlans] = {}
    for msg in ipr.link("dump", family=AF_BRIDGE, ext_mask=RTEXT_FILTER_BRVLAN_COMPRESSED):
        tables.setdefault(msg["index"], _port_vlans(msg))
    kinds = {}
    for msg in raw:
        info = msg.get_attr("IFLA_LINKINFO")
        kinds[msg["index"]] = info.get_attr("IFLA_INFO_KIND") if info is not None else None

    def vlans(msg) -> Optional[PortVlans]:  # type: ignore[no-untyped-def]
        master = msg.get_attr("IFLA_MASTER")
        if kinds[msg["index"]] == "bridge" or (master and kinds.get(master) == "bridge"):
            return tables.get(msg["index"], PortVlans())
        return None

    links = tuple(_link(msg, names, tuple(addresses.get(msg["index"], ())), vlans(msg))
                  for msg in raw)
    routes = []
    for family in (AF_INET, AF_INET6):
        for msg in ipr.get_routes(family=family):
            route = _route(msg, names)
            if route is not None:
                routes.append(route)
    return Snapshot(links=links, routes=tuple(routes))
