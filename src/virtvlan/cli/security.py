"""How `virt-vlan show` describes each tagged NIC's port security
(docs/port-security.md): what the metadata and the host config ask for
and, for a running guest, whether its tap has its filter."""

import argparse
from typing import Dict, List, Optional, Tuple

from virtvlan.errors import InputError
from virtvlan.parse.config import Config
from virtvlan.parse.metadata import Domain, VlanSpec, protection


def add_arguments(parser: argparse.ArgumentParser, lead: str = "") -> None:
    """The port-security options of `set`, `attach` and `plug`; `lead`
    starts each help text (plug: "with --mac: ")."""
    parser.add_argument("--allow", metavar="LIST", help=lead + "port-security exceptions: "
                        "mac-spoof,router,stp")
    parser.add_argument("--guard", choices=("router",), help=lead + "trunk NIC: drop router "
                        "advertisements and DHCP server replies")
    parser.add_argument("--isolated", action="store_true", default=None,
                        help=lead + "isolate the NIC from the bridge's other isolated ports")
    parser.add_argument("--ips", metavar="LIST", help=lead + "the guest's own addresses (ARP "
                        "and neighbour advertisements for others are dropped)")


def describe(domain: Domain, config: Optional[Config],
             filters: Optional[Dict[str, Tuple[str, ...]]] = None) -> List[Dict[str, object]]:
    """One entry per tagged NIC: mac, state ("on", "off", "refused", or
    "no config"), its exceptions and options, and with `filters` (port ->
    rule specs of a running guest's taps) whether its tap is filtered."""
    out = []
    for spec in domain.specs:
        out.append(_one(domain, spec, config, filters))
    return out


def _one(domain: Domain, spec: VlanSpec, config: Optional[Config],
         filters: Optional[Dict[str, Tuple[str, ...]]]) -> Dict[str, object]:
    who = "domain %s, interface %s" % (domain.name, spec.mac)
    entry: Dict[str, object] = {"mac": spec.mac, "allow": sorted(spec.security.allow),
                                "guard": "router" if spec.security.guard_router else None,
                                "isolated": spec.security.isolated,
                                "ips": list(spec.security.ips)}
    if config is None:
        entry["state"] = "no config"
        return entry
    try:
        uplink = config.uplink(spec.uplink, who)
        wanted = protection(spec.security, spec.mac, uplink, who, config.path)
    except InputError as err:
        entry["state"], entry["error"] = "refused", str(err)
        return entry
    entry["state"] = "on" if wanted is not None else "off"
    nic = domain.nic(spec.mac)
    if wanted is not None and filters is not None and nic is not None and nic.target:
        entry["tap"] = nic.target
        entry["filtered"] = bool(filters.get(nic.target))
    return entry


def line(entry: Dict[str, object]) -> str:
    """`entry` (from describe) as one line of `show`."""
    state = str(entry["state"])
    words = []
    if entry.get("allow"):
        words.append("allow %s" % ",".join(entry["allow"]))  # type: ignore[arg-type]
    if entry.get("guard"):
        words.append("guard router")
    if entry.get("isolated"):
        words.append("isolated")
    if entry.get("ips"):
        words.append("ips %s" % ",".join(entry["ips"]))  # type: ignore[arg-type]
    if state == "off":
        text = "off (port-security = no on its uplink)"
    elif state == "refused":
        text = "refused: %s" % entry.get("error")
    elif state == "no config":
        text = "unknown (no host config)"
    else:
        text = "on"
        if entry.get("filtered") is False:
            text += ", but tap %s has no filter yet (next start, re-tag or plug)" % entry["tap"]
    if words and state != "refused":
        text += "; " + "; ".join(words)
    return "%s port security: %s" % (entry["mac"], text)
