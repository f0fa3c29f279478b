"""Plan steps: small frozen records that say what to change, nothing more.

Each action can
- render itself as the equivalent `ip`/`bridge` commands (dry-run, logs),
- simulate itself on a Snapshot (the planner's model of the kernel), and
- give the actions that undo it, given the snapshot before it ran
  (the executor's rollback).
The executor (apply.py) is the only place that turns them into netlink.
"""

from dataclasses import dataclass, field, replace
from typing import FrozenSet, Iterable, List, Optional, Tuple

from virtvlan.model import (MANAGED_ALIAS, NFT_BASE, NFT_FAMILY, NFT_MAP, NFT_TABLE, Address,
                            Link, PortVlans, Route, Snapshot)


class Action:
    """Base of all plan steps (see module docstring for the contract)."""

    def render(self) -> Tuple[str, ...]:
        raise NotImplementedError

    def simulate(self, snap: Snapshot) -> Snapshot:
        raise NotImplementedError

    def undo(self, before: Snapshot) -> Tuple["Action", ...]:
        """Actions restoring `before`; () when nothing needs undoing."""
        raise NotImplementedError

    def __str__(self) -> str:
        return "; ".join(self.render())


def _managed_lines(name: str) -> Tuple[str, ...]:
    # The alias marks the device as ours (model.MANAGED_ALIAS); addrgenmode
    # none keeps the kernel from giving a link-local IPv6 address to a device
    # that carries no host address (it would answer NDP on guest VLANs).
    return (
        "ip link set dev %s alias %s" % (name, MANAGED_ALIAS),
        "ip link set dev %s addrgenmode none" % name,
    )


@dataclass(frozen=True)
class CreateBridge(Action):
    """A new Linux bridge, marked as ours, STP off, no forward delay.

    `mac` is set for trunk bridges so that the host keeps the uplink's MAC
    (neighbours' ARP caches stay valid while addresses move to the bridge).
    `addrgen` False disables IPv6 link-local generation (bridge carries no
    host address).
    """

    name: str
    mtu: int
    mac: Optional[str] = None
    addrgen: bool = False

    def render(self) -> Tuple[str, ...]:
        head = "ip link add name %s mtu %d" % (self.name, self.mtu)
        if self.mac:
            head += " address %s" % self.mac
        head += (" type bridge stp_state 0 forward_delay 0"
                 " nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0")
        lines = _managed_lines(self.name)
        if self.addrgen:
            lines = lines[:1]
        return (head,) + lines

    def simulate(self, snap: Snapshot) -> Snapshot:
        # The kernel gives a new bridge itself its default PVID (1), untagged.
        return snap.with_link(Link(name=self.name, kind="bridge", mtu=self.mtu,
                                   up=False, managed=True, mac=self.mac or "",
                                   vlans=PortVlans(untagged=frozenset({1}), pvid=1)))

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        return (DeleteLink(self.name),)


@dataclass(frozen=True)
class CreateVlan(Action):
    """A new 802.1Q sub-interface `name` of `parent`, marked as ours.

    Its MTU is the parent's (the kernel's default for VLAN devices).
    `addrgen` as for CreateBridge.
    """

    name: str
    parent: str
    vlan_id: int
    addrgen: bool = False  # True for host VLANs, which carry host addresses

    def render(self) -> Tuple[str, ...]:
        lines = _managed_lines(self.name)
        return ("ip link add link %s name %s type vlan id %d"
                % (self.parent, self.name, self.vlan_id),) + (lines[:1] if self.addrgen else lines)

    def simulate(self, snap: Snapshot) -> Snapshot:
        parent = snap.get(self.parent)
        mtu = parent.mtu if parent else 1500
        return snap.with_link(Link(name=self.name, kind="vlan", parent=self.parent,
                                   vlan_id=self.vlan_id, mtu=mtu, up=False, managed=True))

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        return (DeleteLink(self.name),)


@dataclass(frozen=True)
class MarkManaged(Action):
    """Finish the creation of `name` that a killed run left unmarked (its
    intent is in state.py): set our alias and, unless `addrgen`, switch off
    IPv6 address generation, as CreateBridge/CreateVlan would have."""

    name: str
    addrgen: bool = False

    def render(self) -> Tuple[str, ...]:
        lines = _managed_lines(self.name)
        return lines[:1] if self.addrgen else lines

    def simulate(self, snap: Snapshot) -> Snapshot:
        return snap.changed(self.name, managed=True)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        # The device is ours either way: nothing to take back.
        return ()


@dataclass(frozen=True)
class SetMaster(Action):
    """Make `port` a port of `bridge`."""

    port: str
    bridge: str

    def render(self) -> Tuple[str, ...]:
        return ("ip link set dev %s master %s" % (self.port, self.bridge),)

    def simulate(self, snap: Snapshot) -> Snapshot:
        # A new port gets the bridge's default PVID, egress untagged
        # (nbp_vlan_init), whether the bridge filters or not. A snapshot
        # that did not read the bridge's VLAN table (vlans None) stays so.
        bridge = snap.get(self.bridge)
        vlans: Optional[PortVlans] = None
        if bridge is not None and bridge.vlans is not None:
            pvid = bridge.default_pvid
            vlans = PortVlans(untagged=frozenset({pvid}), pvid=pvid) if pvid else PortVlans()
        # A new port's flags are the kernel's defaults (new_nbp): not
        # isolated. (A snapshot that did not read the flag keeps None.)
        old = snap.get(self.port)
        isolated = None if old is None or old.isolated is None else False
        return snap.changed(self.port, master=self.bridge, vlans=vlans, isolated=isolated)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        old = before.get(self.port)
        if old is None or old.master == self.bridge:
            return ()
        if old.master is None:
            return (Release(self.port),)
        return (SetMaster(self.port, old.master),)


@dataclass(frozen=True)
class Release(Action):
    """Take `port` out of whatever bridge it is in."""

    port: str

    def render(self) -> Tuple[str, ...]:
        return ("ip link set dev %s nomaster" % self.port,)

    def simulate(self, snap: Snapshot) -> Snapshot:
        # The kernel flushes a leaving port's VLAN entries (nbp_vlan_flush).
        return snap.changed(self.port, master=None, vlans=None,
                            isolated=None if snap.get(self.port).isolated is None else False)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        old = before.get(self.port)
        if old is None or old.master is None:
            return ()
        return (SetMaster(self.port, old.master),)


@dataclass(frozen=True)
class SetMtu(Action):
    dev: str
    mtu: int

    def render(self) -> Tuple[str, ...]:
        return ("ip link set dev %s mtu %d" % (self.dev, self.mtu),)

    def simulate(self, snap: Snapshot) -> Snapshot:
        # Lowering a device's MTU lowers its VLAN devices' above it too
        # (vlan_device_event, NETDEV_CHANGEMTU); raising it leaves them.
        for child in snap.vlan_children(self.dev):
            if child.mtu > self.mtu:
                snap = snap.changed(child.name, mtu=self.mtu)
        return snap.changed(self.dev, mtu=self.mtu)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        old = before.get(self.dev)
        if old is None or old.mtu == self.mtu:
            return ()
        return (SetMtu(self.dev, old.mtu),)


@dataclass(frozen=True)
class SetUp(Action):
    dev: str

    def render(self) -> Tuple[str, ...]:
        return ("ip link set dev %s up" % self.dev,)

    def simulate(self, snap: Snapshot) -> Snapshot:
        return snap.changed(self.dev, up=True)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        old = before.get(self.dev)
        if old is None or old.up:
            return ()
        return (SetDown(self.dev),)


@dataclass(frozen=True)
class SetDown(Action):
    """Only ever used to roll back a SetUp of a device that was down."""

    dev: str

    def render(self) -> Tuple[str, ...]:
        return ("ip link set dev %s down" % self.dev,)

    def simulate(self, snap: Snapshot) -> Snapshot:
        return snap.changed(self.dev, up=False)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        old = before.get(self.dev)
        return (SetUp(self.dev),) if old is not None and old.up else ()


@dataclass(frozen=True)
class DeleteLink(Action):
    """Delete a device. The planner emits it only for devices we marked."""

    name: str

    def render(self) -> Tuple[str, ...]:
        return ("ip link del dev %s" % self.name,)

    def simulate(self, snap: Snapshot) -> Snapshot:
        # Ports of a deleted bridge leave it, and lose their VLAN entries.
        for port in snap.ports(self.name):
            snap = snap.changed(port.name, vlans=None)
        return snap.without_link(self.name)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        # Deletions come last in a plan, so nothing after them can fail and
        # need them undone; recreating a device is not attempted.
        return ()


@dataclass(frozen=True)
class MoveAddresses(Action):
    """Re-home the host's addresses and routes from `src` to `dst`.

    Contract for the executor, in this order so the host stays reachable:
    add every address to `dst`, `replace` every route onto `dst`, then
    delete the addresses from `src` (which drops src's remaining routes).
    """

    src: str
    dst: str
    addresses: Tuple[Address, ...]
    routes: Tuple[Route, ...] = ()

    def render(self) -> Tuple[str, ...]:
        lines = ["ip addr add %s%s dev %s" % (a.cidr, " brd " + a.broadcast if a.broadcast else "",
                                              self.dst) for a in self.addresses]
        lines += [r.render(self.dst) for r in self.routes]
        lines += ["ip addr del %s dev %s" % (a.cidr, self.src) for a in self.addresses]
        return tuple(lines)

    def simulate(self, snap: Snapshot) -> Snapshot:
        src, dst = snap.get(self.src), snap.get(self.dst)
        assert src is not None and dst is not None
        moved = set(self.addresses)
        snap = snap.with_link(replace(src, addresses=tuple(a for a in src.addresses if a not in moved)))
        snap = snap.with_link(replace(dst, addresses=dst.addresses + tuple(
            a for a in self.addresses if a not in dst.addresses)))
        routes = tuple(replace(r, dev=self.dst) if r.dev == self.src else r for r in snap.routes)
        return replace(snap, routes=routes)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        routes = tuple(replace(r, dev=self.dst) for r in self.routes)
        return (MoveAddresses(self.dst, self.src, self.addresses, routes),)


def vlan_ranges(vids: Iterable[int]) -> Tuple[Tuple[int, int], ...]:
    """Sorted VIDs as (first, last) runs of consecutive numbers."""
    runs: List[List[int]] = []
    for vid in sorted(set(vids)):
        if runs and runs[-1][1] == vid - 1:
            runs[-1][1] = vid
        else:
            runs.append([vid, vid])
    return tuple((first, last) for first, last in runs)


def _vid_text(first: int, last: int) -> str:
    return str(first) if first == last else "%d-%d" % (first, last)


def _port_vlans(link: Link) -> PortVlans:
    return link.vlans if link.vlans is not None else PortVlans()


def restore_vlans(dev: str, vids: FrozenSet[int], old: PortVlans,
                  self_: bool) -> Tuple[Action, ...]:
    """Actions putting the entries `vids` of `dev` back as `old` had them."""
    out: List[Action] = []
    gone = vids - old.members
    for first, last in vlan_ranges(gone):
        out.append(DelBridgeVlan(dev, first, last, self_))
    tagged = (vids & old.tagged) - {old.pvid}
    for first, last in vlan_ranges(tagged):
        out.append(AddBridgeVlan(dev, first, last, self_=self_))
    # Untagged entries and the PVID one VID at a time: the kernel refuses the
    # PVID flag on a range.
    for vid in sorted((vids & old.untagged) | ({old.pvid} & vids - {None})):
        out.append(AddBridgeVlan(dev, vid, vid, pvid=vid == old.pvid,
                                 untagged=vid in old.untagged, self_=self_))
    return tuple(out)


@dataclass(frozen=True)
class AddBridgeVlan(Action):
    """Make `dev` (a bridge port, or with `self_` the bridge itself) a
    member of VIDs first..last, as `bridge vlan add` does: an existing entry
    gets exactly these flags (the kernel rewrites them), and a VID that was
    the PVID stops being it unless `pvid` is set. `pvid` only on one VID."""

    dev: str
    first: int
    last: int
    pvid: bool = False
    untagged: bool = False
    self_: bool = False

    def __post_init__(self) -> None:
        assert 1 <= self.first <= self.last <= 4094
        assert not self.pvid or self.first == self.last, "no PVID on a range"

    @property
    def vids(self) -> FrozenSet[int]:
        return frozenset(range(self.first, self.last + 1))

    def render(self) -> Tuple[str, ...]:
        words = ["bridge vlan add dev", self.dev, "vid", _vid_text(self.first, self.last)]
        if self.pvid:
            words.append("pvid")
        if self.untagged:
            words.append("untagged")
        if self.self_:
            words.append("self")
        return (" ".join(words),)

    def simulate(self, snap: Snapshot) -> Snapshot:
        old = _port_vlans(snap.get(self.dev))  # type: ignore[arg-type]
        vids = self.vids
        pvid = self.first if self.pvid else (None if old.pvid in vids else old.pvid)
        if self.untagged:
            new = PortVlans(tagged=old.tagged - vids, untagged=old.untagged | vids, pvid=pvid)
        else:
            new = PortVlans(tagged=old.tagged | vids, untagged=old.untagged - vids, pvid=pvid)
        return snap.changed(self.dev, vlans=new)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        link = before.get(self.dev)
        if link is None:
            return ()
        old = _port_vlans(link)
        undo = restore_vlans(self.dev, self.vids, old, self.self_)
        if self.pvid and old.pvid is not None and old.pvid != self.first:
            undo += restore_vlans(self.dev, frozenset({old.pvid}), old, self.self_)
        return undo


@dataclass(frozen=True)
class DelBridgeVlan(Action):
    """Remove VIDs first..last from `dev` (or with `self_` from the bridge
    itself). Never sent with the master flag on a port: that would also
    delete the bridge's self entry that its VLAN devices need."""

    dev: str
    first: int
    last: int
    self_: bool = False

    def __post_init__(self) -> None:
        assert 1 <= self.first <= self.last <= 4094

    @property
    def vids(self) -> FrozenSet[int]:
        return frozenset(range(self.first, self.last + 1))

    def render(self) -> Tuple[str, ...]:
        return ("bridge vlan del dev %s vid %s%s" % (self.dev, _vid_text(self.first, self.last),
                                                    " self" if self.self_ else ""),)

    def simulate(self, snap: Snapshot) -> Snapshot:
        old = _port_vlans(snap.get(self.dev))  # type: ignore[arg-type]
        vids = self.vids
        new = PortVlans(tagged=old.tagged - vids, untagged=old.untagged - vids,
                        pvid=None if old.pvid in vids else old.pvid)
        return snap.changed(self.dev, vlans=new)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        link = before.get(self.dev)
        if link is None:
            return ()
        old = _port_vlans(link)
        return restore_vlans(self.dev, self.vids & old.members, old, self.self_)


@dataclass(frozen=True)
class SetVlanFiltering(Action):
    """Switch VLAN filtering of bridge `bridge` on or off. The planner
    switches it on only after every entry is programmed (turning it on
    drops, at once, every tagged flow whose VIDs are not members yet)."""

    bridge: str
    on: bool = True

    def render(self) -> Tuple[str, ...]:
        return ("ip link set dev %s type bridge vlan_filtering %d" % (self.bridge, int(self.on)),)

    def simulate(self, snap: Snapshot) -> Snapshot:
        return snap.changed(self.bridge, vlan_filtering=self.on)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        old = before.get(self.bridge)
        if old is None or old.vlan_filtering == self.on:
            return ()
        return (SetVlanFiltering(self.bridge, old.vlan_filtering),)


@dataclass(frozen=True)
class Plan:
    """Ordered actions; empty means the host is already as wanted.

    `warnings` are lines the caller logs (at WARNING) when it applies the
    plan or plans it for a dry run: things that work but that the admin
    should know (an adopted trunk bridge that does not filter, trunk guests
    widened to every allowed VLAN at a conversion)."""

    actions: Tuple[Action, ...] = ()
    warnings: Tuple[str, ...] = field(default=(), compare=False)

    def __bool__(self) -> bool:
        return bool(self.actions)

    def __len__(self) -> int:
        return len(self.actions)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.actions)

    def render(self) -> Tuple[str, ...]:
        return tuple(line for action in self.actions for line in action.render())

    def simulate(self, snap: Snapshot) -> Snapshot:
        for action in self.actions:
            snap = action.simulate(snap)
        return snap


# --- port security (docs/port-security.md) ------------------------------------------------

# Before libvirt's and anyone's filter chains; frames dropped here are never
# learned into the FDB either (br_handle_frame runs the hook first).
NFT_PRIORITY = -300
# A link-local address is always a guest's own (ARP probes come from 0.0.0.0).
_LINK_LOCAL6 = "0xfe800000000000000000000000000000-0xfebfffffffffffffffffffffffffffff"


def filter_chain(port: str) -> str:
    """The chain of `port`: an nft identifier (nft takes no quoted chain
    names), so a port name with other characters is spelled in hex."""
    if all(c.isascii() and (c.isalnum() or c in "_.-") for c in port):
        return "port-" + port
    return "port-x" + port.encode().hex()


def _hex6(address: str) -> str:
    import ipaddress

    return "0x%032x" % int(ipaddress.IPv6Address(address))


def _rule_text(spec: str) -> Optional[str]:
    """The nft rule (without `add rule TABLE CHAIN`) for one rule spec, or
    None for a spec this version does not know (left out when rendering).

    A spec is the rule's comment in the kernel, so the snapshot reads the
    rules back as specs (host/nftables.py) and the planner compares them as
    plain strings. Specs: stp, mac=M, arp=M, nd=M, arp-ip=A,B, nd-ip=A,B,
    ra, dhcp, dhcp6, tagged, qinq."""
    name, _, value = spec.partition("=")
    hexmac = value.replace(":", "")
    if name == "stp":
        # IEEE 802.1D link-local group 01:80:c2:00:00:0X: BPDUs, LLDP, LACP, 802.1X.
        return "ether daddr & ff:ff:ff:ff:ff:f0 == 01:80:c2:00:00:00 drop"
    if name == "mac" and value:
        return "ether saddr != %s drop" % value
    if name == "arp" and value:
        return "arp saddr ether != %s drop" % value
    if name == "nd" and value:
        # The link-layer address option right after the target address
        # (offset 24 of the ICMPv6 message): source LLA (type 1) of a
        # solicitation, target LLA (type 2) of an advertisement.
        return ("icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } "
                "@th,208,48 != 0x%s @th,192,8 { 1, 2 } @th,200,8 1 drop" % hexmac)
    if name == "arp-ip":
        senders = ["0.0.0.0"] + [a for a in value.split(",") if a]
        return "arp saddr ip != { %s } drop" % ", ".join(senders)
    if name == "nd-ip":
        # The advertised target address (offset 8): link-local or listed.
        targets = [_LINK_LOCAL6] + [_hex6(a) for a in value.split(",") if a]
        return ("icmpv6 type nd-neighbor-advert @th,64,128 != { %s } drop"
                % ", ".join(targets))
    if name == "ra":
        return "icmpv6 type nd-router-advert drop"
    if name == "dhcp":
        return "udp sport 67 udp dport 68 drop"
    if name == "dhcp6":
        return "udp sport 547 drop"
    if name == "tagged":
        # VID 0 is a priority tag, not a VLAN: it passes.
        return "ether type 8021q vlan id != 0 drop"
    if name == "qinq":
        return "ether type 8021ad drop"
    return None


def filter_rule(port: str, spec: str) -> Optional[str]:
    """The `add rule` line (without `nft `) of rule spec `spec` in `port`'s
    chain, as SetPortFilter writes it; None for a spec this version does
    not know."""
    text = _rule_text(spec)
    if text is None:
        return None
    return 'add rule %s %s %s %s comment "%s"' % (NFT_FAMILY, NFT_TABLE, filter_chain(port),
                                                  text, spec)


def _nft_head() -> Tuple[str, ...]:
    """The table, its dispatch chain and map; idempotent in one transaction
    (`add` of what exists is no error; the dispatch rule is flushed and
    added again, atomically, so it is there exactly once)."""
    table = "%s %s" % (NFT_FAMILY, NFT_TABLE)
    return ("add table %s" % table,
            "add map %s %s { type ifname : verdict; }" % (table, NFT_MAP),
            "add chain %s %s { type filter hook prerouting priority %d; policy accept; }"
            % (table, NFT_BASE, NFT_PRIORITY),
            "flush chain %s %s" % (table, NFT_BASE),
            "add rule %s %s iifname vmap @%s" % (table, NFT_BASE, NFT_MAP))


@dataclass(frozen=True)
class SetPortFilter(Action):
    """Give guest port `port` exactly the filter rules `rules` (specs, see
    _rule_text) in virt-vlan's nftables table; () removes its chain and its
    dispatch entry. Rendered as one `nft -f -` script that the kernel applies
    atomically: the port is never half filtered. The rules match the input
    interface name, so they hold before the port joins its bridge."""

    port: str
    rules: Tuple[str, ...] = ()

    def script(self) -> Tuple[str, ...]:
        table = "%s %s" % (NFT_FAMILY, NFT_TABLE)
        chain = filter_chain(self.port)
        element = '{ "%s" : jump %s }' % (self.port, chain)
        # Added first so that the flush/delete below never meet a missing object.
        lines = _nft_head() + ("add chain %s %s" % (table, chain),
                               "flush chain %s %s" % (table, chain))
        if not self.rules:
            return lines + ("add element %s %s %s" % (table, NFT_MAP, element),
                            'delete element %s %s { "%s" }' % (table, NFT_MAP, self.port),
                            "delete chain %s %s" % (table, chain))
        for spec in self.rules:
            line = filter_rule(self.port, spec)
            if line is not None:
                lines += (line,)
        return lines + ("add element %s %s %s" % (table, NFT_MAP, element),)

    def render(self) -> Tuple[str, ...]:
        # One `nft -f -` transaction in truth; shown one command per line.
        return tuple("nft " + line for line in self.script())

    def simulate(self, snap: Snapshot) -> Snapshot:
        rules = tuple(r for r in self.rules if _rule_text(r) is not None)
        return snap.with_filter(self.port, rules)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        old = before.port_filter(self.port)
        return () if old == self.rules else (SetPortFilter(self.port, old),)


@dataclass(frozen=True)
class SetIsolated(Action):
    """The bridge port flag `isolated` of `port`: isolated ports of one
    bridge do not forward to each other, only to non-isolated ports (the
    uplink's feed)."""

    port: str
    on: bool = True

    def render(self) -> Tuple[str, ...]:
        return ("bridge link set dev %s isolated %s" % (self.port, "on" if self.on else "off"),)

    def simulate(self, snap: Snapshot) -> Snapshot:
        return snap.changed(self.port, isolated=self.on)

    def undo(self, before: Snapshot) -> Tuple[Action, ...]:
        old = before.get(self.port)
        if old is None or bool(old.isolated) == self.on:
            return ()
        return (SetIsolated(self.port, bool(old.isolated)),)
