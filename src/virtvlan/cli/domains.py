"""The domain commands: set, clear, show, list, attach, detach (through libvirt-python).

They fit virsh habits: `-c URI`, a domain by name, UUID or ID, and
--live / --config / --current mapped to libvirt's flags as `virsh metadata`
maps them. Metadata is written with virDomainSetMetadata (virt.py), never
by editing XML text.

Every write is validated first by the hook's own code on the document the
hook will see: metadata.parse_domain and metadata.wants on the domain XML
with the new metadata in it, then engine.check against this host's config.
Changes to a running guest go through the same engine and host lock as the
hooks; libvirt is never called while the lock is held (engine calls take and
release it, libvirt calls happen between them).
"""

import argparse
import json
import logging
import random
import time
from dataclasses import dataclass, replace
from typing import Callable, List, NoReturn, Optional, Sequence, Tuple

from virtvlan.checks import wiring
from virtvlan.cli import nics, security
from virtvlan.parse.config import Config, load, load_or_refuse
from virtvlan.errors import InputError, Refused, VirtVlanError
from virtvlan.host import state
from virtvlan.parse.metadata import (Domain, Security, VlanSpec, parse_domain, parse_mac,
                                     parse_security, wants)
from virtvlan.model import ACCESS, TRUNK, Want
from virtvlan.parse.vlans import VlanSyntax, format_vlan_list, parse_vlan, parse_vlan_list

log = logging.getLogger(__name__)

# How long `detach --live` waits for the guest to release the NIC (libvirt
# returns once it has asked; the guest acknowledges the unplug itself).
DETACH_WAIT = 10.0


# --- arguments ---------------------------------------------------------------------

def _usage(args: argparse.Namespace, message: str) -> NoReturn:
    args.usage(message)  # the subcommand parser's error(): exit 2
    raise AssertionError("unreachable")


def _flags(args: argparse.Namespace) -> int:
    from virtvlan.virt import adapter as virt

    current = getattr(args, "current", False)
    if current and (args.live or args.affect_config):
        _usage(args, "--current cannot be combined with --live or --config")
    return virt.affect_flags(args.live, args.affect_config, current)


def _mac_arg(args: argparse.Namespace, value: str) -> str:
    mac = parse_mac(value)
    if mac is None:
        _usage(args, "--mac %r is not a MAC address (write six hex pairs like "
               "52:54:00:11:22:33)" % value)
    return mac


def _check_vlan_usage(args: argparse.Namespace) -> None:
    if args.native is not None and args.trunk is None:
        _usage(args, "--native goes with --trunk (the VLAN a trunk guest sees untagged)")


def _spec(args: argparse.Namespace, mac: str, who: str,
          old: Optional[VlanSpec] = None) -> VlanSpec:
    """The NIC's new spec; its port security from --allow/--guard/
    --isolated/--ips, or kept from `old` (its current spec) when none is given."""
    security = _security(args, who, old)
    try:
        if args.access is not None:
            return VlanSpec(mac=mac, mode=ACCESS, vlans=(parse_vlan(args.access),),
                            uplink=args.uplink, security=security)
        native = parse_vlan(args.native) if args.native is not None else None
        return VlanSpec(mac=mac, mode=TRUNK, vlans=parse_vlan_list(args.trunk),
                        uplink=args.uplink, native=native, security=security)
    except VlanSyntax as err:
        raise InputError("%s: %s; fix the VLAN argument" % (who, err)) from err


def _security(args: argparse.Namespace, who: str, old: Optional[VlanSpec]) -> Security:
    given = {"allow": getattr(args, "allow", None), "guard": getattr(args, "guard", None),
             "isolated": "yes" if getattr(args, "isolated", None) else None,
             "ips": getattr(args, "ips", None)}
    if all(value is None for value in given.values()):
        return old.security if old is not None else Security()
    return parse_security(given, who)


def _config(args: argparse.Namespace, who: str) -> Config:
    return load_or_refuse(args.config, who)


# --- definitions ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Def:
    """One definition of a guest a command reads and writes."""

    live: bool  # the running guest's definition; else the persistent one
    xml: bytes

    @property
    def what(self) -> str:
        return "live" if self.live else "persistent"


def _definitions(guest, flags: int) -> List[_Def]:  # type: ignore[no-untyped-def]
    """The definitions `flags` selects: persistent first, then live (the
    live one changes the host, so it goes last, after everything that can
    only be refused has been)."""
    live, config = guest.targets(flags)
    out = []
    if config:
        out.append(_Def(live=False, xml=guest.xml(inactive=True)))
    if live:
        out.append(_Def(live=True, xml=guest.xml()))
    return out


def _flag(definition: _Def) -> int:
    from virtvlan.virt import adapter as virt

    return virt.AFFECT_LIVE if definition.live else virt.AFFECT_CONFIG


def _existing(definition: _Def, name: str) -> Domain:
    """The definition as the hook parses it; a refusal here is about
    metadata already in it (say how to start over)."""
    try:
        return parse_domain(definition.xml)
    except InputError as err:
        raise InputError("%s (in the %s definition; 'virt-vlan clear %s' removes virt-vlan's "
                         "metadata)" % (err, definition.what, name)) from err


def _validate(xml: bytes, config: Config, live: bool,
              new_tap: Optional[str] = None) -> Tuple[Domain, Tuple[Want, ...]]:
    """The hook's checks on the document it will see: parse, wants, plan.

    For a stopped definition the taps do not exist yet: plan as `prepare`
    does (bridges and feeds only); for the live one, with the taps, but for
    `new_tap`, the tap of a NIC about to be hot-plugged (its bridge only).
    """
    from virtvlan.apply import engine

    domain = parse_domain(xml)
    wanted = tuple(replace(w, port=None) if not live or w.port == new_tap else w
                   for w in wants(domain, config))
    engine.check(wanted, config)
    return domain, wanted


def _key(domain: Domain) -> str:
    return state.domain_key(domain.uuid, domain.name)


def _with_spec(specs: Sequence[VlanSpec], spec: VlanSpec) -> List[VlanSpec]:
    """`specs` with `spec` replacing the entry of its MAC (in place) or added."""
    out = [spec if s.mac == spec.mac else s for s in specs]
    if spec not in out:
        out.append(spec)
    return out


# --- live wiring ---------------------------------------------------------------------

def _point_source(guest, xml: bytes, mac: str, bridge: str, flags: int) -> None:  # type: ignore[no-untyped-def]
    """<source bridge> of the NIC -> `bridge`, through the device-update API.

    On a live definition libvirt moves the tap itself (the bridge must
    exist). Drivers without device update (the test driver) get a warning:
    the hook still moves the tap at start.
    """
    from virtvlan.virt import adapter as virt

    nic = parse_domain(xml).nic(mac)
    if nic is None:
        return
    if nic.type != "bridge":
        log.warning("domain %s, interface %s: it is <interface type='%s'>, so its source is "
                    "left as is; the hook moves its tap to %s at start (make it type='bridge' "
                    "with <source bridge='%s'/> to let libvirt attach it there itself)",
                    guest.name, mac, nic.type, bridge, bridge)
        return
    if nic.source_bridge == bridge:
        return
    iface = nics.interface_xml(xml, mac)
    assert iface is not None
    try:
        guest.update_device(nics.with_source_bridge(iface, bridge), flags)
    except virt.NotSupported as err:
        log.warning("%s; <source bridge> stays %s (the hook moves the tap to %s at start)",
                    err, nic.source_bridge, bridge)


def _build_live(config: Config, xml: bytes, why: str) -> Tuple[Domain, Tuple[Want, ...]]:
    """Step 1 of a live change: the bridges and feeds of every tagged NIC of
    the live definition `xml`, reserved under the hook's key (what `prepare`
    does). On an error the engine has rolled back: the host is as it was."""
    from virtvlan.apply import engine

    domain = parse_domain(xml)
    wanted = wants(domain, config)
    engine.wire([replace(w, port=None) for w in wanted], config, why=why,
                reserve_key=_key(domain))
    return domain, wanted


def _point_live(guest, config: Config, xml: bytes, macs: Sequence[str], why: str) -> None:  # type: ignore[no-untyped-def]
    """Step 2 of a live change, once _build_live made the bridges: libvirt
    moves each tap of `macs` through the device-update API (so the live XML
    says where the tap is; libvirt adds a port with an ioctl that fails on a
    tap that is already a port elsewhere, so it goes before the engine)."""
    from virtvlan.virt import adapter as virt

    for spec in parse_domain(xml).specs:
        if spec.mac not in macs:
            continue
        _, bridge = nics.target_bridge(spec, config, why)
        try:
            _point_source(guest, xml, spec.mac, bridge, virt.AFFECT_LIVE)
        except virt.LibvirtError as err:
            # _wire_live moves the tap anyway; say the XML lags.
            log.warning("%s; the tap is moved to %s all the same, the live XML still names "
                        "the old bridge", err, bridge)


def _wire_live(config: Config, xml: bytes, why: str) -> None:
    """The last steps of a live change: the engine wires every tap as the
    `start` hook does (moving any tap libvirt did not, MTU, link up), then
    what the old VLANs no longer need goes."""
    from virtvlan.apply import engine

    domain = parse_domain(xml)
    engine.wire(wants(domain, config), config, why=why, reserve_key=_key(domain))
    engine.release(config, why=why)


def _unreserve_to(domain: Domain, config: Config, why: str) -> None:
    """Reserve exactly what `domain`'s tagged NICs need, then clean up."""
    from virtvlan.apply import engine

    wanted = wants(domain, config)
    if wanted:
        engine.wire([replace(w, port=None) for w in wanted], config, why=why,
                    reserve_key=_key(domain))
        engine.release(config, why=why)
    else:
        engine.release(config, why=why, reserve_key=_key(domain))


# --- set / clear ---------------------------------------------------------------------

def cmd_set(args: argparse.Namespace) -> int:
    from virtvlan.virt import adapter as virt

    flags = _flags(args)
    _check_vlan_usage(args)
    mac = _mac_arg(args, args.mac) if args.mac is not None else None
    config = _config(args, "set %s" % args.domain)
    with virt.connect(args.connect) as conn:
        guest = conn.guest(args.domain)
        defs = _definitions(guest, flags)
        if mac is None:
            domain = _existing(defs[-1], guest.name)
            if not 0 <= args.iface < len(domain.nics):
                raise InputError("domain %s: --iface %d, but its %s definition has %d "
                                 "interface(s) (0-%d); see 'virsh domiflist %s'"
                                 % (guest.name, args.iface, defs[-1].what, len(domain.nics),
                                    max(len(domain.nics) - 1, 0), guest.name))
            mac = domain.nics[args.iface].mac
        who = "domain %s, interface %s" % (guest.name, mac)
        current = [s for s in _existing(defs[-1], guest.name).specs if s.mac == mac]
        spec = _spec(args, mac, who, current[0] if current else None)
        uplink, bridge = nics.target_bridge(spec, config, who)
        writes = []
        for definition in defs:
            domain = _existing(definition, guest.name)
            if domain.nic(mac) is None:
                raise InputError("%s: the %s definition has no <interface> with this MAC (its "
                                 "MACs: %s); use 'virt-vlan attach' to add a tagged NIC"
                                 % (who, definition.what,
                                    ", ".join(n.mac for n in domain.nics) or "none"))
            specs = _with_spec(domain.specs, spec)
            new_xml = nics.with_specs(definition.xml, specs)
            _validate(new_xml, config, definition.live)
            writes.append((definition, specs, new_xml))
        # Everything is validated: write, persistent definition first.
        for definition, specs, new_xml in writes:
            if not definition.live:
                guest.set_metadata(nics.render_specs(specs), _flag(definition))
                _point_source(guest, definition.xml, mac, bridge, _flag(definition))
                continue
            # The live metadata goes in after libvirt moved the tap: a running
            # agent acts on libvirt's metadata-change event at once and moves
            # the tap itself, and libvirt's device update then fails on a tap
            # that is already a port of the new bridge, leaving the live XML
            # on the old one. A refused build changes nothing anywhere.
            _build_live(config, new_xml, why="set %s" % who)
            _point_live(guest, config, new_xml, [mac], why="set %s" % who)
            guest.set_metadata(nics.render_specs(specs), virt.AFFECT_LIVE)
            _wire_live(config, new_xml, why="set %s" % who)
    print("%s: %s VLAN %s on uplink %s -> bridge %s (%s)"
          % (who, spec.mode, format_vlan_list(spec.vlans), uplink, bridge,
             " and ".join(d.what for d in defs)))
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    from virtvlan.apply import engine
    from virtvlan.host import rtnl
    from virtvlan.virt import adapter as virt

    flags = _flags(args)
    mac = _mac_arg(args, args.mac) if args.mac is not None else None
    with virt.connect(args.connect) as conn:
        guest = conn.guest(args.domain)
        defs = _definitions(guest, flags)
        config = (_config(args, "clear %s" % args.domain) if any(d.live for d in defs)
                  else None)
        found = False
        for definition in defs:
            if mac is None:
                if guest.metadata(_flag(definition)) is None:
                    continue
                old_specs: Sequence[VlanSpec] = ()
                try:
                    old_specs = parse_domain(definition.xml).specs
                except InputError:
                    pass  # broken metadata: removing it is the point
                specs: List[VlanSpec] = []
            else:
                old_specs = _existing(definition, guest.name).specs
                specs = [s for s in old_specs if s.mac != mac]
                if len(specs) == len(old_specs):
                    continue
            found = True
            guest.set_metadata(nics.render_specs(specs) if specs else None, _flag(definition))
            if not definition.live:
                continue
            assert config is not None
            why = "clear domain %s" % guest.name
            domain = parse_domain(nics.with_specs(definition.xml, specs))
            _unreserve_to(domain, config, why)
            cleared = {s.mac for s in old_specs} - {s.mac for s in specs}
            snap = rtnl.read_snapshot()
            for nic in domain.nics:
                if nic.mac not in cleared or nic.target is None:
                    continue
                link = snap.get(nic.target)
                if link is None or link.master is None or link.master == nic.source_bridge:
                    continue  # where libvirt itself put it: it stays there
                try:
                    engine.release(config, why=why, port=nic.target)
                except Refused:
                    continue  # not on a virt-vlan bridge: not ours to move
                log.warning("domain %s, interface %s: tap %s taken off %s, it is on no bridge "
                            "now; point the NIC at a bridge with 'virsh update-device' or "
                            "restart the guest", guest.name, nic.mac, nic.target, link.master)
    if not found:
        print("domain %s: no virt-vlan %s; nothing to clear"
              % (guest.name, "entry for %s" % mac if mac else "entries"))
        return 0
    print("domain %s: virt-vlan entry%s removed (%s)"
          % (guest.name, " for %s" % mac if mac else "s", " and ".join(d.what for d in defs)))
    return 0


# --- show / list -----------------------------------------------------------------------

def _optional_config(args: argparse.Namespace) -> Optional[Config]:
    return load(args.config)


def _state(running: bool) -> str:
    return "running" if running else "shut off"


def cmd_show(args: argparse.Namespace) -> int:
    from virtvlan.host import rtnl
    from virtvlan.virt import adapter as virt

    config = _optional_config(args)
    with virt.connect(args.connect, readonly=True) as conn:
        guest = conn.guest(args.domain)
        running = guest.active
        xml = guest.xml(inactive=not running)
    domain = parse_domain(xml)
    snap = rtnl.read_snapshot() if running and domain.tagged and config else None
    statuses = wiring.nic_statuses(domain, running, config, snap)
    guards = _protections(domain, config, running)
    if args.json:
        print(json.dumps({"domain": domain.name, "uuid": domain.uuid, "state": _state(running),
                          "nics": [s.as_json() for s in statuses], "protection": guards},
                         indent=2))
        return 0
    if not statuses:
        print("domain %s (%s): no interfaces" % (domain.name, _state(running)))
        return 0
    print(nics.table([nics.row(s)[1:] for s in statuses], nics.COLUMNS[1:]))
    if guards:
        print()
    for entry in guards:
        print(security.line(entry))
    return 0


def _protections(domain: Domain, config: Optional[Config], running: bool) -> list:
    """Each tagged NIC's port security (cli/security.py); a running guest's
    taps checked against virt-vlan's nftables table when an uplink has it on."""
    from virtvlan.host import nftables

    filters = None
    if running and config is not None and any(u.port_security for u in config.uplinks):
        try:
            filters = {f.port: f.rules for f in nftables.read_filters() or ()}
        except VirtVlanError:
            filters = None
    return security.describe(domain, config, filters)


def cmd_list(args: argparse.Namespace) -> int:
    from virtvlan.host import rtnl
    from virtvlan.virt import adapter as virt

    config = _optional_config(args)
    found = []
    with virt.connect(args.connect, readonly=True) as conn:
        for guest in conn.guests():
            running = guest.active
            found.append((guest, running, guest.xml(inactive=not running)))
    snap = None
    entries, rows = [], []
    for guest, running, xml in found:
        try:
            domain = parse_domain(xml)
        except InputError as err:
            entries.append({"domain": guest.name, "uuid": guest.uuid, "state": _state(running),
                            "error": str(err), "nics": []})
            rows.append((guest.name,) + ("-",) * 7 + ("invalid: %s" % err,))
            continue
        if not domain.tagged:
            continue
        if running and config is not None and snap is None:
            snap = rtnl.read_snapshot()
        statuses = [s for s in wiring.nic_statuses(domain, running, config, snap) if s.mode]
        entries.append({"domain": domain.name, "uuid": domain.uuid, "state": _state(running),
                        "nics": [s.as_json() for s in statuses]})
        rows.extend(nics.row(s) for s in statuses)
    if args.json:
        print(json.dumps(entries, indent=2))
    elif rows:
        print(nics.table(rows))
    else:
        print("no domain has virt-vlan metadata (tag one with 'virt-vlan set')")
    return 0


# --- attach / detach ---------------------------------------------------------------------

def _new_mac(taken: Sequence[str]) -> str:
    # libvirt's own prefix for generated MACs (52:54:00, QEMU's OUI).
    while True:
        mac = "52:54:00:%02x:%02x:%02x" % tuple(random.randrange(256) for _ in range(3))
        if mac not in taken:
            return mac


def cmd_attach(args: argparse.Namespace) -> int:
    from virtvlan.apply import engine
    from virtvlan.virt import adapter as virt

    flags = _flags(args)
    _check_vlan_usage(args)
    mac = _mac_arg(args, args.mac) if args.mac is not None else None
    config = _config(args, "attach %s" % args.domain)
    with virt.connect(args.connect) as conn:
        guest = conn.guest(args.domain)
        defs = _definitions(guest, flags)
        domains = [_existing(d, guest.name) for d in defs]
        taken = [n.mac for dom in domains for n in dom.nics]
        mac = mac or _new_mac(taken)
        who = "domain %s, interface %s" % (guest.name, mac)
        if mac in taken:
            raise InputError("%s: the domain already has an interface with this MAC; tag it with "
                             "'virt-vlan set %s --mac %s', or pick another --mac"
                             % (who, guest.name, mac))
        spec = _spec(args, mac, who)
        uplink, bridge = nics.target_bridge(spec, config, who)
        live_flag = any(d.live for d in defs)
        tap = nics.attach_tap(mac) if live_flag else None
        iface = nics.new_interface(mac, bridge, args.model, tap)
        writes = []
        for definition, domain in zip(defs, domains):
            specs = _with_spec(domain.specs, spec)
            new_xml = nics.with_specs(definition.xml, specs, extra_interface=iface)
            _validate(new_xml, config, definition.live, new_tap=tap)
            writes.append((definition, specs))
        live = [d for d in defs if d.live]
        why = "attach %s" % who
        if live:
            # Build the bridge (and reserve it) first: libvirt runs no qemu
            # hook on hot-plug and attaches the new tap to <source bridge>
            # itself, which must exist by then.
            _, wanted = _build_live(config, nics.with_specs(live[0].xml, writes[-1][1],
                                                            extra_interface=iface), why)
            # libvirt attaches the tap straight to its VLAN bridge and the
            # guest's CPUs are running: its filter goes in first, under the
            # tap's name (nftables matches by name), so no frame of the new
            # NIC passes unfiltered (docs/port-security.md).
            try:
                for want in wanted:
                    if want.port == tap:
                        engine.prefilter(want, config, why)
            except VirtVlanError:
                _unreserve_to(domains[-1], config, why)
                raise
        try:
            guest.attach_device(iface, sum(_flag(d) for d in defs))
        except VirtVlanError:
            if live:
                _unreserve_to(domains[-1], config, why)
            raise
        # The metadata goes in after the attach: until then it would name a
        # MAC the domain does not have, which the hook refuses (a libvirtd
        # restart in between runs the reconnect hook, and libvirt kills a
        # guest whose reconnect hook fails). Until it is written the new NIC
        # is untagged, already on its bridge.
        for definition, specs in writes:
            guest.set_metadata(nics.render_specs(specs), _flag(definition))
        if live:
            # Program the new tap (MTU, trunk VLANs) as the start hook would.
            domain = parse_domain(guest.xml())
            engine.wire(wants(domain, config), config, why=why, reserve_key=_key(domain))
    print("%s: attached, %s VLAN %s on uplink %s, bridge %s (%s)"
          % (who, spec.mode, format_vlan_list(spec.vlans), uplink, bridge,
             " and ".join(d.what for d in defs)))
    return 0


def _wait_gone(guest, mac: str, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        if nics.interface_xml(guest.xml(), mac) is None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def cmd_detach(args: argparse.Namespace) -> int:
    from virtvlan.virt import adapter as virt

    flags = _flags(args)
    mac = _mac_arg(args, args.mac)
    with virt.connect(args.connect) as conn:
        guest = conn.guest(args.domain)
        defs = _definitions(guest, flags)
        who = "domain %s, interface %s" % (guest.name, mac)
        config = _config(args, "detach %s" % who) if any(d.live for d in defs) else None
        pending = False
        for definition in defs:
            iface = nics.interface_xml(definition.xml, mac)
            if iface is None:
                raise InputError("%s: the %s definition has no interface with this MAC; see "
                                 "'virsh domiflist %s'" % (who, definition.what, guest.name))
        for definition in defs:
            domain = _existing(definition, guest.name)
            specs = [s for s in domain.specs if s.mac != mac]
            before = guest.metadata(_flag(definition))
            # Metadata first: a NIC without an entry is one the hook leaves
            # alone, while an entry without its NIC is one it refuses.
            if len(specs) != len(domain.specs):
                guest.set_metadata(nics.render_specs(specs) if specs else None,
                                   _flag(definition))
            try:
                guest.detach_device(nics.interface_xml(definition.xml, mac) or b"",
                                    _flag(definition))
            except VirtVlanError:
                guest.set_metadata(before, _flag(definition))
                raise
            if not definition.live:
                continue
            assert config is not None
            # libvirt returns once it has asked; the guest releases the
            # device (and qemu the tap) when it acknowledges the unplug.
            gone = _wait_gone(guest, mac, args.wait)
            remaining = parse_domain(nics.with_specs(guest.xml(), specs))
            _unreserve_to(remaining, config, "detach %s" % who)
            if not gone:
                pending = True
                log.warning("%s: the guest has not released the NIC within %.0fs (it must "
                            "acknowledge the unplug); it stays on its bridge, untagged, until it "
                            "does, and virt-vlan cleans up its bridge after that",
                            who, args.wait)
    print("%s: %s (%s)" % (who, "detach requested" if pending else "detached",
                           " and ".join(d.what for d in defs)))
    return 0


# --- registration ---------------------------------------------------------------------

def connect_option(parser: argparse.ArgumentParser) -> None:
    """-c/--connect on a subcommand too (`virt-vlan show -c URI vm1`).

    SUPPRESS as default: an unset subcommand option must not overwrite the
    value the main parser's -c already stored under the same dest.
    """
    parser.add_argument("-c", "--connect", metavar="URI", default=argparse.SUPPRESS,
                        help="libvirt URI, as for virsh -c")


def _affect(parser: argparse.ArgumentParser, current: bool = True) -> None:
    parser.add_argument("--live", action="store_true", help="the running guest (and its host "
                        "wiring, now)")
    parser.add_argument("--config", dest="affect_config", action="store_true",
                        help="the persistent definition (next start)")
    if current:
        parser.add_argument("--current", action="store_true", help="the running guest if it "
                            "runs, else the persistent definition (the default)")


def _vlan_options(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--access", metavar="V", help="the guest sees VLAN V untagged")
    mode.add_argument("--trunk", metavar="LIST", help="the guest sees these VLANs tagged "
                      "(5,7,100-110)")
    parser.add_argument("--native", metavar="V", help="with --trunk: the VLAN the guest sends "
                        "and receives untagged")
    parser.add_argument("--uplink", metavar="U", help="uplink name from the host config "
                        "(default: its default uplink)")
    # Port security (docs/port-security.md); `set` keeps the NIC's current
    # ones when none of these is given.
    security.add_arguments(parser)


def add_commands(sub: "argparse._SubParsersAction") -> None:
    """Register the domain commands on the main parser's subcommands."""
    parsers: List[Tuple[argparse.ArgumentParser, Callable[[argparse.Namespace], int]]] = []

    p = sub.add_parser("set", help="tag a guest NIC with a VLAN (access or trunk)")
    p.add_argument("domain", metavar="DOMAIN", help="name, UUID or ID")
    nic = p.add_mutually_exclusive_group(required=True)
    nic.add_argument("--mac", metavar="MAC", help="the NIC's MAC address")
    nic.add_argument("--iface", metavar="N", type=int,
                     help="the N-th <interface> of the domain, from 0 (virsh domiflist order)")
    _vlan_options(p)
    _affect(p)
    parsers.append((p, cmd_set))

    p = sub.add_parser("clear", help="remove a NIC's VLAN tag (or all of the domain's)")
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("--mac", metavar="MAC", help="only this NIC (default: every NIC)")
    _affect(p)
    parsers.append((p, cmd_clear))

    p = sub.add_parser("show", help="a domain's NICs, their VLANs and whether the host matches")
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    parsers.append((p, cmd_show))

    p = sub.add_parser("list", help="every domain with virt-vlan metadata, a line per NIC")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    parsers.append((p, cmd_list))

    p = sub.add_parser("attach", help="hot-plug a NIC already on its VLAN's bridge")
    p.add_argument("domain", metavar="DOMAIN")
    _vlan_options(p)
    p.add_argument("--mac", metavar="MAC", help="default: a random 52:54:00:xx:xx:xx")
    p.add_argument("--model", metavar="M", default="virtio", help="NIC model (default: virtio)")
    _affect(p, current=False)
    parsers.append((p, cmd_attach))

    p = sub.add_parser("detach", help="unplug a NIC and clean up its VLAN")
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("--mac", metavar="MAC", required=True)
    p.add_argument("--wait", metavar="SEC", type=float, default=DETACH_WAIT,
                   help="with --live: how long to wait for the guest to release the NIC "
                   "(default: %(default)s)")
    _affect(p, current=False)
    parsers.append((p, cmd_detach))

    for parser, func in parsers:
        connect_option(parser)
        parser.set_defaults(func=func, usage=parser.error)
