"""`virt-vlan explain DOMAIN`: read the domain and the host, print
checks/explain.py's paths (text or JSON)."""

import argparse
import json
from dataclasses import asdict

from virtvlan.checks.explain import paths, render


def cmd_explain(args: argparse.Namespace) -> int:
    from virtvlan.host import rtnl
    from virtvlan.parse.config import load_or_refuse
    from virtvlan.parse.metadata import parse_domain
    from virtvlan.virt import adapter as virt

    conn = virt.connect(getattr(args, "connect", None), readonly=True)
    try:
        domain = parse_domain(conn.domain_xml(args.domain))
    finally:
        conn.close()
    config = load_or_refuse(args.config, "domain %s" % domain.name)
    snap = rtnl.read_snapshot()
    if any(u.port_security for u in config.uplinks):
        # As `check` does: the table is read only where a filter can be expected.
        from dataclasses import replace

        from virtvlan.host import nftables

        snap = replace(snap, filters=nftables.read_filters())
    found = paths(domain, config, snap, args.mac)
    if args.json:
        out = []
        for p in found:
            entry = dict(asdict(p), ok=p.ok)
            if p.security is not None:
                entry["security"]["ok"] = p.security.ok
            out.append(entry)
        print(json.dumps(out, indent=2))
    else:
        print(render(found))
    return 0


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "explain", help="show a guest's frame path to the wire and how to tcpdump each hop",
        description="The path of a tagged guest NIC's frames from its tap to the uplink NIC, "
        "the tag added or stripped at each hop, and the tcpdump command that shows them; "
        "then its port security: what its tap's filter drops (as nft commands), its "
        "exceptions and isolation, and whether the filter on the tap is the expected one.")
    p.add_argument("domain", metavar="DOMAIN", help="domain name or UUID")
    p.add_argument("--mac", help="only this NIC (default: every tagged NIC)")
    p.add_argument("-c", "--connect", dest="connect", metavar="URI", default=argparse.SUPPRESS,
                   help="libvirt URI")
    p.add_argument("--json", action="store_true", help="print the path as JSON")
    p.set_defaults(func=cmd_explain)
