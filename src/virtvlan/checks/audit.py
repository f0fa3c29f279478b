"""`virt-vlan check`: audit the host's VLAN wiring, whoever made it.

`audit(snap, config, domains)` is pure: it reads a Snapshot, the host config
(None when there is none) and the running tagged domains (None when libvirt
did not answer) and returns Findings, worst first. Each finding says what is
wrong, where, why it matters and the fix, one line each. The command around
it (`cmd_check`) reads the host and prints a table or JSON with the Nagios
exit codes: 0 fine, 1 warnings, 2 problems.
"""

import argparse
from dataclasses import asdict, dataclass
from typing import Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from virtvlan.parse.config import Config, Uplink
from virtvlan.errors import InputError, VirtVlanError
from virtvlan.parse.metadata import Domain
from virtvlan.model import ACCESS, TRUNK, Link, Snapshot

PROBLEM = "problem"
WARNING = "warning"
# Nagios plugin convention: 0 OK, 1 WARNING, 2 CRITICAL.
EXIT = {None: 0, WARNING: 1, PROBLEM: 2}
_RANK = {PROBLEM: 0, WARNING: 1}

# Guest ports as libvirt makes them (tun) or tests stand them in (veth).
_GUEST_KINDS = ("tun", "veth")


@dataclass(frozen=True)
class Finding:
    severity: str  # PROBLEM or WARNING
    what: str  # the fact, one line
    where: str  # the devices (and domain) concerned
    why: str  # what it breaks
    fix: str  # the command or config change that removes it


def exit_code(findings: Sequence[Finding]) -> int:
    worst = min((f.severity for f in findings), key=lambda s: _RANK[s], default=None)
    return EXIT[worst]


def _vlan_desc(link: Link) -> str:
    return "VLAN %s on %s" % (link.vlan_id, link.parent)


# --- the checks ---------------------------------------------------------------------


def _mixed(snap: Snapshot) -> List[Finding]:
    """A VLAN device on a NIC that is also a bridge (or bond) port (seed 004)."""
    out = []
    for link in snap:
        if link.kind != "vlan" or link.parent is None:
            continue
        parent = snap.get(link.parent)
        if parent is None or parent.master is None:
            continue
        master = snap.get(parent.master)
        kind = master.kind if master is not None else "device"
        vid = link.vlan_id
        out.append(Finding(
            PROBLEM,
            "VLAN device %s takes VLAN %s from %s %s" % (link.name, vid, kind, parent.master),
            "%s (VLAN %s on %s, a port of %s)" % (link.name, vid, parent.name, parent.master),
            "the kernel hands VLAN %s's tagged frames arriving on %s to %s before %s sees "
            "them: guests on %s lose VLAN %s" % (vid, parent.name, link.name, parent.master,
                                                 parent.master, vid),
            "ip link del %s; feed VLAN %s from %s.%s instead (wiring = trunk, trunk-bridge = "
            "%s), or take %s out of %s" % (link.name, vid, parent.master, vid, parent.master,
                                           parent.name, parent.master)))
    return out


def _rename_partner(device: str, other: str) -> bool:
    """True when `other` is `device` under Xen's network-bridge rename
    (eth1 <-> peth1): the script renames the NIC to p<name> and gives its old
    name to a virtual device, so a VLAN built on the old name carries nothing."""
    return other == "p" + device or device == "p" + other


def _wrong_parent(snap: Snapshot, config: Config) -> List[Finding]:
    """Uplink devices missing, and VLAN devices on the wrong parent (seed 000)."""
    out = []
    for uplink in config.uplinks:
        conf = "[uplink %s] of %s" % (uplink.name, config.path)
        if snap.get(uplink.device) is None:
            out.append(Finding(
                PROBLEM, "uplink device %s does not exist" % uplink.device,
                "uplink %s" % uplink.name,
                "guests on uplink %s cannot start (their VLANs have no NIC)" % uplink.name,
                "fix device = in %s (after a rename such as Xen's peth%s, name the physical "
                "NIC)" % (conf, uplink.device[-1:] if uplink.device[-1:].isdigit() else "N")))
        parent = uplink.feed_parent()
        for link in snap:
            if link.kind != "vlan" or link.vlan_id not in uplink.allowed_vlans:
                continue
            if link.parent == parent:
                continue
            vid = link.vlan_id
            assert vid is not None
            feed, bridge = uplink.feed(vid), uplink.access_bridge(vid)
            named = link.name == feed
            feeding = link.master == bridge
            renamed = link.parent is not None and _rename_partner(uplink.device, link.parent)
            if not (named or feeding or renamed):
                continue
            if named or feeding:
                severity = PROBLEM
                why = ("%s carries VLAN %s's frames from %s, not from %s: guests on %s see "
                       "nothing of VLAN %s" % (link.name, vid, link.parent, parent, bridge, vid))
            else:
                severity = PROBLEM if link.master is not None else WARNING
                why = ("%s is the renamed name of %s (Xen's network-bridge rename): frames "
                       "of VLAN %s arrive on %s, never on %s.%s" % (
                           link.parent, uplink.device, vid, uplink.device, link.parent, vid))
            out.append(Finding(
                severity,
                "VLAN device %s sits on %s, not on uplink device %s" % (link.name, link.parent,
                                                                        parent),
                "%s (%s%s), uplink %s" % (link.name, _vlan_desc(link),
                                          ", port of %s" % link.master if link.master else "",
                                          uplink.name),
                why,
                "ip link del %s; let virt-vlan create %s (VLAN %s on %s), or fix device = in %s"
                % (link.name, feed, vid, parent, conf)))
    return out


def _target(spec_mode: str, vlans: Tuple[int, ...], uplink: Uplink) -> str:
    return uplink.access_bridge(vlans[0]) if spec_mode == ACCESS else uplink.trunk_bridge


def _guests(snap: Snapshot, config: Optional[Config],
            domains: Sequence[Domain]) -> Tuple[List[Finding], Set[str]]:
    """Taps of running tagged guests: on their bridge, and libvirt agrees.

    Returns the findings and the bridges the guests need (not "unused")."""
    out: List[Finding] = []
    needed: Set[str] = set()
    for domain in domains:
        if not domain.tagged:
            continue
        if config is None:
            out.append(Finding(
                PROBLEM, "domain %s is tagged but the host has no virt-vlan config" % domain.name,
                "domain %s" % domain.name,
                "its hooks refuse every start, and its NICs are on no VLAN",
                "write /etc/virt-vlan/virt-vlan.conf (see virt-vlan.conf(5))"))
            continue
        for spec in domain.specs:
            who = "domain %s, interface %s" % (domain.name, spec.mac)
            try:
                uplink = config.uplink(spec.uplink, who)
            except InputError as err:
                out.append(Finding(PROBLEM, "%s names an uplink the config lacks" % who, who,
                                   str(err), "virt-vlan set %s --mac %s with an uplink of %s"
                                   % (domain.name, spec.mac, config.path)))
                continue
            target = _target(spec.mode, spec.vlans, uplink)
            needed.add(target)
            nic = domain.nic(spec.mac)
            tap = nic.target if nic is not None else None
            link = snap.get(tap) if tap else None
            if link is None:
                out.append(Finding(
                    PROBLEM, "%s has no tap on this host" % who,
                    "%s, tap %s" % (who, tap or "(none in libvirt's live XML)"),
                    "the guest's NIC is connected to nothing",
                    "virsh domiflist %s; restart the guest if the tap is gone" % domain.name))
                continue
            if link.master != target:
                out.append(Finding(
                    PROBLEM, "tap %s is on %s, not on its bridge %s" % (
                        tap, link.master or "no bridge", target),
                    "%s, tap %s" % (who, tap),
                    "the guest is %s instead of %s VLAN %s" % (
                        "on another bridge's network" if link.master else "cut off",
                        spec.mode, ",".join(map(str, spec.vlans))),
                    "virt-vlan plug %s --%s %s --uplink %s" % (
                        tap, spec.mode, ",".join(map(str, spec.vlans)), uplink.name)))
            if nic is not None and nic.source_bridge and nic.source_bridge != target:
                out.append(Finding(
                    WARNING, "%s has <source bridge='%s'>, its target is %s" % (
                        who, nic.source_bridge, target), who,
                    "libvirt re-attaches the tap to %s when libvirtd restarts and at hot-plug: "
                    "the guest sits there, on the wrong network, until a hook moves it"
                    % nic.source_bridge,
                    "virt-vlan set %s --mac %s --%s %s --config (rewrites <source bridge>), or "
                    "virsh edit %s" % (domain.name, spec.mac, spec.mode,
                                       ",".join(map(str, spec.vlans)), domain.name)))
            bridge = snap.get(target)
            if (spec.mode == TRUNK and bridge is not None and bridge.vlan_filtering
                    and link.master == target and link.vlans is not None):
                missing = [v for v in spec.vlans if v not in link.vlans.tagged]
                if spec.native is not None and (link.vlans.pvid != spec.native
                                                or spec.native not in link.vlans.untagged):
                    missing.append(spec.native)
                if missing:
                    out.append(Finding(
                        PROBLEM, "tap %s lacks bridge VLANs %s on %s" % (
                            tap, ",".join(map(str, missing)), target),
                        "%s, tap %s" % (who, tap),
                        "%s filters VLANs: the guest gets no frames of VLAN %s" % (
                            target, ",".join(map(str, missing))),
                        "virt-vlan plug %s --trunk %s --uplink %s" % (
                            tap, ",".join(map(str, spec.vlans)), uplink.name)))
    return out, needed


def _ours(snap: Snapshot, config: Optional[Config]) -> Dict[str, Optional[Uplink]]:
    """Bridges virt-vlan made or would make -> their uplink (None: unknown)."""
    bridges: Dict[str, Optional[Uplink]] = {l.name: None for l in snap
                                            if l.kind == "bridge" and l.managed}
    if config is not None:
        for uplink in config.uplinks:
            for vid in uplink.allowed_vlans:
                link = snap.get(uplink.access_bridge(vid))
                if link is not None and link.kind == "bridge":
                    bridges[link.name] = uplink
            if uplink.wiring == TRUNK and snap.get(uplink.trunk_bridge) is not None:
                bridges[uplink.trunk_bridge] = uplink
    return bridges


def _unused(snap: Snapshot, config: Optional[Config], in_use: Set[str],
            reserved: FrozenSet[str]) -> List[Finding]:
    """virt-vlan devices (our alias) that no guest uses."""
    out = []
    keep: Set[str] = set()
    host_vlans: Set[str] = set()
    trunks: Set[str] = set()
    if config is not None:
        for uplink in config.uplinks:
            trunks.add(uplink.trunk_bridge)
            host_vlans.update(uplink.trunk_vlan(v) for v in uplink.host_vlans)
            if uplink.keep_empty_bridges:
                keep.update(uplink.access_bridge(v) for v in uplink.allowed_vlans)
    for link in snap:
        if not link.managed:
            continue
        if link.kind == "bridge":
            if link.name in trunks or link.name in keep or link.name in in_use \
                    or link.name in reserved:
                continue
            ports = snap.ports(link.name)
            if any(p.kind != "vlan" for p in ports):
                continue  # a guest (or an uplink) is on it
            out.append(Finding(
                WARNING, "bridge %s has no guest" % link.name,
                "%s (virt-vlan's; ports: %s)" % (link.name, ", ".join(p.name for p in ports)
                                                 or "none"),
                "left over from a guest that stopped without its release hook; it holds "
                "its VLAN open on the host",
                "virt-vlan cleanup (deletes only virt-vlan's unused devices)"))
        elif link.kind == "vlan":
            if link.master is not None or link.name in host_vlans or link.addresses:
                continue
            if snap.vlan_children(link.name) or snap.ports(link.name):
                continue
            out.append(Finding(
                WARNING, "VLAN device %s feeds no bridge" % link.name,
                "%s (virt-vlan's, %s)" % (link.name, _vlan_desc(link)),
                "left over from a bridge that is gone; it keeps VLAN %s open on %s"
                % (link.vlan_id, link.parent),
                "virt-vlan cleanup (deletes only virt-vlan's unused devices)"))
    return out


def _mtu(snap: Snapshot, bridges: Dict[str, Optional[Uplink]]) -> List[Finding]:
    """MTU along each path: uplink/feed, bridge, guest taps (seed 003)."""
    out = []
    for name in sorted(bridges):
        bridge = snap.get(name)
        assert bridge is not None
        ports = snap.ports(name)
        chain: List[Link] = [bridge] + list(ports)
        for port in ports:
            lower = snap.get(port.parent) if port.kind == "vlan" and port.parent else None
            if lower is not None:
                chain.append(lower)
        uplink = bridges[name]
        want = uplink.mtu if uplink is not None and uplink.mtu else None
        mtus = {l.mtu for l in chain}
        if len(mtus) > 1:
            small = min(mtus)
            big = [l for l in chain if l.mtu > small]
            out.append(Finding(
                WARNING, "MTU differs along the path of %s: %s" % (
                    name, ", ".join("%s %d" % (l.name, l.mtu) for l in chain)),
                "%s (%s)" % (name, ", ".join(l.name for l in chain)),
                "frames larger than %d bytes from %s are dropped silently where the MTU is %d "
                "(TCP stalls on full-size packets)" % (small, ", ".join(l.name for l in big),
                                                        small),
                "give them one MTU: ip link set dev DEV mtu %d for %s%s" % (
                    small, ", ".join(l.name for l in big),
                    " (or set mtu = in [uplink %s])" % uplink.name if uplink else "")))
        elif want is not None and bridge.mtu != want and uplink is not None:
            out.append(Finding(
                WARNING, "bridge %s has MTU %d, [uplink %s] sets mtu = %d" % (
                    name, bridge.mtu, uplink.name, want), name,
                "guests get MTU %d instead of the %d the admin configured" % (bridge.mtu, want),
                "ip link set dev %s mtu %d (virt-vlan applies it to bridges it creates)"
                % (name, want)))
    return out


def _bridge_settings(snap: Snapshot, bridges: Dict[str, Optional[Uplink]],
                     config: Optional[Config]) -> List[Finding]:
    out = []
    for name in sorted(bridges):
        link = snap.get(name)
        assert link is not None
        if link.nf_call:
            out.append(Finding(
                WARNING, "bridge %s passes bridged frames through iptables (br_netfilter)" % name,
                name,
                "a FORWARD chain with policy DROP drops guest traffic, and conntrack sees "
                "frames of every VLAN",
                "ip link set dev %s type bridge nf_call_iptables 0 nf_call_ip6tables 0 "
                "nf_call_arptables 0 (and sysctl net.bridge.bridge-nf-call-iptables=0)" % name))
        if link.stp:
            out.append(Finding(
                WARNING, "bridge %s runs STP" % name, name,
                "a new guest tap waits in listening/learning for twice the forward delay "
                "(30 s by default) before it passes frames; the switch sees our BPDUs",
                "ip link set dev %s type bridge stp_state 0" % name))
    if config is not None:
        for uplink in config.uplinks:
            link = snap.get(uplink.trunk_bridge)
            if uplink.wiring != TRUNK or link is None or link.kind != "bridge":
                continue
            if not link.vlan_filtering:
                out.append(Finding(
                    WARNING, "trunk bridge %s does not filter VLANs" % link.name,
                    "%s (uplink %s)" % (link.name, uplink.name),
                    "every trunk guest sees every VLAN on %s, not only its list, and can "
                    "send into any" % uplink.device,
                    "set trunk-filtering = yes in [uplink %s] of %s, or ip link set dev %s "
                    "type bridge vlan_filtering 1" % (uplink.name, config.path, link.name)))
    return out


def _held(held: Sequence[Tuple[str, int, float]]) -> List[Finding]:
    return [Finding(PROBLEM, "the agent stopped rebuilding %s" % device, device,
                    "it was deleted %d times within %.0f s, so the agent leaves it alone for a "
                    "while instead of fighting whatever deletes it; running guests that need it "
                    "stay cut off meanwhile" % (deletions, window),
                    "find what deletes it (journalctl -t virt-vlan, the host's network config); "
                    "the agent tries again when the hold ends, or at once after "
                    "systemctl restart virt-vlan-agent")
            for device, deletions, window in held]


def _protection(snap: Snapshot, config: Config, domains: Sequence[Domain]) -> List[Finding]:
    """Port security (docs/port-security.md) of running tagged guests on
    uplinks that have it on: a tap without its filter, and NICs with
    exceptions (listed so the admin sees them)."""
    from virtvlan.parse.metadata import protection

    out: List[Finding] = []
    for domain in domains:
        for spec in domain.specs:
            who = "domain %s, interface %s" % (domain.name, spec.mac)
            try:
                uplink = config.uplink(spec.uplink, who)
                wanted = protection(spec.security, spec.mac, uplink, who, config.path)
            except InputError:
                continue  # _guests reports the uplink; the hook refuses the exception
            if wanted is None:
                continue
            if wanted.allow:
                out.append(Finding(
                    WARNING, "%s has port-security exceptions: %s" % (
                        who, ",".join(sorted(wanted.allow))), who,
                    "its guest may send what the exceptions allow (see docs/port-security.md)",
                    "virt-vlan set %s --mac %s ... --allow '' if it does not need them"
                    % (domain.name, spec.mac)))
            nic = domain.nic(spec.mac)
            tap = nic.target if nic is not None else None
            if tap is None or snap.get(tap) is None:
                continue  # _guests reports the missing tap
            if snap.filters is None:
                out.append(Finding(
                    WARNING, "%s is not protected: nft is not installed" % who,
                    "%s, tap %s" % (who, tap),
                    "port-security = yes on uplink %s needs nftables; its guests start "
                    "refused" % uplink.name, "apt install nftables (or dnf install nftables)"))
            elif not snap.port_filter(tap):
                out.append(Finding(
                    WARNING, "tap %s has no port security" % tap, "%s, tap %s" % (who, tap),
                    "its guest can send BPDUs, forged MACs and ARP, rogue DHCP/RA and "
                    "tagged frames (it was started before port-security = yes, or the "
                    "filter was removed)",
                    "restart the guest, or let the agent's next reconcile add it"))
    return out


def audit(snap: Snapshot, config: Optional[Config], domains: Optional[Sequence[Domain]],
          reserved: FrozenSet[str] = frozenset(),
          held: Sequence[Tuple[str, int, float]] = ()) -> Tuple[Finding, ...]:
    """Every finding on this host, problems first.

    `domains` are the running domains (parsed live XML; untagged ones are
    ignored), None when libvirt did not answer: the guest checks are then
    skipped and nothing counts as "used by a guest" except what its ports show.
    `reserved` are bridges held by hooks between prepare and start; `held`
    are (device, deletions, window seconds) the agent's heal rate limit has
    put on hold (agent/monitor.py, read_holds).
    """
    findings: List[Finding] = _mixed(snap) + _held(held)
    if config is not None:
        findings += _wrong_parent(snap, config)
    in_use: Set[str] = set()
    if domains is not None:
        guest_findings, in_use = _guests(snap, config, domains)
        findings += guest_findings
        if config is not None:
            findings += _protection(snap, config, domains)
    findings += _unused(snap, config, in_use, reserved)
    bridges = _ours(snap, config)
    findings += _mtu(snap, bridges)
    findings += _bridge_settings(snap, bridges, config)
    return tuple(sorted(findings, key=lambda f: _RANK[f.severity]))


# --- the command --------------------------------------------------------------------


def table(findings: Sequence[Finding]) -> str:
    """Aligned lines for people: one block per finding, one line per field."""
    if not findings:
        return "OK: no findings"
    width = max(len(f.severity) for f in findings)
    lines = []
    for f in findings:
        head = f.severity.upper().ljust(width)
        pad = " " * width
        lines.append("%s  what:  %s" % (head, f.what))
        lines.append("%s  where: %s" % (pad, f.where))
        lines.append("%s  why:   %s" % (pad, f.why))
        lines.append("%s  fix:   %s" % (pad, f.fix))
    return "\n".join(lines)


def running_domains(uri: Optional[str]) -> Tuple[Optional[List[Domain]], Optional[str],
                                                  List[Finding]]:
    """Parsed live XML of running tagged domains, or None and why when libvirt
    does not answer; plus a finding for each running domain whose metadata
    does not parse."""
    from virtvlan.virt import adapter as virt
    from virtvlan.errors import VirtVlanError
    from virtvlan.parse.metadata import is_tagged, parse_domain

    try:
        conn = virt.connect(uri, readonly=True)
    except VirtVlanError as err:
        return None, str(err), []
    try:
        domains, bad = [], []
        for xml in conn.running_domain_xmls():
            if not is_tagged(xml):
                continue
            try:
                domains.append(parse_domain(xml))
            except InputError as err:
                # Running with metadata the hook refuses: edited after start
                # (or written around the hook); its next start will fail.
                bad.append(Finding(PROBLEM, "a running domain has virt-vlan metadata the hook "
                                   "refuses", str(err).split(": ", 1)[0],
                                   "its next start fails, and check cannot audit its NICs",
                                   str(err)))
        return domains, None, bad
    except VirtVlanError as err:
        return None, str(err), []
    finally:
        conn.close()


def cmd_check(args: argparse.Namespace) -> int:
    import json

    from virtvlan.host import rtnl, state
    from virtvlan.parse.config import load

    refused: List[Finding] = []
    try:
        config = load(args.config)
    except InputError as err:
        # A config the hooks refuse stops every tagged guest: a problem to
        # report with the other findings, not a reason to audit nothing.
        config = None
        refused.append(Finding(PROBLEM, "the host config is refused", "host config",
                               "every tagged guest fails to start", str(err)))
    snap = rtnl.read_snapshot()
    if config is not None and any(u.port_security for u in config.uplinks):
        from dataclasses import replace

        from virtvlan.host import nftables

        snap = replace(snap, filters=nftables.read_filters())
    domains, libvirt_error, bad = running_domains(getattr(args, "connect", None))
    from virtvlan.agent.monitor import read_holds

    try:
        held = [(h.device, h.deletions, h.window) for h in read_holds()]
    except VirtVlanError as err:
        held = []
        refused.append(Finding(WARNING, "the agent's heal state is unreadable", "heal state",
                               "devices the agent stopped rebuilding cannot be listed",
                               str(err)))
    findings = tuple(refused + bad) + audit(snap, config, domains, reserved=state.reserved(),
                                            held=held)
    code = exit_code(findings)
    notes = []
    if config is None:
        notes.append("no usable host config: checks that need it were skipped")
    if libvirt_error is not None:
        notes.append("libvirt did not answer (%s): host checks only" % libvirt_error)
    if args.json:
        print(json.dumps({"status": code, "libvirt": libvirt_error is None,
                          "config": config.path if config else None, "notes": notes,
                          "findings": [asdict(f) for f in findings]}, indent=2))
    else:
        for note in notes:
            print("note: " + note)
        print(table(findings))
    return code


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "check", help="audit the host's VLAN wiring (exit 0 ok, 1 warnings, 2 problems)",
        description="Audit the host's VLAN wiring, whoever made it: VLAN devices on bridge "
        "ports, VLAN devices on the wrong parent, guest taps off their bridge, unused "
        "virt-vlan devices, MTU mismatches, netfilter/STP on virt-vlan bridges, trunk "
        "bridges without VLAN filtering. Exit status follows the Nagios plugin convention: "
        "0 no findings, 1 warnings only, 2 problems.")
    p.add_argument("-c", "--connect", dest="connect", metavar="URI", default=argparse.SUPPRESS,
                   help="libvirt URI (default: libvirt's); without an answer, host checks only")
    p.add_argument("--json", action="store_true", help="print findings as JSON")
    p.set_defaults(func=cmd_check)
