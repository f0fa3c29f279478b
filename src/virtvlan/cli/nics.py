"""Pure helpers of the domain commands: metadata elements, device XML, the
`show`/`list` table.

No libvirt and no I/O here: the commands (domains.py) fetch documents and a
host snapshot, these functions turn them into what is written or shown. A
NIC's status (is it wired as it should be) is checks/wiring.py's.
"""

from typing import Dict, Optional, Sequence, Tuple

from virtvlan.checks.wiring import NicStatus
from virtvlan.model import ACCESS
from virtvlan.parse.config import Config
from virtvlan.parse.metadata import Security, VlanSpec
from virtvlan.parse.vlans import format_vlan_list
from virtvlan.parse.xml import NS, NSMAP, parse_xml
from virtvlan.plan.wiring import uplink_bridge


def _etree():  # type: ignore[no-untyped-def]
    from lxml import etree

    return etree


def spec_attrs(spec: VlanSpec) -> Dict[str, str]:
    """The attributes of one <vv:interface>, in the README's order."""
    attrs = {"mac": spec.mac, "mode": spec.mode}
    if spec.mode == ACCESS:
        attrs["vlan"] = str(spec.vlans[0])
    else:
        attrs["vlans"] = format_vlan_list(spec.vlans)
        if spec.native is not None:
            attrs["native"] = str(spec.native)
    if spec.uplink is not None:
        attrs["uplink"] = spec.uplink
    attrs.update(security_attrs(spec.security))
    return attrs


def security_attrs(security: Security) -> Dict[str, str]:
    """The port-security attributes (docs/port-security.md) that differ
    from the defaults, as the metadata writes them."""
    attrs = {}
    if security.allow:
        attrs["allow"] = ",".join(sorted(security.allow))
    if security.guard_router:
        attrs["guard"] = "router"
    if security.isolated:
        attrs["isolated"] = "yes"
    if security.ips:
        attrs["ips"] = ",".join(security.ips)
    return attrs


def render_specs(specs: Sequence[VlanSpec], namespaced: bool = False) -> bytes:
    """Our metadata element for `specs`.

    Unnamespaced (<vlan><interface/></vlan>) is what virDomainSetMetadata
    takes: libvirt puts the subtree into the namespace itself and refuses an
    element that declares it already. Namespaced is what the domain XML
    holds (and what parse_domain reads).
    """
    etree = _etree()
    ns = NS if namespaced else ""
    root = (etree.Element(ns + "vlan", nsmap=NSMAP) if namespaced
            else etree.Element("vlan"))
    for spec in specs:
        etree.SubElement(root, ns + "interface", spec_attrs(spec))
    return etree.tostring(root)


def _tree(xml: bytes, what: str):  # type: ignore[no-untyped-def]
    # Blank text dropped: elements we add then serialize without stray
    # indentation (parse_domain validates what we produce).
    return parse_xml(xml, what, strip_blank=True)


def with_specs(domain_xml: bytes, specs: Sequence[VlanSpec],
               extra_interface: Optional[bytes] = None) -> bytes:
    """`domain_xml` as it reads once our metadata is `specs` (and, with
    `extra_interface`, once that <interface> is attached): the document the
    hook will see, for validation. Nothing is written anywhere."""
    etree = _etree()
    root = _tree(domain_xml, "domain XML")
    meta = root.find("metadata")
    for old in (meta.findall(NS + "vlan") if meta is not None else []):
        meta.remove(old)
    if specs:
        if meta is None:
            meta = etree.Element("metadata")
            name = root.find("uuid") if root.find("uuid") is not None else root.find("name")
            (name if name is not None else root[0]).addnext(meta)
        meta.append(_tree(render_specs(specs, namespaced=True), "virt-vlan metadata"))
    if extra_interface is not None:
        devices = root.find("devices")
        if devices is None:
            devices = etree.SubElement(root, "devices")
        devices.append(_tree(extra_interface, "interface XML"))
    return etree.tostring(root)


def interface_xml(domain_xml: bytes, mac: str) -> Optional[bytes]:
    """The <interface> element of `mac` in `domain_xml`, as libvirt wrote it."""
    etree = _etree()
    for iface in _tree(domain_xml, "domain XML").iterfind("devices/interface"):
        el = iface.find("mac")
        if el is not None and el.get("address", "").lower() == mac:
            return etree.tostring(iface)
    return None


def with_source_bridge(iface_xml: bytes, bridge: str) -> bytes:
    """The same <interface> with <source bridge='bridge'> (type bridge only)."""
    etree = _etree()
    iface = _tree(iface_xml, "interface XML")
    source = iface.find("source")
    if source is None:
        source = etree.Element("source")
        iface.insert(1, source)
    source.set("bridge", bridge)
    return etree.tostring(iface)


def new_interface(mac: str, bridge: str, model: str, tap: Optional[str] = None) -> bytes:
    """<interface type='bridge'> for a hot-plug: already on its bridge; with
    `tap`, libvirt names the tap so (<target dev>)."""
    etree = _etree()
    iface = etree.Element("interface", type="bridge")
    etree.SubElement(iface, "mac", address=mac)
    etree.SubElement(iface, "source", bridge=bridge)
    if tap is not None:
        etree.SubElement(iface, "target", dev=tap)
    etree.SubElement(iface, "model", type=model)
    return etree.tostring(iface)


def attach_tap(mac: str) -> str:
    """The tap name `virt-vlan attach --live` gives libvirt for a new NIC,
    so that its port filter can be in place before the tap exists: "vv" and
    the MAC's 12 hex digits (14 characters; IFNAMSIZ allows 15). libvirt
    keeps a <target dev> that does not start with its own "vnet" prefix."""
    return "vv" + mac.replace(":", "").lower()


def target_bridge(spec: VlanSpec, config: Config, who: str) -> Tuple[str, str]:
    """(uplink name, the bridge the NIC's tap joins) per the host config."""
    uplink = config.uplink(spec.uplink, who)
    return uplink.name, uplink_bridge(uplink, spec.mode, spec.vlans)


# --- output -----------------------------------------------------------------------

COLUMNS = ("DOMAIN", "MAC", "TAP", "MODE", "VLANS", "UPLINK", "BRIDGE", "SOURCE", "STATE")


def row(status: NicStatus) -> Tuple[str, ...]:
    vlans = format_vlan_list(status.vlans) if status.vlans else "-"
    if status.native is not None:
        vlans += " native %d" % status.native
    return (status.domain, status.mac, status.tap or "-", status.mode or "-", vlans,
            status.uplink or "-", status.bridge or "-", status.source or "-", status.state_text)


def table(rows: Sequence[Sequence[str]], header: Sequence[str] = COLUMNS) -> str:
    """Columns aligned on the widest cell; the last column is not padded."""
    lines = [tuple(header)] + [tuple(r) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(widths[i]) if i < len(header) - 1 else cell
                               for i, cell in enumerate(line)).rstrip()
                     for line in lines)

