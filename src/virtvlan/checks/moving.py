"""Guests that move between hosts: what this host would do with an incoming one.

libvirt's `migrate` and `restore` hooks hand the destination the domain XML
the guest ran with elsewhere; each tagged NIC's `<source bridge>` names the
bridge it had *there*. `incoming()` validates the guest against this host's
config and snapshot (uplink present, VLANs allowed, no mixing: the planner's
own refusals; MTU) and returns the XML with every tagged bridge NIC's
`<source bridge>` naming this host's bridge for it, or None when nothing
changes (libvirt reads empty hook output as "unchanged"). `check-domain`
and `check` reuse `bridge_moves()`.

Pure: no I/O; the caller reads the snapshot and the config. The rewrite
changes only the bridge attribute values and keeps every other byte of
the document (see `rewrite_bridges`).
"""

import re
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

from virtvlan.errors import InputError, Refused
from virtvlan.model import Snapshot, Want
from virtvlan.parse.config import Config
from virtvlan.parse.metadata import Domain, wants
from virtvlan.parse.xml import parse_xml
from virtvlan.plan.planner import plan
from virtvlan.plan.wiring import bridge_for, uplink_bridge


@dataclass(frozen=True)
class BridgeMove:
    """One tagged NIC whose `<source bridge>` this host would rewrite."""

    mac: str
    old: Optional[str]  # None: the interface has no <source bridge> yet
    new: str
    who: str  # "domain vm1, interface 52:54:..."


def bridge_moves(domain: Domain, config: Config) -> Tuple[BridgeMove, ...]:
    """The `<source bridge>` rewrites this host's config asks for, in NIC order.

    Only `type='bridge'` interfaces are rewritten: a `type='network'` NIC
    names a libvirt network, whose bridge that network's own definition sets.
    Raises InputError as `wants` does (unknown uplink, VLAN not allowed).
    """
    out = []
    for want, spec in zip(wants(domain, config), domain.specs):
        nic = domain.nic(spec.mac)
        if nic is None or nic.type != "bridge":
            continue
        new = bridge_for(want, config)
        if nic.source_bridge != new:
            out.append(BridgeMove(spec.mac, nic.source_bridge, new, want.who))
    return tuple(out)


def _nic_mtus(xml: bytes) -> Dict[str, int]:
    """{mac: <mtu size>} of the domain's interfaces that set one."""
    from virtvlan.parse.metadata import parse_mac

    root = parse_xml(xml, "domain XML")
    dom = root if root.tag == "domain" else root.find(".//domain")
    out: Dict[str, int] = {}
    if dom is None:
        return out
    for iface in dom.iterfind("devices/interface"):
        mac_el, mtu_el = iface.find("mac"), iface.find("mtu")
        mac = parse_mac(mac_el.get("address", "")) if mac_el is not None else None
        size = mtu_el.get("size", "") if mtu_el is not None else ""
        if mac is not None and size.isdigit():
            out[mac] = int(size)
    return out


def bridge_mtu(want: Want, config: Config, snap: Snapshot) -> Optional[int]:
    """The MTU this host would give `want`'s bridge; None when unknown."""
    uplink = config.uplink(want.uplink, want.who)
    if uplink.mtu is not None:
        return uplink.mtu
    bridge = snap.get(uplink_bridge(uplink, want.mode, want.vlans))
    if bridge is not None:
        return bridge.mtu
    device = snap.get(uplink.device)
    return device.mtu if device is not None else None


def incoming(domain: Domain, xml: bytes, config: Config, snap: Snapshot) -> Optional[bytes]:
    """The XML an incoming tagged guest must run with on this host; None: unchanged.

    Raises InputError or Refused (one line naming the NIC, the value and the
    fix) when this host cannot serve the guest: the hook exits 1 and libvirt
    cancels the migration or restore before anything is built here.
    """
    wanted = wants(domain, config)
    # The taps do not exist yet: plan bridges and feeds only, as `prepare` will.
    plan([replace(w, port=None) for w in wanted], config, snap)
    mtus = _nic_mtus(xml)
    for want, spec in zip(wanted, domain.specs):
        mtu = mtus.get(spec.mac)
        have = bridge_mtu(want, config, snap) if mtu is not None else None
        if mtu is not None and have is not None and have < mtu:
            uplink = config.uplink(want.uplink, want.who)
            raise Refused("%s: the guest's <mtu size='%d'/> is larger than MTU %d of bridge %s "
                          "on this host; set mtu = %d in [uplink %s] of %s (and on the switch), "
                          "or lower the guest's MTU" % (
                              want.who, mtu, have, uplink_bridge(uplink, want.mode, want.vlans), mtu,
                              uplink.name, config.path))
    moves = bridge_moves(domain, config)
    if not moves:
        return None
    return rewrite_bridges(xml, {m.mac: m.new for m in moves})


# --- the byte-preserving rewrite ----------------------------------------------------------

# One markup token of an XML document: a comment, CDATA, a processing
# instruction or declaration, or a start/end/empty tag with its attributes.
_TOKEN = re.compile(
    rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<!.*?>"
    rb"|<(/?)([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*(/?)>",
    re.S)
_ATTR = re.compile(rb"([A-Za-z_][\w.:-]*)\s*=\s*(\"([^\"]*)\"|'([^']*)')")


def _attr_span(attrs: bytes, offset: int, name: bytes) -> Optional[Tuple[int, int, bytes]]:
    """(start, end, value) of attribute `name`'s value inside `attrs`, whose
    first byte is at `offset` of the document."""
    for match in _ATTR.finditer(attrs):
        if match.group(1) == name:
            group = 3 if match.group(3) is not None else 4
            return offset + match.start(group), offset + match.end(group), match.group(group)
    return None


def _splice(xml: bytes, bridges: Dict[str, str]) -> Optional[bytes]:
    """`xml` with the bridge attribute of `<source>` in each listed NIC
    replaced; None when the document does not tokenize as expected (the
    caller then re-serializes instead)."""
    from virtvlan.parse.metadata import parse_mac

    stack: List[bytes] = []
    edits: List[Tuple[int, int, bytes]] = []
    mac: Optional[str] = None
    source: Optional[Tuple[int, int, bytes]] = None
    for token in _TOKEN.finditer(xml):
        closing, name, attrs, empty = token.group(1), token.group(2), token.group(3), token.group(4)
        if name is None:
            continue  # comment, CDATA, PI, declaration
        if closing:
            if not stack or stack[-1] != name:
                return None
            if stack[-3:] == [b"domain", b"devices", b"interface"]:
                if mac in bridges and source is not None:
                    edits.append((source[0], source[1], bridges[mac].encode()))
                mac, source = None, None
            stack.pop()
            continue
        path = stack[-3:]
        if path == [b"domain", b"devices", b"interface"] and name in (b"mac", b"source"):
            span = _attr_span(attrs, token.start(3), b"address" if name == b"mac" else b"bridge")
            if span is not None and name == b"mac":
                mac = parse_mac(span[2].decode("latin-1"))
            elif span is not None:
                source = span
        if stack[-2:] == [b"domain", b"devices"] and name == b"interface":
            mac, source = None, None
        if not empty:
            stack.append(name)
    if stack:
        return None
    out = xml
    for start, end, value in sorted(edits, reverse=True):
        out = out[:start] + value + out[end:]
    return out


def _canonical(root) -> bytes:  # type: ignore[no-untyped-def]
    from lxml import etree

    return etree.tostring(root, method="c14n")


def rewrite_bridges(xml: bytes, bridges: Dict[str, str]) -> bytes:
    """`xml` with `<source bridge>` of the interfaces whose MAC is in
    `bridges` set to that bridge.

    Every other byte is kept: the attribute values are spliced in place, and
    the result is checked against the same change made on the parsed tree.
    Should the splice not match (markup this scanner does not follow), the
    parsed and edited tree is serialized instead: the same document for
    libvirt, in other bytes. An interface without <source> gets one.
    """
    from lxml import etree
    from virtvlan.parse.metadata import parse_mac

    root = parse_xml(xml, "domain XML")
    dom = root if root.tag == "domain" else root.find(".//domain")
    if dom is None:
        raise InputError("hook input: no <domain> element in the XML on stdin; libvirt "
                         "passes the domain XML there")
    added = False
    for iface in dom.iterfind("devices/interface"):
        mac_el = iface.find("mac")
        mac = parse_mac(mac_el.get("address", "")) if mac_el is not None else None
        if mac not in bridges:
            continue
        source = iface.find("source")
        if source is None:
            source = etree.SubElement(iface, "source")
            added = True
        elif source.get("bridge") is None:
            added = True
        source.set("bridge", bridges[mac])
    spliced = None if added else _splice(xml, bridges)
    if spliced is not None:
        try:
            if _canonical(parse_xml(spliced, "domain XML")) == _canonical(root):
                return spliced
        except InputError:
            pass
    head = b'<?xml version="1.0"?>\n' if xml.lstrip().startswith(b"<?xml") else b""
    return head + etree.tostring(root.getroottree().getroot()) + (
        b"\n" if xml.endswith(b"\n") else b"")


def describe_moves(moves: Sequence[BridgeMove], where: str = "this host") -> List[str]:
    """One line per rewrite, as check-domain prints them; `where` names the host."""
    return ["%s: <source bridge='%s'> becomes '%s' on %s" % (m.who, m.old or "", m.new, where)
            for m in moves]
