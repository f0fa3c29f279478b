"""`virt-vlan explain DOMAIN`: the path a guest's frames take to the wire.

`paths(domain, config, snap)` is pure: for each tagged NIC of the domain it
lists the hops from the guest's tap to the uplink NIC, what the frames look
like on each (untagged, or tagged with which VLANs), which hop adds or strips
the tag, and the `tcpdump -e -i DEV` command that shows the frames there
(with a `vlan N` filter where they are tagged: tcpdump matches only untagged
frames unless told). Hops that are not on the host as expected say so.

Each path also carries the NIC's port security (docs/port-security.md): the
filter its tap should have, by the same rules the planner writes
(metadata.protection, planner.filter_rules), grouped by what it drops and
rendered as the `nft` commands that write it; the exceptions, options and
isolation asked for; and whether the tap's filter and `isolated` flag, as
the snapshot read them, are what is expected (with the fix where not).
"""

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

from virtvlan.checks.wiring import nic_wiring, spec_want
from virtvlan.parse.config import Config, Uplink
from virtvlan.errors import InputError
from virtvlan.parse.metadata import Domain, VlanSpec, protection
from virtvlan.model import ACCESS, TRUNK, Snapshot
from virtvlan.plan.actions import filter_chain, filter_rule
from virtvlan.plan.planner import filter_rules

# The groups of docs/port-security.md's table, by rule spec (the part
# before "="; plan/actions.py _rule_text has the rules), in table order.
GROUPS = ("control frames", "MAC", "ARP/NDP", "rogue servers", "tags")
_SPEC_GROUP = {"stp": "control frames", "mac": "MAC", "arp": "ARP/NDP", "nd": "ARP/NDP",
               "arp-ip": "ARP/NDP", "nd-ip": "ARP/NDP", "ra": "rogue servers",
               "dhcp": "rogue servers", "dhcp6": "rogue servers", "tagged": "tags",
               "qinq": "tags"}
# Fixes for a tap whose filter or flag is not the expected one: what the
# agent's reconcile and every plug do (they run the planner for the NIC).
_REWIRE = "restart the guest, or let the agent's next reconcile rewrite it"


@dataclass(frozen=True)
class Hop:
    device: str
    role: str  # "guest tap", "access bridge", "feed", "trunk bridge", "uplink NIC"
    frames: str  # how frames look on this device
    change: str  # what this hop does to the tag ("" when nothing)
    tcpdump: str  # the command that shows them here
    state: str  # "ok", or what nic_wiring finds wrong with the device ("; "-joined)


@dataclass(frozen=True)
class FilterGroup:
    """One group of a port filter: what it drops, and its nft commands."""

    group: str  # one of GROUPS
    drops: Tuple[str, ...]  # one line per rule
    nft: Tuple[str, ...]  # the `nft add rule ...` command of each rule


@dataclass(frozen=True)
class PortSecurity:
    """A tagged NIC's port security, expected against found.

    `state`: "on", "off" (port-security = no on its uplink) or "refused"
    (an exception the uplink does not allow; `problems` has the line).
    `filter`: "ok", "missing", "differs", "unexpected" (a filter on a NIC
    whose uplink has port security off), "not read" (nft not installed, or
    the snapshot did not read the table), "no tap" (not running), or "" when
    off and nothing is there. `expected` groups are what the filter drops;
    `found` the rule specs on the tap (when read)."""

    state: str
    allow: Tuple[str, ...] = ()
    guard_router: bool = False
    isolated: bool = False
    ips: Tuple[str, ...] = ()
    expected: Tuple[FilterGroup, ...] = ()
    found: Optional[Tuple[str, ...]] = None
    filter: str = ""
    isolated_found: Optional[bool] = None
    problems: Tuple[str, ...] = ()
    fix: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


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
    security: Optional[PortSecurity] = None

    @property
    def ok(self) -> bool:
        return (all(h.state == "ok" for h in self.hops)
                and (self.security is None or self.security.ok))


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


def _describe(spec: str) -> str:
    """What the rule of `spec` drops, in the words of docs/port-security.md."""
    name, _, value = spec.partition("=")
    return {
        "stp": "STP/RSTP BPDUs and every IEEE 802.1D link-local group 01:80:c2:00:00:0X "
               "(LLDP, LACP, 802.1X)",
        "mac": "frames whose source MAC is not %s" % value,
        "arp": "ARP whose sender MAC is not %s" % value,
        "nd": "neighbour solicitations/advertisements whose link-layer address is not %s"
              % value,
        "arp-ip": "ARP from a sender address other than %s (0.0.0.0 probes pass)"
                  % (value or "none: no IPv4 address listed"),
        "nd-ip": "neighbour advertisements for a target other than %s (link-local ones pass)"
                 % (value or "none: no IPv6 address listed"),
        "ra": "IPv6 router advertisements",
        "dhcp": "DHCP server replies (UDP 67 to 68)",
        "dhcp6": "DHCPv6 server messages (UDP from 547)",
        "tagged": "802.1Q-tagged frames with a non-zero VID (priority tags pass)",
        "qinq": "802.1ad (Q-in-Q) frames",
    }.get(name, "(a rule this version does not know: %s)" % spec)


def groups(port: str, rules: Tuple[str, ...]) -> Tuple[FilterGroup, ...]:
    """`rules` (filter specs of `port`) by group, in GROUPS order, each rule
    with what it drops and its nft command (plan/actions.py filter_rule)."""
    out = []
    for group in GROUPS:
        mine = [r for r in rules if _SPEC_GROUP.get(r.partition("=")[0]) == group]
        if mine:
            out.append(FilterGroup(group, tuple(_describe(r) for r in mine),
                                   tuple("nft " + (filter_rule(port, r) or r) for r in mine)))
    return tuple(out)


def security(domain: Domain, spec: VlanSpec, uplink: Uplink, config: Config,
             snap: Snapshot) -> PortSecurity:
    """The port security of one tagged NIC: what the planner would give its
    tap (the same protection() and filter_rules() the hooks use) against
    what the snapshot found there."""
    who = "domain %s, interface %s" % (domain.name, spec.mac)
    asked = spec.security
    base = PortSecurity(state="on", allow=tuple(sorted(asked.allow)),
                        guard_router=asked.guard_router, isolated=asked.isolated, ips=asked.ips)
    nic = domain.nic(spec.mac)
    tap = nic.target if nic is not None else None
    link = snap.get(tap) if tap else None
    found = snap.port_filter(tap) if tap and snap.filters is not None else None
    try:
        wanted = protection(asked, spec.mac, uplink, who, config.path)
    except InputError as err:
        return replace(base, state="refused", found=found, problems=(str(err),),
                       fix="the guest's next start is refused: %s"
                       % str(err).rsplit("; ", 1)[-1])
    if wanted is None:
        if found:
            return replace(base, state="off", found=found, filter="unexpected",
                           problems=("tap %s has a port filter, but port-security = no on "
                                     "uplink %s" % (tap, uplink.name),),
                           fix="its next start or plug removes it (virt-vlan plug %s ...)"
                           % tap)
        return replace(base, state="off", found=found)
    rules = filter_rules(spec.mode, wanted)
    base = replace(base, expected=groups(tap or "TAP", rules), found=found)
    if tap is None or link is None:
        return replace(base, filter="no tap")
    problems = []
    if snap.filters is None:
        verdict = "not read"
        problems.append("virt-vlan's nftables table was not read (nft is not installed); "
                        "tap %s cannot be protected" % tap)
        fix = "install nftables (apt install nftables), then restart the guest"
    else:
        fix = _REWIRE
        if not found:
            verdict = "missing"
            problems.append("tap %s has no port filter" % tap)
        elif found != rules:
            verdict = "differs"
            lacking = [r for r in rules if r not in found]
            extra = [r for r in found if r not in rules]
            what = []
            if lacking:
                what.append("lacks %s" % ", ".join(lacking))
            if extra:
                what.append("has %s too" % ", ".join(extra))
            problems.append("the filter on tap %s differs from the expected one (%s)"
                            % (tap, "; ".join(what) or "other order"))
        else:
            verdict = "ok"
    if link.isolated is not None and link.isolated != wanted.isolated:
        problems.append("tap %s has isolated %s, expected %s" % (
            tap, "on" if link.isolated else "off", "on" if wanted.isolated else "off"))
        fix = fix if snap.filters is None else _REWIRE
    return replace(base, filter=verdict, isolated_found=link.isolated,
                   problems=tuple(problems), fix=fix if problems else "")


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
                note=found.note, security=security(domain, spec, uplink, config, snap))


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
        if p.security is not None:
            lines += render_security(p.security, p.hops[0].device)
    return "\n".join(lines)


def render_security(sec: PortSecurity, tap: str) -> List[str]:
    """The port-security block of one NIC (indented under its path)."""
    asked = []
    if sec.allow:
        asked.append("exceptions (allow=) %s" % ",".join(sec.allow))
    if sec.guard_router:
        asked.append("guard router")
    if sec.ips:
        asked.append("ips %s" % ",".join(sec.ips))
    asked.append("isolated %s" % ("yes" if sec.isolated else "no"))
    head = {"on": "on", "off": "off (port-security = no on its uplink)",
            "refused": "refused"}[sec.state]
    lines = ["  port security: %s; %s" % (head, "; ".join(asked))]
    if sec.state == "on":
        state = {"ok": "its filter is in place", "missing": "its filter is MISSING",
                 "differs": "its filter DIFFERS", "not read": "its filter was not read",
                 "no tap": "no tap (not running)"}[sec.filter]
        lines.append("    filter on %s (chain %s): %s" % (
            tap, filter_chain(tap) if tap != "(tap)" else "port-TAP", state))
        if sec.filter == "ok":
            lines.append("    isolated flag: %s" % (
                "unknown" if sec.isolated_found is None else
                "on" if sec.isolated_found else "off"))
        for group in sec.expected:
            lines.append("    drops %s:" % group.group)
            for drop, nft in zip(group.drops, group.nft):
                lines.append("      %s" % drop)
                lines.append("        %s" % nft)
        if sec.filter == "differs" and sec.found is not None:
            lines.append("    found on the tap: %s" % ", ".join(sec.found))
    for problem in sec.problems:
        lines.append("    !! %s" % problem)
    if sec.fix:
        lines.append("    fix: %s" % sec.fix)
    return lines
