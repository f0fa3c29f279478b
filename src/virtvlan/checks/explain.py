"""`virt-vlan explain DOMAIN`: the path a guest's frames take to the wire.

`paths(domain, config, snap)` is pure: for each tagged NIC of the domain it
lists the hops from the guest's tap to the uplink NIC, what the frames look
like on each (untagged, or tagged with which VLANs), which hop adds or strips
the tag, and the `tcpdump -e -i DEV` command that shows the frames there
(with a `vlan N` filter where they are tagged: tcpdump matches only untagged
frames unless told). Hops that are not on the host as expected say so.
"""

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

from virtvlan.checks.wiring import nic_wiring, spec_want
from virtvlan.parse.config import Config
from virtvlan.errors import InputError
from virtvlan.parse.metadata import Domain, VlanSpec
from virtvlan.model import ACCESS, TRUNK, Snapshot


@dataclass(frozen=True)
class Hop:
    device: str
    role: str  # "guest tap", "access bridge", "feed", "trunk bridge", "uplink NIC"
    frames: str  # how frames look on this device
    change: str  # what this hop does to the tag ("" when nothing)
    tcpdump: str  # the command that shows them here
    state: str  # "ok", or what nic_wiring finds wrong with the device ("; "-joined)


@dataclass(frozen=True)
class Path:
    domain: str
    mac: str
    mode: str
    vlans: Tuple[int, ...]
    native: Optional[int]
    uplink: str
    wiring: str
    hops: Tuple[Hop, ...]
    note: Optional[str] = None  # nic_wiring's: a trunk NIC's VLAN table not judged, and why

    @property
    def ok(self) -> bool:
        return all(h.state == "ok" for h in self.hops)


def _tcpdump(dev: str, vlans: Tuple[int, ...] = (), untagged: bool = True) -> str:
    """The capture for `dev`: everything when untagged frames pass there,
    else the tagged frames (of VLAN N when it is one VLAN)."""
    base = "tcpdump -e -n -i %s" % dev
    if untagged or not vlans:
        return base
    # libpcap's "vlan N" shifts the offsets of every test after it, so
    # "vlan 5 or vlan 7" would look for a second tag; for a list, "vlan"
    # (every tagged frame) with -e printing each frame's tag is the reliable form.
    return "%s vlan %d" % (base, vlans[0]) if len(vlans) == 1 else base + " vlan"


def _vl(vlans: Tuple[int, ...]) -> str:
    return ",".join(map(str, vlans))


def path(domain: Domain, spec: VlanSpec, config: Config, snap: Snapshot) -> Path:
    """The hops of one tagged NIC (guest side first); each hop's state is
    what nic_wiring finds wrong with its device ("ok": nothing)."""
    want = spec_want(domain, spec, config)
    uplink = config.uplink(want.uplink, want.who)
    tap = want.port
    found = nic_wiring(want, config, snap)
    wrong: Dict[str, List[str]] = {}
    for problem in found.problems:
        wrong.setdefault(problem.device, []).append(problem.what)

    def state(dev: Optional[str]) -> str:
        return "; ".join(wrong.pop(dev or "", ())) or "ok"

    hops: List[Hop] = []
    trunk_wired = uplink.wiring == TRUNK
    if spec.mode == ACCESS:
        vid = spec.vlans[0]
        bridge, feed = found.bridge, uplink.feed(vid)
        parent = uplink.feed_parent()
        hops.append(Hop(tap or "(tap)", "guest tap", "untagged (the guest's VLAN %d)" % vid,
                        "", _tcpdump(tap or "TAP"), state(tap)))
        hops.append(Hop(bridge, "access bridge of VLAN %d" % vid, "untagged", "",
                        _tcpdump(bridge), state(bridge)))
        hops.append(Hop(feed, "feed: VLAN %d on %s" % (vid, parent), "untagged",
                        "adds tag %d towards the wire, strips it towards the guest" % vid,
                        _tcpdump(feed), state(feed)))
        if trunk_wired:
            hops.append(Hop(parent, "trunk bridge of uplink %s" % uplink.name,
                            "tagged %d" % vid, "", _tcpdump(parent, (vid,), untagged=False),
                            state(parent)))
            hops.append(Hop(uplink.device, "uplink NIC (port of %s)" % parent,
                            "tagged %d" % vid, "", _tcpdump(uplink.device, (vid,), untagged=False),
                            state(uplink.device)))
        else:
            hops.append(Hop(uplink.device, "uplink NIC", "tagged %d" % vid, "",
                            _tcpdump(uplink.device, (vid,), untagged=False),
                            state(uplink.device)))
    else:
        bridge = found.bridge
        native = spec.native
        seen = "tagged %s" % _vl(spec.vlans)
        if native is not None:
            seen += "; VLAN %d untagged (native)" % native
        wire = "tagged %s" % _vl(spec.vlans + ((native,) if native is not None else ()))
        change = ("none: the guest tags and untags itself" if native is None else
                  "the tap's PVID puts the guest's untagged frames in VLAN %d; the bridge tags "
                  "them %d towards the wire and strips the tag towards the guest"
                  % (native, native))
        hops.append(Hop(tap or "(tap)", "guest tap (trunk: VLANs %s%s)" % (
            _vl(spec.vlans), ", native %d" % native if native is not None else ""),
            seen, change, _tcpdump(tap or "TAP", spec.vlans, untagged=native is not None),
            state(tap)))
        hops.append(Hop(bridge, "trunk bridge of uplink %s" % uplink.name, wire, "",
                        _tcpdump(bridge, spec.vlans + ((native,) if native is not None else ()),
                                 untagged=False),
                        state(bridge)))
        hops.append(Hop(uplink.device, "uplink NIC (port of %s)" % bridge, wire, "",
                        _tcpdump(uplink.device,
                                 spec.vlans + ((native,) if native is not None else ()),
                                 untagged=False),
                        state(uplink.device)))
    if wrong:  # a fact about a device off the path: shown on the guest's hop
        first = hops[0]
        rest = "; ".join(w for whats in wrong.values() for w in whats)
        hops[0] = replace(first, state=rest if first.state == "ok" else
                          "%s; %s" % (first.state, rest))
    return Path(domain=domain.name, mac=spec.mac, mode=spec.mode, vlans=spec.vlans,
                native=spec.native, uplink=uplink.name, wiring=uplink.wiring, hops=tuple(hops),
                note=found.note)


def paths(domain: Domain, config: Config, snap: Snapshot,
          mac: Optional[str] = None) -> Tuple[Path, ...]:
    """One Path per tagged NIC of `domain` (only `mac`'s when given)."""
    if not domain.tagged:
        raise InputError("domain %s has no virt-vlan metadata; tag a NIC with 'virt-vlan set "
                         "%s --mac MAC --access V'" % (domain.name, domain.name))
    specs = domain.specs
    if mac is not None:
        specs = tuple(s for s in specs if s.mac == mac.lower())
        if not specs:
            raise InputError("domain %s: no tagged interface with MAC %s (tagged: %s); use one "
                             "of those" % (domain.name, mac.lower(),
                                           ", ".join(s.mac for s in domain.specs)))
    return tuple(path(domain, spec, config, snap) for spec in specs)


def render(found: Tuple[Path, ...]) -> str:
    """Aligned text: a header per NIC, then one block per hop, guest side first."""
    lines = []
    for p in found:
        what = ("access VLAN %d" % p.vlans[0] if p.mode == ACCESS else "trunk VLANs %s%s" % (
            _vl(p.vlans), ", native %d" % p.native if p.native is not None else ""))
        lines.append("domain %s, interface %s: %s on uplink %s (%s wiring)"
                     % (p.domain, p.mac, what, p.uplink, p.wiring))
        width = max(len(h.device) for h in p.hops)
        if p.note:
            lines.append("  note: %s" % p.note)
        lines.append("  guest NIC %s" % p.mac)
        for hop in p.hops:
            mark = "" if hop.state == "ok" else "  !! " + hop.state
            lines.append("  -> %s  %s%s" % (hop.device.ljust(width), hop.role, mark))
            pad = "     " + " " * width + "  "
            lines.append("%sframes: %s" % (pad, hop.frames))
            if hop.change:
                lines.append("%stag:    %s" % (pad, hop.change))
            lines.append("%sshow:   %s" % (pad, hop.tcpdump))
        lines.append("  -> wire (switch port of %s)" % p.hops[-1].device)
    return "\n".join(lines)
