"""Plan steps: small frozen records that say what to change, nothing more.

Each action can
- render itself as the equivalent `ip`/`bridge` commands (dry-run, logs),
- simulate itself on a Snapshot (the planner's model of the kernel), and
- give the actions that undo it, given the snapshot before it ran
  (the executor's rollback).
The executor (apply.py) is the only place that turns them into netlink.
"""

from dataclasses import dataclass, replace
from typing import Optional, Tuple

from .model import MANAGED_ALIAS, Address, Link, Route, Snapshot


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
        return snap.with_link(Link(name=self.name, kind="bridge", mtu=self.mtu,
                                   up=False, managed=True, mac=self.mac or ""))

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
class SetMaster(Action):
    """Make `port` a port of `bridge`."""

    port: str
    bridge: str

    def render(self) -> Tuple[str, ...]:
        return ("ip link set dev %s master %s" % (self.port, self.bridge),)

    def simulate(self, snap: Snapshot) -> Snapshot:
        return snap.changed(self.port, master=self.bridge)

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
        return snap.changed(self.port, master=None)

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


@dataclass(frozen=True)
class Plan:
    """Ordered actions; empty means the host is already as wanted."""

    actions: Tuple[Action, ...] = ()

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
