"""`virt-vlan check`: audit the host's VLAN wiring, whoever made it.

`audit(snap, config, domains)` is pure: it reads a Snapshot, the host config
(None when there is none) and the running tagged domains (None when libvirt
did not answer) and returns Findings, worst first. Each finding says what is
wrong, where, why it matters and the fix, one line each. The command around
it (cli/check.py) reads the host and prints `table` or JSON with the Nagios
exit codes of `exit_code`: 0 fine, 1 warnings, 2 problems.
"""

from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from virtvlan.checks.moving import bridge_moves
from virtvlan.checks.wiring import Wiring, nic_wiring, source_differs, spec_want
from virtvlan.errors import InputError
from virtvlan.model import TRUNK, Link, Snapshot, Want
from virtvlan.parse.config import Config, Uplink
from virtvlan.parse.metadata import Domain, VlanSpec

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


def _plug_fix(want: Want, tap: str) -> str:
    """The command that wires `tap` as `want` says."""
    vlans = ",".join(map(str, want.vlans))
    native = " --native %d" % want.native if want.native is not None else ""
    return "virt-vlan plug %s --%s %s%s --uplink %s" % (tap, want.mode, vlans, native,
                                                         want.uplink)


def _wiring_findings(domain: Domain, want: Want, found: Wiring) -> List[Finding]:
    """check's rendering of nic_wiring: a PROBLEM per problem."""
    out = []
    for problem in found.problems:
        where = "%s, %s" % (want.who, "tap %s" % found.tap if found.tap else
                            "tap (none in libvirt's live XML)")
        if problem.device not in (found.tap, found.bridge):
            where += ", %s" % problem.device
        if problem.heal:
            fix = _plug_fix(want, found.tap or "TAP")
        elif problem.device in ("", found.tap):
            fix = "virsh domiflist %s; restart the guest if the tap is gone" % domain.name
        else:
            fix = problem.fix
        out.append(Finding(PROBLEM, problem.what, where, problem.why, fix))
    return out


def _guests(snap: Snapshot, config: Optional[Config],
            domains: Sequence[Domain]) -> Tuple[List[Finding], Set[str]]:
    """NICs of running tagged guests: wired as they should be (nic_wiring),
    and libvirt agrees (<source bridge>).

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
                want = spec_want(domain, spec, config)
            except InputError as err:
                out.append(Finding(PROBLEM, "%s names an uplink the config lacks" % who, who,
                                   str(err), "virt-vlan set %s --mac %s with an uplink of %s"
                                   % (domain.name, spec.mac, config.path)))
                continue
            found = nic_wiring(want, config, snap)
            needed.add(found.bridge)
            out += _wiring_findings(domain, want, found)
            nic = domain.nic(spec.mac)
            if nic is not None and nic.source_bridge and source_differs(nic, found.bridge):
                out.append(Finding(
                    WARNING, "%s has <source bridge='%s'>, its target is %s" % (
                        who, nic.source_bridge, found.bridge), who,
                    "libvirt re-attaches the tap to %s when libvirtd restarts and at hot-plug: "
                    "the guest sits there, on the wrong network, until a hook moves it"
                    % nic.source_bridge,
                    _retag_fix(domain, spec)))
    return out, needed


def _retag_fix(domain: Domain, spec: VlanSpec) -> str:
    """The command that writes this host's bridge into the NIC's definition."""
    native = " --native %d" % spec.native if spec.native is not None else ""
    return ("virt-vlan set %s --mac %s --%s %s%s --config (rewrites <source bridge>), or "
            "virsh edit %s" % (domain.name, spec.mac, spec.mode, ",".join(map(str, spec.vlans)),
                               native, domain.name))


def _definitions(config: Config, defined: Sequence[Domain]) -> List[Finding]:
    """Persistent definitions this host cannot start as they are: a tagged
    bridge NIC whose <source bridge> is not this host's bridge for it (a
    guest moved here with `virsh migrate --persistent`, whose definition
    libvirt copies without running the migrate hook on it; a definition
    copied from another host), or metadata this host's config refuses."""
    out: List[Finding] = []
    for domain in defined:
        if not domain.tagged:
            continue
        where = "domain %s (persistent definition)" % domain.name
        try:
            moves = bridge_moves(domain, config)
        except InputError as err:
            out.append(Finding(WARNING, "domain %s's definition is refused by this host's config"
                               % domain.name, where,
                               "its next start here fails at the prepare hook", str(err)))
            continue
        specs = {spec.mac: spec for spec in domain.specs}
        for move in moves:
            out.append(Finding(
                WARNING, "%s has <source bridge='%s'> in its persistent definition; this host "
                "uses %s" % (move.who, move.old or "", move.new), where,
                "at its next start here libvirt attaches the tap to %s first: the start fails "
                "where that bridge does not exist, and the guest sits on another network "
                "where it does until the hook moves it" % (move.old or "no bridge"),
                _retag_fix(domain, specs[move.mac])))
    return out


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
                # The agent adds no filter to a NIC that runs without one (its
                # guest keeps its traffic until its next start), and rebuilds
                # within seconds one virt-vlan installed: what stays is the former.
                out.append(Finding(
                    WARNING, "tap %s has no port security" % tap, "%s, tap %s" % (who, tap),
                    "its guest can send BPDUs, forged MACs and ARP, rogue DHCP/RA and "
                    "tagged frames: it was started before port security was on (an "
                    "upgrade, or port-security = yes since), and keeps its traffic until "
                    "its next start",
                    "restart the guest (or re-tag it: virt-vlan set %s --mac %s --live ...); "
                    "if it must send what protection drops (VRRP, a router, STP), first "
                    "allow=mac-spoof|router|stp: virt-vlan set %s --mac %s ... --allow LIST"
                    % (domain.name, spec.mac, domain.name, spec.mac)))
    return out


def audit(snap: Snapshot, config: Optional[Config], domains: Optional[Sequence[Domain]],
          reserved: FrozenSet[str] = frozenset(),
          held: Sequence[Tuple[str, int, float]] = (),
          defined: Sequence[Domain] = ()) -> Tuple[Finding, ...]:
    """Every finding on this host, problems first.

    `domains` are the running domains (parsed live XML; untagged ones are
    ignored), None when libvirt did not answer: the guest checks are then
    skipped and nothing counts as "used by a guest" except what its ports show.
    `reserved` are bridges held by hooks between prepare and start; `held`
    are (device, deletions, window seconds) the agent's heal rate limit has
    put on hold (host/holds.py, read_holds). `defined` are the persistent
    definitions (parsed inactive XML), checked against this host's config.
    """
    findings: List[Finding] = _mixed(snap) + _held(held)
    if config is not None:
        findings += _wrong_parent(snap, config)
        findings += _definitions(config, defined)
    in_use: Set[str] = set()
    if domains is not None:
        guest_findings, in_use = _guests(snap, config, domains)
        # A device several NICs depend on (an uplink device gone) is one
        # finding, not one per NIC: the same fact reads the same.
        seen = {f.what for f in findings}
        for finding in guest_findings:
            if finding.what not in seen:
                findings.append(finding)
                seen.add(finding.what)
        if config is not None:
            findings += _protection(snap, config, domains)
    findings += _unused(snap, config, in_use, reserved)
    bridges = _ours(snap, config)
    findings += _mtu(snap, bridges)
    findings += _bridge_settings(snap, bridges, config)
    return tuple(sorted(findings, key=lambda f: _RANK[f.severity]))


# --- rendering -----------------------------------------------------------------------


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
