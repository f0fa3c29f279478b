"""The agent's share of port security on virt-vlan networks: a running
domain's NICs that are ports of such networks, added to what the agent
keeps wired for it (docs/port-security.md).

The qemu `start` hook protects the ports a guest starts with; a NIC
hot-plugged onto such a network (`virsh attach-interface --type network`)
reaches no hook that sees its tap, so the agent protects it on the
device-added event, as it wires hot-plugged tagged NICs. Its reconcile and
heal then keep the filter, from the same cache.
"""

import logging
from dataclasses import replace
from typing import Optional

from virtvlan.agent.reconcile import Desired
from virtvlan.errors import VirtVlanError
from virtvlan.host import netports, state
from virtvlan.parse.config import Config

log = logging.getLogger(__name__)


def with_network_ports(desired: Optional[Desired], xml: bytes,
                       config: Config) -> Optional[Desired]:
    """`desired` (reconcile.domain_desired of the live XML `xml`) with the
    wants of the domain's ports of recorded virt-vlan networks
    (metadata.network_port_wants, the qemu hook's rule) added; a Desired of
    its own for an untagged domain that has such ports. Unchanged when it
    has none (one substring test, and one listdir when it has network NICs).
    Never raises a VirtVlanError: a refusal becomes `error`."""
    if (desired is not None and desired.error) or b"<source network='" not in xml:
        return desired
    records = netports.recorded()
    if not records:
        return desired
    from virtvlan.parse.metadata import network_port_wants, parse_domain, parse_network

    try:
        domain = parse_domain(xml, strict=False)
    except VirtVlanError:
        return desired  # domain_desired reported it (a tagged domain), or it is not ours
    base = desired or Desired(key=state.domain_key(domain.uuid, domain.name),
                              who="domain %s" % domain.name)
    try:
        networks = {name: parse_network(text) for name, text in records.items()}
        found = network_port_wants(domain, networks, config)
    except VirtVlanError as err:
        return replace(base, error=str(err))
    if not found:
        return desired
    return replace(base, wants=base.wants + found,
                   macs=base.macs + tuple(w.protection.mac for w in found if w.protection))
