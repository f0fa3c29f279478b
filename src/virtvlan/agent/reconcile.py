"""What running guests and networks want, and making the host match it.

The agent keeps, per running tagged domain and per running virt-vlan
network, the wants parsed from libvirt's live XML (`Desired`). Wiring from
that cache needs no libvirt call, so the netlink heal path and the periodic
path share one function. The XML is always fetched before the host lock is
taken: libvirt may be running a hook for the same domain, and that hook
waits for the lock (a deadlock if we held it while waiting on libvirt).

Decisions taken here, on data (tests/unit/test_reconcile.py):
- a want is wired only if its tap exists and carries the guest's MAC (libvirt
  gives a tap the guest MAC with the first byte 0xfe), or, when udev gave the
  tap another address, if the guest's QEMU holds it (host/tapowner.py) or,
  where the kernel cannot tell, if libvirt named it just now; so a tap name
  reused by another guest after a stop is never rewired from a stale cache;
- a network's want is wired only while the network hook's reservation of its
  bridge exists (between network `start` and `stopped`);
- what no running guest or network needs is removed by the engine's cleanup,
  which keeps reserved bridges (guests between `prepare` and `start`);
- port security (docs/port-security.md) goes only on NICs a libvirt event
  hot-plugged or re-tagged (new_ports) and on ports virt-vlan protected
  before (rebuilt after `nft flush ruleset`); a NIC that was running without
  it (across the upgrade that turned it on) keeps its traffic until its
  guest's next start (planner.kept_protection).
"""

import logging
from dataclasses import dataclass, replace
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from virtvlan.apply import engine
from virtvlan.host import state, tapowner
from virtvlan.parse.config import Config
from virtvlan.errors import VirtVlanError
from virtvlan.parse.metadata import network_want, parse_domain, parse_network, wants
from virtvlan.model import ACCESS, Snapshot, Want
from virtvlan.plan.wiring import bridge_for, uplink_bridge

log = logging.getLogger(__name__)

# (domain name, tap) -> its QEMU holds the tap; None: cannot tell (tapowner).
Holds = Callable[[str, str], Optional[bool]]


@dataclass(frozen=True)
class Desired:
    """The wants of one running domain or network, as last read from libvirt.

    `macs[i]` is the guest MAC behind `wants[i]` (empty for a network).
    `error` is the one-line refusal when the metadata or config rejects it
    (nothing of it is wired then); `pending` lists MACs with metadata but no
    NIC yet (a prepared hot-plug).
    """

    key: str  # "domain-<uuid>" / "network-<name>", the hooks' reservation keys
    who: str
    wants: Tuple[Want, ...] = ()
    macs: Tuple[str, ...] = ()
    error: Optional[str] = None
    pending: Tuple[str, ...] = ()
    name: str = ""  # the domain's name ("" for a network)

    @property
    def is_network(self) -> bool:
        return state.is_network_key(self.key)


def domain_desired(xml: bytes, config: Config) -> Optional[Desired]:
    """The live XML of a running domain -> its Desired; None when untagged.

    Never raises a VirtVlanError: a refusal becomes `error`.
    """
    try:
        domain = parse_domain(xml, strict=False)
    except VirtVlanError as err:
        return Desired(key=state.domain_key(None, "?"), who="domain ?", error=str(err))
    key = state.domain_key(domain.uuid, domain.name)
    who = "domain %s" % domain.name
    pending = tuple(spec.mac for spec in domain.pending)
    if not domain.tagged:
        return Desired(key=key, who=who, pending=pending) if pending else None
    try:
        found = wants(domain, config)
    except VirtVlanError as err:
        return Desired(key=key, who=who, error=str(err), pending=pending)
    macs = tuple(spec.mac for spec in domain.specs)
    # A NIC without <target dev> (not created yet) has nothing to wire.
    pairs = [(w, m) for w, m in zip(found, macs) if w.port]
    return Desired(key=key, who=who, wants=tuple(w for w, _ in pairs),
                   macs=tuple(m for _, m in pairs), pending=pending, name=domain.name)


def network_desired(xml: bytes, config: Config) -> Optional[Desired]:
    """The XML of a running network -> its Desired; None when not ours."""
    try:
        network = parse_network(xml)
    except VirtVlanError as err:
        return Desired(key=state.network_key("?"), who="network ?", error=str(err))
    if network.vlan is None:
        return None
    key, who = state.network_key(network.name), "network %s" % network.name
    try:
        return Desired(key=key, who=who, wants=(network_want(network, config),))
    except VirtVlanError as err:
        return Desired(key=key, who=who, error=str(err))


def new_ports(old: Optional[Desired], new: Desired) -> FrozenSet[str]:
    """The ports of `new` whose want a libvirt event added or changed (a
    hot-plugged NIC, a re-tag): every port when the domain was not cached.
    The agent wires them with port security, as their guest's start would."""
    before = set(old.wants) if old is not None else set()
    return frozenset(w.port for w in new.wants if w.port and w not in before)


def tap_macs(guest_mac: str) -> FrozenSet[str]:
    """The MACs a tap of this guest NIC can carry: libvirt sets the guest MAC
    with the first byte 0xfe (virnetdevtap.c, so the bridge never takes the
    guest's MAC as its own), or the guest MAC itself for some tap kinds."""
    return frozenset({guest_mac, "fe" + guest_mac[2:]})


def present(desired: Desired, snap: Snapshot,
            reserved: FrozenSet[str] = frozenset(), config: Optional[Config] = None,
            move_taps: bool = True,
            holds: Optional[Holds] = None) -> Tuple[Want, ...]:
    """The wants of `desired` that may be wired on `snap` now.

    Domain: each want whose tap exists with the guest's MAC; with `config`,
    also an access want whose tap carries another MAC but is a port of the
    want's own access bridge already (see _ours_by_place); with `holds`
    (tapowner.guest_holds_tap), also a want whose tap carries another MAC
    (udev's) and that its guest holds (see _held_by_guest). Without
    `move_taps` (and with `config`), not a want whose tap is a port of
    another bridge (see _moved_away). Network: its want while its bridge is
    reserved (`reserved`, read under the host lock; `config` names the
    bridge). A Desired with an error wires nothing.
    """
    if desired.error:
        return ()
    if desired.is_network:
        if config is None:
            return ()
        return tuple(w for w in desired.wants
                     if engine.target_bridges([w], config) <= reserved)
    out = []
    for want, mac in zip(desired.wants, desired.macs):
        link = snap.get(want.port) if want.port else None
        if link is not None and (link.mac in tap_macs(mac)
                                 or _ours_by_place(want, link.master, config)
                                 or _held_by_guest(desired, link.name, holds, move_taps)):
            if move_taps or not _moved_away(want, link.master, config):
                out.append(want)
    return tuple(out)


def _held_by_guest(desired: Desired, tap: str, holds: Optional[Holds],
                   just_read: bool) -> bool:
    """The tap, whose MAC is not the guest's, is the guest's all the same.

    udev's MACAddressPolicy may re-address a new tap after libvirt set
    fe:<guest MAC> (it read the tap's address type first; systemd calls
    that race not-a-bug). The kernel's answer decides where it can be had:
    the guest's QEMU holds the tap or not (`holds`). Where it cannot (the
    packaged agent may not read another user's /proc/PID/fdinfo), the tap
    is the guest's if libvirt named it in the XML read just now
    (`just_read`: a resync or this domain's event, the paths that may move
    taps), as a hook trusts the name libvirt passes it; never from the
    heal path's older cache.
    """
    if holds is None or not desired.name:
        return False
    found = holds(desired.name, tap)
    return just_read if found is None else found


def _moved_away(want: Want, master: Optional[str], config: Optional[Config]) -> bool:
    """The want's tap is a port of a bridge other than the want's own.

    The heal path wires from the agent's cache, which lags libvirt: during
    `virt-vlan set --live` libvirt moves the tap to the new VLAN's bridge
    before the agent has seen the new metadata, and a heal that moved it
    back would undo the change. A tap on another bridge was put there by
    libvirt, the CLI or the admin; the next full reconcile, which re-reads
    libvirt, decides. A tap on no bridge (its bridge was deleted) is healed.
    """
    return master is not None and config is not None and master != _own_bridge(want, config)


def _own_bridge(want: Want, config: Config) -> Optional[str]:
    """The bridge the want's tap joins; None once the config no longer has it."""
    try:
        return bridge_for(want, config)
    except VirtVlanError:  # the config changed under the cache
        return None


def _ours_by_place(want: Want, master: Optional[str], config: Optional[Config]) -> bool:
    """An access want whose tap is a port of its access bridge already.

    The tap's MAC is not a reliable mark: libvirt sets fe:<guest MAC> after
    creating the tap, and udev's MACAddressPolicy (99-default.link) may
    give the new tap an address of its own after that (seen in the e2e
    VM, about one start in ten). A reused tap name in this bridge was put
    there by its own guest's hook for the same VLAN, so healing the
    bridge's feed cannot move or re-VLAN anyone's tap. Trunk wants keep
    the MAC rule: one trunk bridge serves guests with different VLAN lists.
    """
    return (want.mode == ACCESS and master is not None and config is not None
            and master == _own_bridge(want, config))


def needed_names(want: Want, config: Config) -> FrozenSet[str]:
    """The devices `want` depends on: its port, its bridge, the feed of an
    access VLAN and the uplink device (and trunk bridge) under it."""
    uplink = config.uplink(want.uplink, want.who)
    names = {uplink.device, uplink.feed_parent(), uplink_bridge(uplink, want.mode, want.vlans)}
    if want.port:
        names.add(want.port)
    if want.mode == ACCESS:
        names.add(uplink.feed(want.vlans[0]))
    return frozenset(names)


def affected(cache: Iterable[Desired], names: FrozenSet[str], config: Config) -> List[Desired]:
    """The entries with a want that depends on one of `names` (the devices a
    netlink burst reported)."""
    out = []
    for desired in cache:
        try:
            hit = any(needed_names(w, config) & names for w in desired.wants)
        except VirtVlanError:  # the config changed under the cache: re-read will say
            hit = True
        if hit:
            out.append(desired)
    return out


def not_held(wants_: Sequence[Want], held: FrozenSet[str], config: Config) -> Tuple[Want, ...]:
    """The wants that need no device the heal rate limit holds back."""
    if not held:
        return tuple(wants_)
    return tuple(w for w in wants_ if not needed_names(w, config) & held)


def changes(old: Dict[str, Desired], new: Dict[str, Desired]) -> List[str]:
    """Log lines for what a re-read of libvirt changed in the cache."""
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if after is None:
            lines.append("%s: no longer running (or no longer tagged)" % before.who)
        elif after.error:
            if before is None or before.error != after.error:
                lines.append("%s: not wired: %s" % (after.who, after.error))
        else:
            ports = ", ".join("%s %s %s" % (w.port, w.mode, ",".join(map(str, w.vlans)))
                              for w in after.wants) or "no tagged NIC yet"
            lines.append("%s: wants %s%s" % (after.who, ports,
                                             "; waiting for NIC(s) %s" % ", ".join(after.pending)
                                             if after.pending else ""))
    return lines


def wire(desired: Desired, config: Config, why: str,
         held: FrozenSet[str] = frozenset(), move_taps: bool = True,
         fresh: FrozenSet[str] = frozenset()) -> bool:
    """Make `desired` true on the host (engine.wire under the host lock, with
    the wants narrowed by `present` against the snapshot read there;
    `move_taps` as there: True only right after `desired` was read from
    libvirt). Port security goes on the ports in `fresh`
    (new_ports) and on those virt-vlan protected before, never on another
    port that runs without it (engine.wire's `new_ports`).

    Returns False, having logged one line, when the engine refused; never
    raises a VirtVlanError (one guest's problem must not stop the others).
    """
    if desired.error or not desired.wants:
        return desired.error is None

    def select(wants_: Sequence[Want], snap: Snapshot) -> Sequence[Want]:
        reserved = state.reserved() if desired.is_network else frozenset()
        keep = present(replace(desired, wants=tuple(wants_)), snap, reserved, config,
                       move_taps, tapowner.guest_holds_tap)
        keep = not_held(keep, held, config)
        for want in wants_:
            if want not in keep and not desired.is_network:
                # Info, not debug: a skipped want is a device left unhealed.
                log.info("%s: tap %s is gone, carries neither the guest's MAC nor a "
                         "place on its bridge nor is held by the guest's QEMU, or (heal) is "
                         "a port of another bridge; not wired by the agent now",
                         want.who, want.port)
        return keep

    try:
        engine.wire(desired.wants, config, why="agent: %s %s" % (desired.who, why),
                    select=select, new_ports=fresh)
    except VirtVlanError as err:
        log.error("agent: %s %s: %s", desired.who, why, err)
        return False
    return True


def cleanup(config: Config, why: str) -> bool:
    """Delete the virt-vlan bridges and feeds nobody uses (engine.release
    without a port: guests' ports and reservations keep theirs)."""
    try:
        engine.release(config, why="agent: %s" % why)
    except VirtVlanError as err:
        log.error("agent: cleanup after %s: %s", why, err)
        return False
    return True


def wire_all(cache: Iterable[Desired], config: Config, why: str,
             held: FrozenSet[str] = frozenset(), move_taps: bool = True) -> int:
    """Wire every entry; returns how many the engine refused."""
    failed = 0
    for desired in cache:
        if not wire(desired, config, why, held, move_taps):
            failed += 1
    return failed
