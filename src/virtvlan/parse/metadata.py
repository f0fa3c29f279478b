"""Domain and network XML -> frozen specs (the metadata contract in README).

    <metadata>
      <vv:vlan xmlns:vv="urn:virt-vlan:1">
        <vv:interface mac="52:54:00:11:22:33" mode="access" vlan="5"/>
        <vv:interface mac="52:54:00:11:22:34" mode="trunk" vlans="5,7,100-110" uplink="eth1"/>
      </vv:vlan>
    </metadata>

Parsing is hardened (parse/xml.py: no DTD, no entities, no network, size
cap) because the XML comes from whoever may define domains. `is_tagged` answers cheaply,
without lxml, whether a document mentions our namespace at all.
"""

import ipaddress
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Mapping, Optional, Tuple

from virtvlan import NAMESPACE, PREFIX
from virtvlan.parse.config import Config, Uplink, parse_exceptions
from virtvlan.errors import InputError, cut
from virtvlan.model import ACCESS, MODES, TRUNK, Protection, Want
from virtvlan.parse import xmlguard
from virtvlan.parse.vlans import VlanSyntax, format_vlan_list, parse_vlan, parse_vlan_list
from virtvlan.parse.xml import MAX_XML_BYTES, NS, parse_xml, shown

# virt-vlan entries of one domain: far more than the NICs a guest has, and
# with VLAN lists of at most 4094 VLANs it bounds what one hook call plans
# (at most 256 x 4094 port VLANs). Parsing is linear in the document.
MAX_ENTRIES = 256
# Port security (docs/port-security.md), on <vv:interface>.
SECURITY_ATTRS = {"allow", "guard", "isolated", "ips"}
INTERFACE_ATTRS = {ACCESS: {"mac", "mode", "vlan", "uplink"} | SECURITY_ATTRS,
                   TRUNK: {"mac", "mode", "vlans", "native", "uplink"} | SECURITY_ATTRS}
# A network's port security applies to each of its ports: libvirt attaches
# them itself, and virt-vlan adds their filters at the guest's `start` hook
# (the taps exist then, the CPUs do not run yet; see network_port_wants).
NETWORK_ATTRS = {"vlan", "uplink"} | SECURITY_ATTRS


@dataclass(frozen=True)
class Nic:
    """A libvirt <interface> of the domain, as far as we need it."""

    mac: str  # lower case
    type: str  # "bridge", "network", ...
    target: Optional[str] = None  # the tap, once libvirt created it
    source_bridge: Optional[str] = None
    source_network: Optional[str] = None
    # The <interface> carries libvirt's own <vlan> element (libvirt 11+
    # programs bridge VLANs on the tap itself from it).
    libvirt_vlan: bool = False


@dataclass(frozen=True)
class Security:
    """The port-security attributes of a <vv:interface> or <vv:network>."""

    allow: FrozenSet[str] = frozenset()  # from config.EXCEPTIONS
    guard_router: bool = False  # guard="router"
    isolated: bool = False  # isolated="yes"
    ips: Tuple[str, ...] = ()  # ips="10.0.5.10,2001:db8::10", normalised


@dataclass(frozen=True)
class VlanSpec:
    """One <vv:interface>: what the guest behind `mac` should see."""

    mac: str  # lower case
    mode: str  # ACCESS or TRUNK
    vlans: Tuple[int, ...]  # one VLAN for access
    uplink: Optional[str] = None  # None: the config's default uplink
    native: Optional[int] = None  # trunk only: the VLAN the guest sees untagged
    security: Security = Security()


@dataclass(frozen=True)
class Domain:
    name: str
    uuid: str
    nics: Tuple[Nic, ...] = ()
    specs: Tuple[VlanSpec, ...] = ()  # empty: an untagged domain
    # Non-strict parsing only: entries for MACs the domain has no <interface>
    # for yet (metadata set before `virsh attach-interface`); ignored until
    # the NIC exists.
    pending: Tuple[VlanSpec, ...] = ()
    _by_mac: Dict[str, Nic] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_mac: Dict[str, Nic] = {}
        for nic in self.nics:
            by_mac.setdefault(nic.mac, nic)  # the first, as a scan would find
        object.__setattr__(self, "_by_mac", by_mac)

    @property
    def tagged(self) -> bool:
        return bool(self.specs)

    def nic(self, mac: str) -> Optional[Nic]:
        return self._by_mac.get(mac)


@dataclass(frozen=True)
class Network:
    """A libvirt <network> with <forward mode='bridge'/> and our metadata."""

    name: str
    bridge: Optional[str]
    forward: Optional[str]
    vlan: Optional[int] = None  # None: untagged network, not ours
    uplink: Optional[str] = None
    security: Security = Security()  # for every port of the network


def is_tagged(xml: bytes) -> bool:
    """True when the document may carry virt-vlan metadata.

    A plain substring test: the hook calls it before importing lxml so that
    untagged guests cost (almost) nothing.
    """
    return NAMESPACE.encode() in xml


def _parse(xml: bytes, what: str):  # type: ignore[no-untyped-def]
    """The root element; None for a document that trips a guard of
    parse_xml (size, DOCTYPE/ENTITY) but cannot carry virt-vlan metadata:
    an untagged guest is never refused, whatever its comments say."""
    if len(xml) > MAX_XML_BYTES or xmlguard.declares(xml):
        # Without a parser (xmlguard.py): is the document ours at all?
        text = xmlguard.markup(xml)
        tripped = len(xml) > MAX_XML_BYTES or xmlguard.declares(text)
        if tripped and not xmlguard.may_be_tagged(text):
            return None
    return parse_xml(xml, what)


def _q(value: Optional[str]) -> str:
    """repr() of an input value, cut short: errors quote hostile input."""
    text = repr(value)
    return text if len(text) <= 40 else text[:36] + "...'"


def _text(root, path: str) -> Optional[str]:  # type: ignore[no-untyped-def]
    found = root.find(path)
    return found.text.strip() if found is not None and found.text else None


def parse_mac(value: str) -> Optional[str]:
    """'52:54:00:AA:bb:cc' -> '52:54:00:aa:bb:cc'; None when it is not a MAC."""
    parts = value.strip().lower().split(":")
    if len(parts) == 6 and all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                               for p in parts):
        return ":".join(parts)
    return None


def parse_domain(xml: bytes, strict: bool = True) -> Domain:
    """Parse a libvirt domain document (or one with a <domain> inside).

    Raises InputError, one line naming the domain, the MAC and the bad value.
    An entry whose MAC names no <interface> of the domain is an error when
    `strict` (check-domain); otherwise it goes to `Domain.pending` (hooks and
    the agent: it is how a hot-plug is prepared, and the entry applies once
    the NIC is attached).
    """
    root = _parse(xml, "domain XML")
    if root is None:
        return Domain(name="?", uuid="")
    dom = root if root.tag == "domain" else root.find(".//domain")
    if dom is None:
        raise InputError("hook input: no <domain> element in the XML on stdin; libvirt "
                         "passes the domain XML there")
    name = _text(dom, "name") or "?"
    uuid = _text(dom, "uuid") or ""
    nics = []
    for iface in dom.iterfind("devices/interface"):
        mac_el = iface.find("mac")
        mac = parse_mac(mac_el.get("address", "")) if mac_el is not None else None
        if mac is None:
            continue  # libvirt always assigns one; nothing of ours can match
        target, source = iface.find("target"), iface.find("source")
        nics.append(Nic(mac=mac, type=iface.get("type", ""),
                        target=target.get("dev") if target is not None else None,
                        source_bridge=source.get("bridge") if source is not None else None,
                        source_network=source.get("network") if source is not None else None,
                        libvirt_vlan=iface.find("vlan") is not None))
    specs = []
    for el in dom.iterfind("metadata/*"):
        if isinstance(el.tag, str) and el.tag.startswith(NS) and el.tag != NS + "vlan":
            raise InputError("domain %s: <metadata> has <%s> in the virt-vlan namespace; the "
                             "element is <%s xmlns:%s='%s'>" % (name, shown(el.tag),
                                                                shown(NS + "vlan"), PREFIX,
                                                                NAMESPACE))
    containers = dom.findall("metadata/%svlan" % NS)
    if len(containers) > 1:
        raise InputError("domain %s: <metadata> has %d <vlan xmlns='%s'> elements; merge them "
                         "into one" % (name, len(containers), NAMESPACE))
    seen: Dict[str, int] = {}
    pending = []
    by_mac: Dict[str, Nic] = {}
    count: Dict[str, int] = {}
    for nic in nics:
        by_mac.setdefault(nic.mac, nic)
        count[nic.mac] = count.get(nic.mac, 0) + 1
    for container in containers:
        if len(container) > MAX_ENTRIES:
            raise InputError("domain %s: virt-vlan metadata has %d entries, more than the %d "
                             "accepted; one <vv:interface> per NIC of the guest"
                             % (name, len(container), MAX_ENTRIES))
        for index, el in enumerate(container, start=1):
            if not isinstance(el.tag, str):
                continue
            if el.tag != NS + "interface":
                raise InputError("domain %s: unknown element <%s> in virt-vlan metadata; only "
                                 "<interface> is allowed" % (name, shown(el.tag)))
            spec = _spec(name, el, index)
            if spec.mac in seen:
                raise InputError("domain %s, interface %s: listed twice in virt-vlan metadata "
                                 "(entries %d and %d); keep one" % (name, spec.mac, seen[spec.mac],
                                                                    index))
            seen[spec.mac] = index
            if spec.mac not in by_mac and not strict:
                pending.append(spec)
                continue
            if spec.mac not in by_mac:
                have = cut(", ".join(n.mac for n in nics), 200) or "none"
                raise InputError("domain %s, interface %s: virt-vlan metadata names a MAC the "
                                 "domain has no <interface> for (its MACs: %s); fix the mac "
                                 "attribute" % (name, spec.mac, have))
            if count[spec.mac] > 1:
                # Only the first tap would be wired, the others left on
                # <source bridge>, and check-domain would say OK.
                raise InputError("domain %s, interface %s: %d <interface>s have this MAC; "
                                 "give each NIC its own <mac address>"
                                 % (name, spec.mac, count[spec.mac]))
            nic = by_mac[spec.mac]
            if nic.libvirt_vlan:
                # libvirt 11+ programs the tap's bridge VLANs from <vlan> at
                # every attach and reattach: it would undo ours and we theirs.
                raise InputError("domain %s, interface %s: the <interface> also has libvirt's "
                                 "own <vlan> element, and libvirt would program the same tap; "
                                 "remove <vlan> from the interface or its virt-vlan entry"
                                 % (name, spec.mac))
            specs.append(spec)
    return Domain(name=name, uuid=uuid, nics=tuple(nics), specs=tuple(specs),
                  pending=tuple(pending))


def _spec(domain: str, el, index: int) -> VlanSpec:  # type: ignore[no-untyped-def]
    raw_mac = el.get("mac")
    who = "domain %s, interface %s" % (domain, cut(raw_mac or "#%d" % index))
    if raw_mac is None:
        raise InputError("%s: <vv:interface> has no mac attribute; add mac='52:54:00:..' of "
                         "the guest NIC" % who)
    mac = parse_mac(raw_mac)
    if mac is None:
        raise InputError("%s: mac=%s is not a MAC address; write six hex pairs like "
                         "52:54:00:11:22:33" % (who, _q(raw_mac)))
    who = "domain %s, interface %s" % (domain, mac)
    mode = el.get("mode")
    if mode not in MODES:
        raise InputError("%s: mode=%s; use mode='access' (one untagged VLAN) or mode='trunk' "
                         "(tagged VLANs)" % (who, _q(mode)))
    for attr in el.keys():
        if attr not in INTERFACE_ATTRS[mode]:
            if attr == "vlans":
                fix = "an access interface takes one VLAN: use vlan='5', or mode='trunk'"
            elif attr == "vlan":
                fix = "a trunk interface takes a list: use vlans='5,7', or mode='access'"
            else:
                fix = "allowed: " + ", ".join(sorted(INTERFACE_ATTRS[mode]))
            raise InputError("%s: unknown attribute %s=%s for mode %s; %s"
                             % (who, attr, _q(el.get(attr)), mode, fix))
    key = "vlan" if mode == ACCESS else "vlans"
    value = el.get(key)
    if value is None:
        raise InputError("%s: mode %s needs %s='...'; add e.g. %s" % (
            who, mode, key, "vlan='5'" if mode == ACCESS else "vlans='5,7,100-110'"))
    try:
        vlans = (parse_vlan(value),) if mode == ACCESS else parse_vlan_list(value)
    except VlanSyntax as err:
        raise InputError("%s: %s=%s: %s" % (who, key, _q(value), err)) from err
    native = None
    if el.get("native") is not None:
        try:
            native = parse_vlan(el.get("native"))
        except VlanSyntax as err:
            raise InputError("%s: native=%s: %s" % (who, _q(el.get("native")), err)) from err
        if native in vlans:
            raise InputError("%s: native='%d' is also in vlans='%s'; the native VLAN is the one "
                             "the guest sees untagged, list it in native only"
                             % (who, native, value))
    uplink = el.get("uplink")
    if uplink is not None and not uplink.strip():
        raise InputError("%s: uplink='' is empty; name an uplink of the host config or "
                         "leave the attribute out" % who)
    return VlanSpec(mac=mac, mode=mode, vlans=vlans, uplink=uplink, native=native,
                    security=parse_security(el, who))


_YES = {"yes": True, "no": False}


def parse_security(el, who: str) -> Security:  # type: ignore[no-untyped-def]
    """The allow/guard/isolated/ips attributes of `el`; InputError, one
    line, for a bad value."""
    try:
        allow = parse_exceptions(el.get("allow") or "")
    except ValueError as err:
        raise InputError("%s: allow=%s: %s" % (who, _q(el.get("allow")), err)) from err
    guard = el.get("guard")
    if guard not in (None, "router"):
        raise InputError("%s: guard=%s; the only guard is guard='router' (drop router "
                         "advertisements and DHCP server replies on a trunk NIC)"
                         % (who, _q(guard)))
    isolated = el.get("isolated")
    if isolated is not None and isolated not in _YES:
        raise InputError("%s: isolated=%s; write isolated='yes' or leave it out"
                         % (who, _q(isolated)))
    ips = []
    for word in (el.get("ips") or "").split(","):
        if not word.strip():
            continue
        try:
            ips.append(str(ipaddress.ip_address(word.strip())))
        except ValueError as err:
            raise InputError("%s: ips=%s: %s is not an IP address; list the guest's own "
                             "addresses like ips='10.0.5.10,2001:db8::10'"
                             % (who, _q(el.get("ips")), _q(word.strip()))) from err
    if guard and "router" in allow:
        raise InputError("%s: guard='router' and allow='router' contradict each other; keep "
                         "one" % who)
    return Security(allow=allow, guard_router=guard == "router",
                    isolated=bool(_YES.get(isolated or "no")), ips=tuple(ips))


def protection(security: Security, mac: str, uplink: Uplink, who: str,
               config_path: str) -> Optional[Protection]:
    """The Protection of one guest port on `uplink`; None when the uplink
    has port security off. InputError when an exception asked for is not in
    the uplink's allowed-exceptions."""
    if not uplink.port_security:
        return None
    denied = sorted(security.allow - uplink.allowed_exceptions)
    if denied:
        raise InputError("%s: allow='%s' is not permitted on uplink %s (allowed-exceptions = "
                         "%s in [uplink %s] of %s); remove it from allow= or ask the host admin "
                         "to add it there" % (who, ",".join(denied), uplink.name,
                                              ",".join(sorted(uplink.allowed_exceptions))
                                              or "none", uplink.name, config_path))
    return Protection(mac=mac, allow=security.allow, guard_router=security.guard_router,
                      isolated=security.isolated, ips=security.ips)


def parse_network(xml: bytes) -> Network:
    """Parse a libvirt network document (or <hookData> holding one)."""
    root = _parse(xml, "network XML")
    if root is None:
        return Network(name="?", bridge=None, forward=None)
    net = root if root.tag == "network" else root.find(".//network")
    if net is None:
        raise InputError("network hook input: no <network> element in the XML on stdin")
    name = _text(net, "name") or "?"
    bridge_el, forward_el = net.find("bridge"), net.find("forward")
    bridge = bridge_el.get("name") if bridge_el is not None else None
    forward = forward_el.get("mode", "nat") if forward_el is not None else None
    who = "network %s" % name
    # Typos are refused, as in a domain: a misspelt element would start the
    # network with nothing wired.
    for el in net.iterfind("metadata/*"):
        if isinstance(el.tag, str) and el.tag.startswith(NS) and el.tag != NS + "vlan":
            raise InputError("%s: <metadata> has <%s> in the virt-vlan namespace; the element "
                             "is <vv:vlan xmlns:vv='%s'>" % (who, cut(shown(el.tag)),
                                                            NAMESPACE))
    for container in net.iterfind("metadata/%svlan" % NS):
        for el in container:
            if isinstance(el.tag, str) and el.tag != NS + "network":
                raise InputError("%s: unknown element <%s> in virt-vlan metadata; a network "
                                 "takes one <vv:network vlan='5'/>"
                                 % (who, cut(shown(el.tag))))
    specs = net.findall("metadata/%svlan/%snetwork" % (NS, NS))
    if not specs:
        return Network(name=name, bridge=bridge, forward=forward)
    if len(specs) > 1:
        raise InputError("%s: virt-vlan metadata has %d <network> elements; a libvirt "
                         "network is one VLAN, keep one" % (who, len(specs)))
    el = specs[0]
    for attr in el.keys():
        if attr not in NETWORK_ATTRS:
            raise InputError("%s: unknown attribute %s=%s on <vv:network>; allowed: %s"
                             % (who, attr, _q(el.get(attr)), ", ".join(sorted(NETWORK_ATTRS))))
    value = el.get("vlan")
    if value is None:
        raise InputError("%s: <vv:network> needs vlan='5' (the VLAN its guests see "
                         "untagged)" % who)
    try:
        vlan = parse_vlan(value)
    except VlanSyntax as err:
        raise InputError("%s: vlan=%s: %s" % (who, _q(value), err)) from err
    if forward != "bridge" or not bridge:
        raise InputError("%s: virt-vlan networks need <forward mode='bridge'/> and <bridge "
                         "name='...'/> (found forward %s, bridge %s); see "
                         "xml-examples/network-vlan5.xml" % (who, forward, bridge))
    return Network(name=name, bridge=bridge, forward=forward, vlan=vlan, uplink=el.get("uplink"),
                   security=parse_security(el, who))


def wants(domain: Domain, config: Config) -> Tuple[Want, ...]:
    """Check each spec against the host config; one Want per tagged NIC.

    Wants carry the tap name when libvirt has created it (target dev).
    """
    out = []
    for spec in domain.specs:
        who = "domain %s, interface %s" % (domain.name, spec.mac)
        uplink = config.uplink(spec.uplink, who)
        denied = [v for v in spec.vlans + ((spec.native,) if spec.native else ())
                  if v not in uplink.allowed_vlans]
        if denied:
            raise InputError("%s: VLAN %s not allowed on uplink %s (allowed: %s); ask the host "
                             "admin to add it to allowed-vlans in [uplink %s] of %s"
                             % (who, format_vlan_list(denied), uplink.name,
                                format_vlan_list(uplink.allowed_vlans), uplink.name, config.path))
        nic = domain.nic(spec.mac)
        guard = protection(spec.security, spec.mac, uplink, who, config.path)
        out.append(Want(uplink=uplink.name, mode=spec.mode, vlans=spec.vlans,
                        port=nic.target if nic else None, who=who, native=spec.native,
                        protection=guard))
    return tuple(out)


def network_want(network: Network, config: Config) -> Want:
    """The access Want of a virt-vlan network; checks its bridge name too."""
    assert network.vlan is not None and network.bridge is not None
    who = "network %s" % network.name
    uplink = config.uplink(network.uplink, who)
    if network.vlan not in uplink.allowed_vlans:
        raise InputError("%s: VLAN %d not allowed on uplink %s (allowed: %s); add it to "
                         "allowed-vlans in [uplink %s] of %s"
                         % (who, network.vlan, uplink.name, format_vlan_list(uplink.allowed_vlans),
                            uplink.name, config.path))
    expected = uplink.access_bridge(network.vlan)
    if network.bridge != expected:
        raise InputError("%s: <bridge name='%s'/> but VLAN %d on uplink %s is bridge %s; set "
                         "<bridge name='%s'/>" % (who, network.bridge, network.vlan, uplink.name,
                                                 expected, expected))
    # The exceptions its ports would get, checked now: a network that asks
    # for more than the uplink allows does not start.
    protection(network.security, "", uplink, who, config.path)
    return Want(uplink=uplink.name, mode=ACCESS, vlans=(network.vlan,), who=who)


def network_port_wants(domain: Domain, networks: Mapping[str, Network],
                       config: Config) -> Tuple[Want, ...]:
    """The Wants of the NICs of `domain` that are ports of running virt-vlan
    networks (`networks`, by name) whose uplink has port security on: each
    its tap (libvirt has attached it to the network's bridge) with the
    network's protection for the NIC's MAC. Empty with port security off:
    libvirt's wiring of such ports is all they need. InputError when the
    network asks for an exception the uplink no longer allows."""
    out = []
    for nic in domain.nics:
        # Not by <interface type>: libvirt's live XML gives the port of a
        # bridge-forward network type='bridge', with <source network=... bridge=...>.
        network = networks.get(nic.source_network or "")
        if network is None or network.vlan is None or not nic.target:
            continue
        who = "domain %s, interface %s (network %s)" % (domain.name, nic.mac, network.name)
        uplink = config.uplink(network.uplink, who)
        guard = protection(network.security, nic.mac, uplink, who, config.path)
        if guard is None:
            continue
        out.append(Want(uplink=uplink.name, mode=ACCESS, vlans=(network.vlan,), port=nic.target,
                        who=who, protection=guard))
    return tuple(out)
