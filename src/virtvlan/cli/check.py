"""`virt-vlan check`: read the host, libvirt and the agent's holds, then
print checks/audit.py's findings with the Nagios exit codes."""

import argparse
import json
from dataclasses import asdict
from typing import List, Optional, Tuple

from virtvlan.checks.audit import PROBLEM, WARNING, Finding, audit, exit_code, table
from virtvlan.errors import InputError, VirtVlanError
from virtvlan.parse.metadata import Domain


def libvirt_domains(uri: Optional[str]) -> Tuple[Optional[List[Domain]], List[Domain],
                                                  Optional[str], List[Finding]]:
    """Parsed live XML of running tagged domains (None and why when libvirt
    does not answer), parsed persistent definitions of tagged domains, and a
    finding for each whose metadata does not parse."""
    from virtvlan.virt import adapter as virt

    try:
        conn = virt.connect(uri, readonly=True)
    except VirtVlanError as err:
        return None, [], str(err), []
    try:
        bad: List[Finding] = []
        running = _parsed(conn.running_domain_xmls(), bad, PROBLEM, "a running domain",
                          "its next start fails, and check cannot audit its NICs")
        defined = _parsed(conn.defined_domain_xmls(), bad, WARNING,
                          "a domain's persistent definition", "its next start fails")
        return running, defined, None, bad
    except VirtVlanError as err:
        return None, [], str(err), []
    finally:
        conn.close()


def _parsed(xmls: List[bytes], bad: List[Finding], severity: str, whose: str,
            why: str) -> List[Domain]:
    """The tagged domains of `xmls`; a finding in `bad` for each the hook refuses."""
    from virtvlan.parse.metadata import is_tagged, parse_domain

    out = []
    for xml in xmls:
        if not is_tagged(xml):
            continue
        try:
            out.append(parse_domain(xml))
        except InputError as err:
            # Metadata the hook refuses: edited after start, or written around
            # the hook (virsh edit, a definition from elsewhere).
            bad.append(Finding(severity, "%s has virt-vlan metadata the hook refuses" % whose,
                               str(err).split(": ", 1)[0], why, str(err)))
    return out


def cmd_check(args: argparse.Namespace) -> int:
    from virtvlan.host import rtnl, state
    from virtvlan.host.holds import read_holds
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
    domains, defined, libvirt_error, bad = libvirt_domains(getattr(args, "connect", None))
    try:
        held = [(h.device, h.deletions, h.window) for h in read_holds()]
    except VirtVlanError as err:
        held = []
        refused.append(Finding(WARNING, "the agent's heal state is unreadable", "heal state",
                               "devices the agent stopped rebuilding cannot be listed",
                               str(err)))
    findings = tuple(refused + bad) + audit(snap, config, domains, reserved=state.reserved(),
                                            held=held, defined=defined)
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
        "bridges without VLAN filtering, persistent definitions that name a bridge this host "
        "does not use for them. Exit status follows the Nagios plugin convention: "
        "0 no findings, 1 warnings only, 2 problems.")
    p.add_argument("-c", "--connect", dest="connect", metavar="URI", default=argparse.SUPPRESS,
                   help="libvirt URI (default: libvirt's); without an answer, host checks only")
    p.add_argument("--json", action="store_true", help="print findings as JSON")
    p.set_defaults(func=cmd_check)
