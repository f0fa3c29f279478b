"""Is this guest NIC wired as it should be: the one check `show`, `check`,
`explain` and the agent agree on.

`nic_wiring(want, config, snap)` is pure: for one tagged NIC (a Want whose
`port` is its tap, None when libvirt names none) it returns what on the host
differs from the wiring the config gives it, one Problem per fact, in path
order (uplink, trunk bridge, feed, the NIC's bridge, tap, VLAN tables).

A trunk NIC's VLAN table (its tagged VLANs, its native VLAN as PVID
untagged, nothing else) and the uplink port's entries are judged where the
trunk bridge filters VLANs (or virt-vlan will make it filter: one it owns);
where it does not, `note` says so and nothing there is judged, since every
VLAN passes anyway.

The agent's reconcile (present() then the planner) plans nothing for a NIC
exactly when no problem has `heal` set (tests/unit/test_wiring.py): a tap
that is missing, or a device that is not what virt-vlan would make, is a
problem no plan fixes. Two things the planner also corrects are not NIC
wiring and are left to `check`: MTU (audited along the whole path) and the
trunk bridge's host VLANs (host-vlans =).
"""

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from virtvlan.errors import InputError
from virtvlan.model import ACCESS, TRUNK, Link, PortVlans, Snapshot, Want
from virtvlan.parse.config import Config, Uplink
from virtvlan.parse.metadata import Domain, Nic, VlanSpec
from virtvlan.parse.vlans import format_vlan_list
from virtvlan.plan.wiring import bridge_for, filters, uplink_bridge


@dataclass(frozen=True)
class Problem:
    """One fact on the host that differs from a NIC's wiring."""

    device: str  # the device the fact is about ("": the NIC's tap, unnamed)
    what: str  # the fact, one line: "tap vnet0 is on br07, not on its bridge br05"
    why: str  # what it breaks for the guest
    heal: bool = True  # a plan for the NIC fixes it (False: the guest or the admin must)
    fix: str = ""  # what the admin does when a plan cannot (heal False)


@dataclass(frozen=True)
class Wiring:
    """The verdict on one NIC: where it belongs and what differs there."""

    who: str
    uplink: str
    bridge: str  # the bridge its tap joins
    tap: Optional[str]
    problems: Tuple[Problem, ...] = ()
    # Set when a trunk NIC's VLAN table was not judged, and why.
    note: Optional[str] = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def healable(self) -> bool:
        """Some problem is one a plan for this NIC fixes."""
        return any(p.heal for p in self.problems)


def spec_want(domain: Domain, spec: VlanSpec, config: Config) -> Want:
    """The Want of one tagged NIC of `domain`, its tap as `port` (None when
    libvirt names none). Raises InputError when the config lacks its uplink."""
    who = "domain %s, interface %s" % (domain.name, spec.mac)
    uplink = config.uplink(spec.uplink, who)
    nic = domain.nic(spec.mac)
    return Want(uplink=uplink.name, mode=spec.mode, vlans=spec.vlans,
                port=nic.target if nic is not None else None, who=who, native=spec.native)


_TAP_FIX = "virsh domiflist on its domain; restart the guest if the tap is gone"


def _vl(vids: Iterable[int]) -> str:
    return format_vlan_list(vids)


def _is_vlan(link: Link, parent: str, vid: int) -> bool:
    return link.kind == "vlan" and link.parent == parent and link.vlan_id == vid


def _device(snap: Snapshot, name: str, what: str, why: str, out: List[Problem],
            kind: Optional[str] = None, master: Optional[str] = None,
            of: str = "", ours: bool = True) -> Optional[Link]:
    """Append what is wrong with device `name` (missing, of another kind, off
    `master`, down), each breaking `why`; returns the link when it exists.
    `of` qualifies the name where it is missing (" of br05"). Not `ours`
    (the uplink device): virt-vlan never creates it or sets it up."""
    link = snap.get(name)
    if link is None:
        out.append(Problem(name, "%s %s%s does not exist" % (what, name, of), why, heal=ours,
                           fix="" if ours else "fix device = in the uplink's section of the "
                           "host config, or bring %s back" % name))
        return None
    if kind is not None and link.kind != kind:
        out.append(Problem(name, "%s %s is a %s device, not a %s" % (what, name, link.kind, kind),
                           why, heal=False, fix="rename or delete %s, or change the naming "
                           "template in the uplink's section of the host config" % name))
        return link
    if master is not None and link.master != master:
        # On no bridge: virt-vlan puts it back; on another: that bridge's owner must.
        out.append(Problem(name, "%s %s is %s, not a port of %s" % (
            what, name, "on %s" % link.master if link.master else "on no bridge", master),
            why, heal=link.master is None,
            fix="" if link.master is None else "ip link set dev %s nomaster (it is not "
            "virt-vlan's to move), or change the uplink's section of the host config" % name))
    if not link.up:
        out.append(Problem(name, "%s %s is down" % (what, name), why, heal=ours,
                           fix="" if ours else "ip link set dev %s up" % name))
    return link


def _trunk_bridge(want: Want, uplink: Uplink, snap: Snapshot, out: List[Problem]) -> None:
    """The uplink's trunk bridge, and (where it filters) the entries that let
    the want's VLANs through it to the wire."""
    bridge = _device(snap, uplink.trunk_bridge, "trunk bridge",
                     "nothing carries the guest's frames to uplink device %s" % uplink.device,
                     out, kind="bridge")
    if bridge is None or bridge.kind != "bridge" or not filters(bridge, uplink):
        return
    if not bridge.vlan_filtering:
        out.append(Problem(bridge.name, "trunk bridge %s does not filter VLANs yet" % bridge.name,
                           "virt-vlan owns it and switches filtering on at its next plan; until "
                           "then its trunk guests see every VLAN of %s" % uplink.device))
    nic = snap.get(uplink.device)
    if nic is None or nic.master != bridge.name or nic.vlans is None:
        return
    vids = set(want.vlans) | ({want.native} if want.native else set())
    lacking = vids - nic.vlans.members - {bridge.default_pvid}
    if lacking:
        out.append(Problem(nic.name, "uplink device %s does not carry VLAN %s on %s"
                           % (nic.name, _vl(lacking), bridge.name),
                           "%s filters VLANs: frames of VLAN %s never reach the wire"
                           % (bridge.name, _vl(lacking))))
    if want.mode == ACCESS:
        vid = want.vlans[0]
        mine = bridge.vlans or PortVlans()
        if vid not in mine.members | {bridge.default_pvid}:
            out.append(Problem(bridge.name, "trunk bridge %s itself lacks VLAN %d"
                               % (bridge.name, vid),
                               "%s filters VLANs: its feed %s gets no frames of VLAN %d"
                               % (bridge.name, uplink.feed(vid), vid)))


def _tap_vlans(want: Want, tap: Link, bridge: str) -> List[Problem]:
    """A trunk tap's VLAN table against the want: its VLANs tagged, the native
    VLAN as PVID untagged, no other VLAN."""
    now = tap.vlans or PortVlans()
    native = want.native
    tagged = set(want.vlans) - {native}
    out = []
    missing = sorted(v for v in tagged if v not in now.tagged or now.pvid == v)
    if missing:
        out.append(Problem(tap.name, "tap %s does not carry VLAN %s tagged on %s"
                           % (tap.name, _vl(missing), bridge),
                           "%s filters VLANs: the guest gets no tagged frames of VLAN %s"
                           % (bridge, _vl(missing))))
    if native and not (native in now.untagged and now.pvid == native):
        out.append(Problem(tap.name, "tap %s does not have native VLAN %d as its untagged PVID "
                           "(PVID %s)" % (tap.name, native,
                                          "none" if now.pvid is None else now.pvid),
                           "the guest's untagged frames are not in VLAN %d" % native))
    extra = now.members - tagged - ({native} if native else set())
    if extra:
        out.append(Problem(tap.name, "tap %s also carries VLAN %s on %s"
                           % (tap.name, _vl(extra), bridge),
                           "the guest sees, and can send into, VLANs it was not given"))
    return out


def nic_wiring(want: Want, config: Config, snap: Snapshot) -> Wiring:
    """What on `snap` differs from the wiring `want` gets from `config`.

    Raises InputError when the config lacks the want's uplink.
    """
    uplink = config.uplink(want.uplink, want.who)
    target = uplink_bridge(uplink, want.mode, want.vlans)
    vlans = "%s VLAN %s" % (want.mode, _vl(want.vlans))
    out: List[Problem] = []
    note = None
    wire = "the guest's VLANs have no way to the wire"
    if uplink.wiring == TRUNK:
        _device(snap, uplink.device, "uplink device", wire, out, master=uplink.trunk_bridge,
                ours=False)
        _trunk_bridge(want, uplink, snap, out)
    elif want.mode == TRUNK:
        out.append(Problem(uplink.device, "uplink %s has wiring = access" % uplink.name,
                           "trunk NICs need wiring = trunk; set it in [uplink %s] of %s"
                           % (uplink.name, config.path), heal=False,
                           fix="set wiring = trunk in [uplink %s] of %s" % (uplink.name,
                                                                          config.path)))
    else:
        _device(snap, uplink.device, "uplink device", wire, out, ours=False)
    if want.mode == ACCESS:
        vid = want.vlans[0]
        parent = uplink.feed_parent()
        feed_name = uplink.feed(vid)
        feed = snap.get(feed_name)
        cut = "bridge %s gets no frames of VLAN %d from the wire" % (target, vid)
        if feed is not None and not _is_vlan(feed, parent, vid):
            out.append(Problem(feed_name, "feed %s is not VLAN %d on %s" % (feed_name, vid,
                                                                           parent),
                               cut, heal=False,
                               fix="delete or rename %s, or change the naming template in "
                               "[uplink %s] of %s" % (feed_name, uplink.name, config.path)))
        else:
            _device(snap, feed_name, "feed", cut, out, master=target, of=" of %s" % target)
        _device(snap, target, "bridge", "the guest's tap has no bridge to join", out,
                kind="bridge")
    if want.port is None:
        out.append(Problem("", "libvirt names no tap for it",
                           "the guest's NIC is connected to nothing", heal=False,
                           fix=_TAP_FIX))
        return Wiring(want.who, uplink.name, target, None, tuple(out))
    tap = snap.get(want.port)
    if tap is None:
        out.append(Problem(want.port, "tap %s does not exist" % want.port,
                           "the guest's NIC is connected to nothing", heal=False,
                           fix=_TAP_FIX))
        return Wiring(want.who, uplink.name, target, want.port, tuple(out))
    if tap.master != target:
        out.append(Problem(tap.name, "tap %s is %s, not on its bridge %s" % (
            tap.name, "on %s" % tap.master if tap.master else "on no bridge", target),
            "the guest is %s instead of %s" % (
                "on another bridge's network" if tap.master else "cut off", vlans)))
    if not tap.up:
        out.append(Problem(tap.name, "tap %s is down" % tap.name,
                           "the guest's NIC passes no frames"))
    if want.mode == TRUNK and tap.master == target:
        bridge = snap.get(target)
        if filters(bridge, uplink):
            out += _tap_vlans(want, tap, target)
        elif bridge is not None and bridge.vlans is None:
            note = "the VLAN tables of %s were not read, so %s's VLANs were not judged" % (
                target, tap.name)
        else:
            note = ("trunk bridge %s does not filter VLANs, so %s sees every VLAN of %s, not "
                    "only %s; set trunk-filtering = yes in [uplink %s] to enforce the list"
                    % (target, tap.name, uplink.device, _vl(want.vlans), uplink.name))
    return Wiring(want.who, uplink.name, target, want.port, tuple(out), note)


def source_differs(nic: Nic, bridge: str) -> bool:
    """libvirt's <source bridge> of the NIC (a type='bridge' NIC's, or the
    bridge a running type='network' NIC's network has) is not its bridge:
    libvirt puts the tap back there when libvirtd restarts and at hot-plug."""
    return (nic.type == "bridge" or nic.source_bridge is not None) and nic.source_bridge != bridge


# --- the NICs of one domain, as `show` and `list` give them ----------------------

WIRED = "wired"
NOT_RUNNING = "not running"
DRIFT = "drift"
UNTAGGED = "untagged"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class NicStatus:
    """One row of `show` / `list`, and one object of their --json."""

    domain: str
    mac: str
    type: str
    tap: Optional[str]
    source: Optional[str]  # <source bridge> (or "network NAME")
    mode: Optional[str]  # None: untagged NIC
    vlans: Tuple[int, ...] = ()
    native: Optional[int] = None
    uplink: Optional[str] = None
    bridge: Optional[str] = None
    status: str = UNTAGGED
    problems: Tuple[str, ...] = field(default=())
    note: Optional[str] = None  # Wiring.note: a trunk NIC's VLANs not judged, and why

    def as_json(self) -> Dict[str, object]:
        return {"mac": self.mac, "type": self.type, "tap": self.tap, "source": self.source,
                "mode": self.mode, "vlans": list(self.vlans), "native": self.native,
                "uplink": self.uplink, "bridge": self.bridge, "status": self.status,
                "problems": list(self.problems), "note": self.note}

    @property
    def state_text(self) -> str:
        text = self.status
        if self.problems:
            text += ": " + "; ".join(self.problems)
        if self.note:
            text += " (note: %s)" % self.note
        return text


def _source(nic: Nic) -> Optional[str]:
    if nic.source_bridge:
        return nic.source_bridge
    if nic.source_network:
        return "network %s" % nic.source_network
    return None


def nic_statuses(domain: Domain, running: bool, config: Optional[Config],
                 snap: Optional[Snapshot]) -> List[NicStatus]:
    """A status per NIC of `domain` (tagged or not), in the domain's order.

    `snap` is the host as read now (None when not running: not needed). A
    running NIC's host problems are nic_wiring's; the <source bridge> libvirt
    would re-attach the tap to is judged for running and stopped guests.
    """
    specs = {spec.mac: spec for spec in domain.specs}
    out = []
    for nic in domain.nics:
        spec = specs.get(nic.mac)
        base = dict(domain=domain.name, mac=nic.mac, type=nic.type,
                    tap=nic.target if running else None, source=_source(nic))
        if spec is None:
            out.append(NicStatus(mode=None, status=UNTAGGED, **base))  # type: ignore[arg-type]
            continue
        tagged = dict(mode=spec.mode, vlans=spec.vlans, native=spec.native,
                      uplink=spec.uplink)
        if config is None:
            out.append(NicStatus(status=UNKNOWN, problems=("no host config on this host",),
                                 **tagged, **base))  # type: ignore[arg-type]
            continue
        try:
            want = spec_want(domain, spec, config)
        except InputError as err:
            out.append(NicStatus(status=DRIFT, problems=(str(err),),
                                 **tagged, **base))  # type: ignore[arg-type]
            continue
        bridge = bridge_for(want, config)
        tagged["uplink"] = want.uplink
        problems = []
        note = None
        if source_differs(nic, bridge):
            problems.append("<source bridge> is %s, not %s" % (nic.source_bridge, bridge))
        if running and snap is not None:
            found = nic_wiring(want, config, snap)
            problems = [p.what for p in found.problems] + problems
            note = found.note
        status = (DRIFT if problems and running else WIRED if running else NOT_RUNNING)
        out.append(NicStatus(bridge=bridge, status=status, problems=tuple(problems), note=note,
                             **tagged, **base))  # type: ignore[arg-type]
    return out
