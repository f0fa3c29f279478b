"""Plain data that crosses layers: what the host looks like and what is wanted.

Everything here is a frozen dataclass with no I/O, so the planner can be
tested on hand-written snapshots and the executor can build the same
structures from netlink.
"""

from dataclasses import dataclass, field, replace
from typing import Dict, FrozenSet, Iterator, Optional, Tuple

# Written into IFLA_IFALIAS of every device virt-vlan creates. The alias lives
# in the kernel, so ownership survives our process and a host-side restart of
# libvirtd; cleanup deletes only devices that carry it.
MANAGED_ALIAS = "virt-vlan:managed"

# virt-vlan's own nftables table (port security, docs/port-security.md):
# bridge family, so it filters bridged frames in the kernel without
# br_netfilter. Its prerouting base chain dispatches by input port through
# the verdict map `ports` to one chain per guest port; nothing else of the
# host's nftables is touched.
NFT_FAMILY = "bridge"
NFT_TABLE = "virt_vlan"
NFT_MAP = "ports"
NFT_BASE = "prerouting"

ACCESS = "access"
TRUNK = "trunk"
MODES = (ACCESS, TRUNK)


@dataclass(frozen=True)
class Address:
    """One IP address on a link, as `ip -json addr` would list it."""

    family: str  # "inet" or "inet6"
    local: str
    prefixlen: int
    # Not IFA_F_PERMANENT: a DHCP client or SLAAC owns it and would fight a move.
    dynamic: bool = False
    scope: str = "global"
    broadcast: Optional[str] = None  # IPv4 IFA_BROADCAST, kept as it was on a move

    @property
    def cidr(self) -> str:
        return "%s/%d" % (self.local, self.prefixlen)


@dataclass(frozen=True)
class Route:
    """A route whose output device is a link we may re-home (trunk wiring)."""

    family: str  # "inet" or "inet6"
    dst: str  # "default" or "a.b.c.d/n"
    dev: str
    gateway: Optional[str] = None
    metric: Optional[int] = None
    table: int = 254  # RT_TABLE_MAIN
    proto: str = "static"
    scope: str = "universe"
    prefsrc: Optional[str] = None

    def render(self, dev: Optional[str] = None) -> str:
        """The `ip route` arguments that recreate this route (on `dev`)."""
        words = ["-6" if self.family == "inet6" else "-4", "route", "replace", self.dst]
        if self.gateway:
            words += ["via", self.gateway]
        words += ["dev", dev or self.dev]
        if self.metric is not None:
            words += ["metric", str(self.metric)]
        if self.table != 254:
            words += ["table", str(self.table)]
        if self.proto != "boot":
            words += ["proto", self.proto]
        if self.scope != "universe":
            words += ["scope", self.scope]
        if self.prefsrc:
            words += ["src", self.prefsrc]
        return "ip " + " ".join(words)


@dataclass(frozen=True)
class PortVlans:
    """The bridge VLAN entries of one bridge port, or of the bridge itself
    (its `self` entries), as `bridge vlan show` lists them.

    `tagged` and `untagged` are the VIDs the port is a member of, by how
    frames of that VID leave it (egress tagged / untagged); `pvid` is the VID
    untagged frames arriving on it are classified into (None: they are
    dropped when the bridge filters).
    """

    tagged: FrozenSet[int] = frozenset()
    untagged: FrozenSet[int] = frozenset()
    pvid: Optional[int] = None

    @property
    def members(self) -> FrozenSet[int]:
        return self.tagged | self.untagged


@dataclass(frozen=True)
class Link:
    """One network device, reduced to what planning needs.

    `kind` is the rtnetlink kind ("bridge", "vlan", "bond", "veth", "tun",
    "dummy", ...) or "device" for hardware NICs, which have none.
    `master` and `parent` are names, resolved by the snapshot reader.
    """

    name: str
    kind: str = "device"
    index: int = 0
    master: Optional[str] = None
    vlan_id: Optional[int] = None
    parent: Optional[str] = None
    mtu: int = 1500
    up: bool = True
    managed: bool = False
    mac: str = ""
    addresses: Tuple[Address, ...] = ()
    # Bridges only (IFLA_BR_*): whether the bridge enforces VLAN membership,
    # the PVID it gives new ports (0: none), STP, and whether bridged frames
    # go through iptables/ip6tables/arptables (br_netfilter).
    vlan_filtering: bool = False
    default_pvid: int = 1
    stp: bool = False
    nf_call: bool = False
    # Bridge VLAN entries of a bridge port or of a bridge itself; None when
    # they were not read (not a bridge or port, or a snapshot that did not ask).
    vlans: Optional[PortVlans] = None
    # Bridge ports only: the port's `isolated` flag (IFLA_BRPORT_ISOLATED);
    # None when not read (not a port, or a snapshot that did not ask).
    isolated: Optional[bool] = None


@dataclass(frozen=True)
class PortFilter:
    """virt-vlan's nftables chain for one guest port, as read back: the
    rule specs (each rule's comment, see plan/actions.py FILTER_RULES) in
    chain order. A spec virt-vlan does not know reads as itself and never
    matches a wanted chain, so the planner rewrites the chain."""

    port: str
    rules: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Protection:
    """What port security one guest port asked for (docs/port-security.md);
    the planner turns it into filter rules by the NIC's mode.

    `allow`: exceptions from config.EXCEPTIONS (already checked against the
    uplink's allowed-exceptions); `guard_router`: the rogue-server guard on a
    trunk NIC; `ips`: the guest's own addresses (empty: not checked)."""

    mac: str
    allow: FrozenSet[str] = frozenset()
    guard_router: bool = False
    isolated: bool = False
    ips: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """The links (and re-homeable routes) of the host at one moment."""

    links: Tuple[Link, ...] = ()
    routes: Tuple[Route, ...] = ()
    # virt-vlan's nftables port filters (one per guest port it protects);
    # None when not read (nft missing, or a snapshot that did not ask).
    filters: Optional[Tuple[PortFilter, ...]] = None
    _by_name: Dict[str, Link] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {link.name: link for link in self.links})

    def __iter__(self) -> Iterator[Link]:
        return iter(self.links)

    def get(self, name: str) -> Optional[Link]:
        return self._by_name.get(name)

    def ports(self, bridge: str) -> Tuple[Link, ...]:
        """Links whose master is `bridge`, in snapshot order."""
        return tuple(link for link in self.links if link.master == bridge)

    def vlan_children(self, parent: str) -> Tuple[Link, ...]:
        """VLAN sub-interfaces whose lower device is `parent`."""
        return tuple(l for l in self.links if l.kind == "vlan" and l.parent == parent)

    def routes_via(self, dev: str) -> Tuple[Route, ...]:
        return tuple(r for r in self.routes if r.dev == dev)

    def port_filter(self, port: str) -> Tuple[str, ...]:
        """The rule specs of `port`'s filter chain; () when it has none."""
        for found in self.filters or ():
            if found.port == port:
                return found.rules
        return ()

    def with_filter(self, port: str, rules: Tuple[str, ...]) -> "Snapshot":
        """`port`'s filter set to `rules` (removed when empty)."""
        kept = tuple(f for f in self.filters or () if f.port != port)
        if rules:
            kept += (PortFilter(port, rules),)
        return replace(self, filters=kept)

    # The methods below return new snapshots; the planner uses them to model
    # its own actions (and the property test uses them to replay a plan).

    def with_link(self, link: Link) -> "Snapshot":
        """Add `link`, or replace the link of the same name."""
        if link.name in self._by_name:
            links = tuple(link if l.name == link.name else l for l in self.links)
        else:
            links = self.links + (link,)
        return replace(self, links=links)

    def without_link(self, name: str) -> "Snapshot":
        """Remove `name` the way the kernel does: its ports lose their master
        and its VLAN children are deleted with it (unregister_vlan_dev)."""
        children = {l.name for l in self.vlan_children(name)}
        links = []
        for link in self.links:
            if link.name == name or link.name in children:
                continue
            if link.master == name or link.master in children:
                link = replace(link, master=None)
            links.append(link)
        routes = tuple(r for r in self.routes if r.dev != name and r.dev not in children)
        return replace(self, links=tuple(links), routes=routes)

    def changed(self, name: str, **changes: object) -> "Snapshot":
        link = self._by_name[name]
        return self.with_link(replace(link, **changes))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Want:
    """One guest port's VLAN wish, validated against the config.

    `port` is the tap (or veth standing in for one); None at libvirt's
    `prepare`, when only the bridges and feeds must exist.
    """

    uplink: str
    mode: str
    vlans: Tuple[int, ...]
    port: Optional[str] = None
    who: str = ""  # "domain vm1, interface 52:54:00:..", for messages
    # Trunk only: the VLAN the guest sends and receives untagged (PVID of
    # its tap); None: its untagged frames are dropped.
    native: Optional[int] = None
    # Port security of `port`; None: unprotected (port-security = no, or a
    # want without a port).
    protection: Optional[Protection] = None


@dataclass(frozen=True)
class Scope:
    """What a scoped read of the host returns (host/scoped.py read_scoped; the
    planner's needs: plan/scope.py scope_for; the same set cut out of a full
    snapshot: plan/scope.py restrict).

    - `names`: links read by name (a name that does not exist is absent),
      each with the link that is its master;
    - `port_sets`: bridges whose ports (links with that master) are read;
    - `vlan_parents`: devices whose VLAN sub-interfaces are read (without
      VLAN tables: the planner reads only their names, ids and masters);
    - `routes_of`: devices whose addresses and routes are read (every other
      link has no addresses);
    - `filters`: virt-vlan's nftables port filters are read too (by the
      caller: nft, not rtnetlink);
    - `full`: everything, as read_snapshot() (the other fields are then moot).
    Bridges and bridge ports among the named links, their masters and the
    port sets carry their VLAN tables and `isolated` flags, as in a full read.
    """

    names: FrozenSet[str] = frozenset()
    port_sets: FrozenSet[str] = frozenset()
    vlan_parents: FrozenSet[str] = frozenset()
    routes_of: FrozenSet[str] = frozenset()
    filters: bool = False
    full: bool = False
