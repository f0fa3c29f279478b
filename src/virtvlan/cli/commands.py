"""The `virt-vlan` command: plug/unplug ports by hand, check input, install hooks.

Exit status: 0 done, 1 refused or failed (one line on stderr), 2 bad usage.
Dry runs print the equivalent `ip` commands on stdout and change nothing.
"""

import argparse
import logging
import sys
from typing import List, NoReturn, Optional

from virtvlan import __version__
from virtvlan.parse.config import describe, load, load_or_refuse
from virtvlan.errors import InputError, InternalError, VirtVlanError
from virtvlan.model import ACCESS, TRUNK, PortVlans, Want
from virtvlan.parse.vlans import VlanSyntax, parse_vlan, parse_vlan_list
from virtvlan.cli import security

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line instead of argparse's usage block: what, and where to look.
        self.exit(2, "virt-vlan: %s (see 'virt-vlan %s--help')\n"
                  % (message, (self.prog.split(" ", 1)[1] + " ") if " " in self.prog else ""))


def _print_plan(lines: "tuple[str, ...]") -> None:
    print("\n".join(lines) if lines else "# nothing to change")


def cmd_plug(args: argparse.Namespace) -> int:
    from virtvlan.apply import engine

    who = "plug %s" % args.port
    try:
        if args.access is not None:
            want = Want(uplink="", mode=ACCESS, vlans=(parse_vlan(args.access),),
                        port=args.port, who=who)
        else:
            native = parse_vlan(args.native) if args.native is not None else None
            want = Want(uplink="", mode=TRUNK, vlans=parse_vlan_list(args.trunk),
                        port=args.port, who=who, native=native)
    except VlanSyntax as err:
        raise InputError("%s: %s; fix the VLAN argument" % (who, err)) from err
    if args.native is not None and args.access is not None:
        raise InputError("%s: --native goes with --trunk only (an access port's VLAN is "
                         "already untagged); drop --native" % who)
    if want.native is not None and want.native in want.vlans:
        raise InputError("%s: --native %d is also in --trunk %s; the native VLAN is the one the "
                         "guest sees untagged, give it in --native only"
                         % (who, want.native, args.trunk))
    config = load_or_refuse(args.config, who)
    uplink = config.uplink(args.uplink, who)
    denied = [v for v in want.vlans + ((want.native,) if want.native else ())
              if v not in uplink.allowed_vlans]
    if denied:
        raise InputError("%s: VLAN %d not allowed on uplink %s; add it to allowed-vlans in "
                         "[uplink %s] of %s" % (who, denied[0], uplink.name, uplink.name,
                                                config.path))
    want = Want(uplink=uplink.name, mode=want.mode, vlans=want.vlans, port=want.port, who=who,
                native=want.native, protection=_plug_protection(args, uplink, who, config.path))
    result = engine.wire([want], config, why=who, dry_run=args.dry_run)
    if args.dry_run:
        _print_plan(result.render())
    return 0


def _plug_protection(args: argparse.Namespace, uplink, who: str,  # type: ignore[no-untyped-def]
                     path: str):
    """The port security of a plug: with --mac (the guest's MAC behind the
    port) on an uplink with port-security = yes; None otherwise."""
    from virtvlan.parse.metadata import parse_mac, parse_security, protection

    security = {"allow": args.allow, "guard": args.guard,
                "isolated": "yes" if args.isolated else None, "ips": args.ips}
    if args.mac is None:
        if any(v is not None for v in security.values()):
            raise InputError("%s: --allow, --guard, --isolated and --ips need --mac (the "
                             "guest's MAC behind the port); add --mac" % who)
        return None
    mac = parse_mac(args.mac)
    if mac is None:
        raise InputError("%s: --mac %s is not a MAC address; write six hex pairs like "
                         "52:54:00:11:22:33" % (who, args.mac))
    return protection(parse_security(security, who), mac, uplink, who, path)


def cmd_unplug(args: argparse.Namespace) -> int:
    from virtvlan.apply import engine

    who = "unplug %s" % args.port
    config = load_or_refuse(args.config, who)
    result = engine.release(config, why=who, port=args.port, dry_run=args.dry_run)
    if args.dry_run:
        _print_plan(result.render())
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from virtvlan.apply import engine

    config = load_or_refuse(args.config, "cleanup")
    result = engine.release(config, why="cleanup", dry_run=args.dry_run)
    if args.dry_run:
        _print_plan(result.render())
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_or_refuse(args.config, "check-config")
    print(describe(config))
    return 0


def cmd_check_domain(args: argparse.Namespace) -> int:
    from virtvlan.parse.metadata import parse_domain, wants
    from virtvlan.plan.wiring import bridge_for

    try:
        with open(args.file, "rb") as handle:
            xml = handle.read()
    except OSError as err:
        raise InputError("check-domain: cannot read %s: %s" % (args.file, err.strerror)) from err
    domain = parse_domain(xml)
    if not domain.tagged:
        print("domain %s: no virt-vlan metadata (untagged; the hook leaves it alone)"
              % domain.name)
        return 0
    config = load_or_refuse(args.config, "domain %s" % domain.name)
    for want, spec in zip(wants(domain, config), domain.specs):
        print("domain %s, interface %s: %s VLAN %s on uplink %s -> bridge %s"
              % (domain.name, spec.mac, spec.mode, ",".join(map(str, want.vlans)),
                 want.uplink, bridge_for(want, config)))
    # What the migrate/restore hook of a host with this config would change
    # (docs/moving-guests.md): the guest arrives there on these bridges.
    from virtvlan.checks.moving import bridge_moves, describe_moves

    where = "a host with %s (its migrate/restore hook rewrites it)" % config.path
    for line in describe_moves(bridge_moves(domain, config), where):
        print(line)
    return 0


def _vlan_words(vlans: "Optional[PortVlans]") -> str:
    """'pvid 1, vlans 1,5-7, untagged 1' (members as ranges)."""
    from virtvlan.parse.vlans import format_vlan_list

    if vlans is None:
        return "pvid none, vlans none"
    words = "pvid %s, vlans %s" % ("none" if vlans.pvid is None else vlans.pvid,
                                   format_vlan_list(vlans.members) or "none")
    if vlans.untagged:
        words += ", untagged %s" % format_vlan_list(vlans.untagged)
    return words


def cmd_status(args: argparse.Namespace) -> int:
    from virtvlan.host import rtnl  # read-only: no pyroute2 import
    from virtvlan.model import MANAGED_ALIAS

    snap = rtnl.read_snapshot()
    try:
        config = load(args.config)  # optional here: it only names the trunk bridges
    except VirtVlanError as err:  # status must still show the host
        log.warning("%s; trunk bridges are recognised by their VLAN devices only", err)
        config = None
    trunk_uplinks = {u.trunk_bridge: u for u in (config.uplinks if config else ())
                     if u.wiring == TRUNK}
    bridges = [l for l in snap if l.kind == "bridge"]
    shown = 0
    for bridge in bridges:
        ports = snap.ports(bridge.name)
        # A trunk bridge: the config says so, or VLAN devices sit on it.
        trunk = bridge.name in trunk_uplinks or bool(snap.vlan_children(bridge.name))
        if not bridge.managed and not any(p.managed for p in ports) and not (
                bridge.name in trunk_uplinks):
            continue
        shown += 1
        mark = "managed" if bridge.managed else "adopted"
        if not trunk:
            print("%s (%s, mtu %d)" % (bridge.name, mark, bridge.mtu))
        else:
            print("%s (%s, mtu %d, trunk, vlan_filtering %d, default_pvid %d)"
                  % (bridge.name, mark, bridge.mtu, bridge.vlan_filtering, bridge.default_pvid))
            if not bridge.vlan_filtering:
                uplink = trunk_uplinks.get(bridge.name)
                fix = ("virt-vlan switches it on at the next trunk plug" if bridge.managed or (
                    uplink is not None and uplink.trunk_filtering) else
                    "set trunk-filtering = yes in [uplink %s] to enforce them"
                    % (uplink.name if uplink else "..."))
                print("  warning: %s does not filter VLANs, so its trunk guests see every VLAN "
                      "of the wire, not only their list; %s" % (bridge.name, fix))
        for port in ports:
            what = ("VLAN %s on %s" % (port.vlan_id, port.parent) if port.kind == "vlan"
                    else port.kind)
            line = "  %-15s %s%s" % (port.name, what, ", managed" if port.managed else "")
            if trunk:
                line += ", " + _vlan_words(port.vlans)
            print(line)
        if trunk:
            print("  %-15s %s" % ("%s (self)" % bridge.name, _vlan_words(bridge.vlans)))
    if not shown:
        print("no virt-vlan bridges on this host (devices are marked with alias %r)"
              % MANAGED_ALIAS)
    return 0


def cmd_install_hooks(args: argparse.Namespace) -> int:
    from virtvlan.cli.install import install

    for line in install(args.hooks_dir, dry_run=args.dry_run, agent=not args.no_agent):
        print(line)
    return 0


def cmd_uninstall_hooks(args: argparse.Namespace) -> int:
    from virtvlan.cli.install import uninstall

    for line in uninstall(args.hooks_dir, dry_run=args.dry_run):
        print(line)
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from virtvlan.agent.service import main as agent_main

    return agent_main(args.connect, args.config, verbose=args.verbose)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="virt-vlan", description="Wire libvirt guest taps onto VLANs.")
    parser.add_argument("--version", action="version", version="virt-vlan " + __version__)
    parser.add_argument("--config", help="host config (default $VIRT_VLAN_CONFIG or "
                        "/etc/virt-vlan/virt-vlan.conf)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each change")
    parser.add_argument("-c", "--connect", metavar="URI", help="libvirt URI for the domain "
                        "commands, as virsh -c (default: libvirt's default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("plug", help="wire an existing tap/veth as the hooks would")
    p.add_argument("port")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--access", metavar="V", help="guest sees VLAN V untagged")
    mode.add_argument("--trunk", metavar="LIST", help="guest sees these VLANs tagged (5,7,100-110)")
    p.add_argument("--native", metavar="V", help="with --trunk: the guest also sees VLAN V "
                   "untagged (V must be allowed, not in LIST)")
    p.add_argument("--uplink", help="uplink name from the config (default: its default)")
    p.add_argument("--mac", help="the guest's MAC behind the port: with port-security = yes "
                   "on the uplink, the port is protected (docs/port-security.md)")
    security.add_arguments(p, "with --mac: ")
    p.add_argument("--dry-run", action="store_true",
                   help="print ip/bridge commands, change nothing")
    p.set_defaults(func=cmd_plug)

    p = sub.add_parser("unplug", help="take a port off its VLAN bridge and clean up")
    p.add_argument("port")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_unplug)

    p = sub.add_parser("cleanup", help="delete virt-vlan bridges and feeds nobody uses")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_cleanup)

    p = sub.add_parser("check-config", help="load the host config and summarize it")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("check-domain", help="validate a domain XML file's VLAN metadata and "
                       "show the <source bridge> a host with the config gives it")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_domain)

    p = sub.add_parser("status", help="show virt-vlan bridges and their ports")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("agent", help="run the agent in the foreground (hot-plugged NICs, "
                       "reconcile, heal; systemd: virt-vlan-agent.service)")
    p.add_argument("-c", "--connect", metavar="URI", help="libvirt URI (default: libvirt's)")
    p.set_defaults(func=cmd_agent)

    for name, func, text in (("install-hooks", cmd_install_hooks, "install libvirt hook drop-ins"),
                             ("uninstall-hooks", cmd_uninstall_hooks, "remove our drop-ins")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--hooks-dir", default="/etc/libvirt/hooks")
        p.add_argument("--dry-run", action="store_true")
        if name == "install-hooks":
            p.add_argument("--no-agent", action="store_true",
                           help="do not install the agent's systemd unit")
        p.set_defaults(func=func)

    from virtvlan.cli.domains import add_commands  # imports no libvirt: commands import virt.py

    add_commands(sub)

    from virtvlan.cli import check, completion, explain  # issue 8
    for module in (check, explain, completion):
        module.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="virt-vlan: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except VirtVlanError as err:
        print("virt-vlan: %s" % err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("virt-vlan: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug of ours: one line, as the hook says it; -v adds the traceback
        if args.verbose:
            import traceback

            traceback.print_exc(file=sys.stderr)
        print("virt-vlan: %s" % InternalError.wrap(
            err, "virt-vlan %s" % args.command,
            "please report this bug with the traceback that -v prints"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
