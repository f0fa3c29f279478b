"""`virt-vlan explain DOMAIN`: the path a guest's frames take to the wire.

`paths(domain, config, snap)` is pure: for each tagged NIC of the domain it
lists the hops from the guest's tap to the uplink NIC, what the frames look
like on each (untagged, or tagged with which VLANs), which hop adds or strips
the tag, and the `tcpdump -e -i DEV` command that shows the frames there
(with a `vlan N` filter where they are tagged: tcpdump matches only untagged
frames unless told). Hops that are not on the host as expected say so.
"""

import argparse
from dataclasses import asdict, dataclass
from typing import List, Optional, Tuple

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
    state: str  # "ok", or what is wrong on the host ("missing", "on br07, not br05", ...)


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


def _state(snap: Snapshot, dev: Optional[str], kind: str, master: Optional[str] = None,
           parent: Optional[str] = None, vid: Optional[int] = None) -> str:
    if dev is None:
        return "not running (no tap)"
    link = snap.get(dev)
    if link is None:
        return "missing"
    if kind == "bridge" and link.kind != "bridge":
        return "is a %s device, not a bridge" % link.kind
    if kind == "vlan" and (link.kind != "vlan" or link.parent != parent or link.vlan_id != vid):
        return "is %s, not VLAN %s on %s" % (
            "VLAN %s on %s" % (link.vlan_id, link.parent) if link.kind == "vlan"
            else "a %s device" % link.kind, vid, parent)
    if master is not None and link.master != master:
        return "on %s, not %s" % (link.master or "no bridge", master)
    if not link.up:
        return "down"
    return "ok"


def path(domain: Domain, spec: VlanSpec, config: Config, snap: Snapshot) -> Path:
    """The hops of one tagged NIC (guest side first)."""
    who = "domain %s, interface %s" % (domain.name, spec.mac)
    uplink = config.uplink(spec.uplink, who)
    nic = domain.nic(spec.mac)
    tap = nic.target if nic is not None else None
    hops: List[Hop] = []
    trunk_wired = uplink.wiring == TRUNK
    if spec.mode == ACCESS:
        vid = spec.vlans[0]
        bridge, feed = uplink.access_bridge(vid), uplink.feed(vid)
        parent = uplink.feed_parent()
        hops.append(Hop(tap or "(tap)", "guest tap", "untagged (the guest's VLAN %d)" % vid,
                        "", _tcpdump(tap or "TAP"), _state(snap, tap, "tap", master=bridge)))
        hops.append(Hop(bridge, "access bridge of VLAN %d" % vid, "untagged", "",
                        _tcpdump(bridge), _state(snap, bridge, "bridge")))
        hops.append(Hop(feed, "feed: VLAN %d on %s" % (vid, parent), "untagged",
                        "adds tag %d towards the wire, strips it towards the guest" % vid,
                        _tcpdump(feed), _state(snap, feed, "vlan", master=bridge,
                                               parent=parent, vid=vid)))
        if trunk_wired:
            hops.append(Hop(parent, "trunk bridge of uplink %s" % uplink.name,
                            "tagged %d" % vid, "", _tcpdump(parent, (vid,), untagged=False),
                            _state(snap, parent, "bridge")))
            hops.append(Hop(uplink.device, "uplink NIC (port of %s)" % parent,
                            "tagged %d" % vid, "", _tcpdump(uplink.device, (vid,), untagged=False),
                            _state(snap, uplink.device, "nic", master=parent)))
        else:
            hops.append(Hop(uplink.device, "uplink NIC", "tagged %d" % vid, "",
                            _tcpdump(uplink.device, (vid,), untagged=False),
                            _state(snap, uplink.device, "nic")))
    else:
        bridge = uplink.trunk_bridge
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
            _state(snap, tap, "tap", master=bridge)))
        hops.append(Hop(bridge, "trunk bridge of uplink %s" % uplink.name, wire, "",
                        _tcpdump(bridge, spec.vlans + ((native,) if native is not None else ()),
                                 untagged=False),
                        _state(snap, bridge, "bridge")))
        hops.append(Hop(uplink.device, "uplink NIC (port of %s)" % bridge, wire, "",
                        _tcpdump(uplink.device,
                                 spec.vlans + ((native,) if native is not None else ()),
                                 untagged=False),
                        _state(snap, uplink.device, "nic", master=bridge)))
    return Path(domain=domain.name, mac=spec.mac, mode=spec.mode, vlans=spec.vlans,
                native=spec.native, uplink=uplink.name, wiring=uplink.wiring, hops=tuple(hops))


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


def cmd_explain(args: argparse.Namespace) -> int:
    import json

    from virtvlan.host import rtnl
    from virtvlan.virt import adapter as virt
    from virtvlan.parse.config import load_or_refuse
    from virtvlan.parse.metadata import parse_domain

    conn = virt.connect(getattr(args, "connect", None), readonly=True)
    try:
        domain = parse_domain(conn.domain_xml(args.domain))
    finally:
        conn.close()
    config = load_or_refuse(args.config, "domain %s" % domain.name)
    found = paths(domain, config, rtnl.read_snapshot(), args.mac)
    if args.json:
        print(json.dumps([dict(asdict(p), ok=p.ok) for p in found], indent=2))
    else:
        print(render(found))
    return 0


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "explain", help="show a guest's frame path to the wire and how to tcpdump each hop",
        description="The path of a tagged guest NIC's frames from its tap to the uplink NIC, "
        "the tag added or stripped at each hop, and the tcpdump command that shows them.")
    p.add_argument("domain", metavar="DOMAIN", help="domain name or UUID")
    p.add_argument("--mac", help="only this NIC (default: every tagged NIC)")
    p.add_argument("-c", "--connect", dest="connect", metavar="URI", default=argparse.SUPPRESS,
                   help="libvirt URI")
    p.add_argument("--json", action="store_true", help="print the path as JSON")
    p.set_defaults(func=cmd_explain)
