"""metadata.py: the domain/network metadata contract and its hardened parser.

Every refusal is pinned by its full message: one line, naming the domain and
the MAC where there is one.
"""

import re

import pytest

from virtvlan.parse import metadata
from virtvlan.errors import InputError
from virtvlan.model import Want
from virtvlan.parse.xml import MAX_XML_BYTES

MAC1 = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"
WHO1 = "domain vm1, interface " + MAC1


def domain_xml(*entries, nics=((MAC1, "vnet0"), (MAC2, None)), name="vm1", metadata_xml=None):
    """A libvirt-like domain; `entries` go into one <vv:vlan> container."""
    interfaces = []
    for mac, target in nics:
        interfaces.append(
            "<interface type='bridge'><mac address='%s'/><source bridge='br05'/>%s"
            "<model type='virtio'/></interface>"
            % (mac, "<target dev='%s'/>" % target if target else ""))
    if metadata_xml is None:
        metadata_xml = ("<vv:vlan xmlns:vv='urn:virt-vlan:1'>%s</vv:vlan>" % "".join(entries)
                        if entries else "")
    return ("<domain type='kvm'><name>%s</name><uuid>0f7e35a4-3f9b-4a8e-9a51-2b8c3a4d5e01</uuid>"
            "<memory unit='MiB'>512</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>"
            "<metadata>%s</metadata><devices>%s</devices></domain>"
            % (name, metadata_xml, "".join(interfaces))).encode()


def entry(**attrs):
    return "<vv:interface %s/>" % " ".join("%s='%s'" % (k, v) for k, v in attrs.items())


def access(vlan="5", mac=MAC1, **more):
    return entry(mac=mac, mode="access", vlan=vlan, **more)


def trunk(vlans="5,7", mac=MAC1, **more):
    return entry(mac=mac, mode="trunk", vlans=vlans, **more)


def network_xml(meta="<vv:network vlan='5'/>", forward="<forward mode='bridge'/>",
                bridge="<bridge name='br05'/>", name="vlan5"):
    metadata_xml = ("<metadata><vv:vlan xmlns:vv='urn:virt-vlan:1'>%s</vv:vlan></metadata>" % meta
                    if meta is not None else "")
    return ("<network><name>%s</name><uuid>5b9f2f0e-1c1a-4d3b-8f53-6c0d2b7a9e05</uuid>%s%s%s"
            "</network>" % (name, forward, bridge, metadata_xml)).encode()


def parse_error(xml, parse=metadata.parse_domain):
    with pytest.raises(InputError) as info:
        parse(xml)
    return str(info.value)


# --- is_tagged ----------------------------------------------------------------


def test_is_tagged_sees_the_namespace():
    assert metadata.is_tagged(domain_xml(access()))


def test_is_tagged_false_for_an_untagged_domain():
    assert not metadata.is_tagged(domain_xml())


def test_is_tagged_ignores_other_metadata():
    other = "<app:info xmlns:app='http://example.org/app'>x</app:info>"
    assert not metadata.is_tagged(domain_xml(metadata_xml=other))


# --- parse_domain: what it accepts --------------------------------------------


def test_access_interface():
    dom = metadata.parse_domain(domain_xml(access("5")))
    assert dom.name == "vm1"
    assert dom.uuid == "0f7e35a4-3f9b-4a8e-9a51-2b8c3a4d5e01"
    assert dom.tagged
    assert dom.specs == (metadata.VlanSpec(mac=MAC1, mode="access", vlans=(5,)),)


def test_trunk_interface_with_ranges_and_uplink():
    dom = metadata.parse_domain(domain_xml(trunk("5,7,100-102", uplink="eth1")))
    assert dom.specs == (metadata.VlanSpec(mac=MAC1, mode="trunk", vlans=(5, 7, 100, 101, 102),
                                           uplink="eth1"),)


def test_two_interfaces_keep_document_order():
    dom = metadata.parse_domain(domain_xml(trunk("7", mac=MAC2), access("5")))
    assert [spec.mac for spec in dom.specs] == [MAC2, MAC1]


def test_nics_carry_target_and_source():
    dom = metadata.parse_domain(domain_xml())
    assert dom.nics == (
        metadata.Nic(mac=MAC1, type="bridge", target="vnet0", source_bridge="br05"),
        metadata.Nic(mac=MAC2, type="bridge", target=None, source_bridge="br05"),
    )


def test_network_interface_source():
    xml = (b"<domain><name>vm1</name><devices><interface type='network'>"
           b"<mac address='52:54:00:00:00:01'/><source network='vlan5'/></interface>"
           b"</devices></domain>")
    nic, = metadata.parse_domain(xml).nics
    assert (nic.type, nic.source_network, nic.source_bridge) == ("network", "vlan5", None)


def test_untagged_domain_has_no_specs():
    dom = metadata.parse_domain(domain_xml())
    assert not dom.tagged
    assert dom.specs == ()


def test_empty_container_is_untagged():
    assert not metadata.parse_domain(domain_xml(metadata_xml="<vv:vlan "
                                                "xmlns:vv='urn:virt-vlan:1'/>")).tagged


def test_mac_in_metadata_matches_case_insensitively():
    dom = metadata.parse_domain(domain_xml(access(mac=MAC1.upper())))
    assert dom.specs[0].mac == MAC1
    assert dom.nic(MAC1).target == "vnet0"


def test_mac_in_devices_matches_case_insensitively():
    dom = metadata.parse_domain(domain_xml(access(mac=MAC1), nics=((MAC1.upper(), "vnet0"),)))
    assert dom.nics[0].mac == MAC1
    assert dom.specs[0].mac == MAC1


def test_interface_without_mac_is_skipped():
    xml = (b"<domain><name>vm1</name><devices><interface type='bridge'>"
           b"<source bridge='br0'/></interface></devices></domain>")
    assert metadata.parse_domain(xml).nics == ()


def test_domain_inside_hook_data():
    xml = b"<hookData>" + domain_xml(access()) + b"</hookData>"
    assert metadata.parse_domain(xml).specs[0].vlans == (5,)


def test_comments_in_metadata_are_ignored():
    dom = metadata.parse_domain(domain_xml("<!-- web VLAN -->", access()))
    assert len(dom.specs) == 1


def test_vlan_value_may_have_spaces():
    assert metadata.parse_domain(domain_xml(access(" 5 "))).specs[0].vlans == (5,)


# --- parse_domain: every refusal ----------------------------------------------


INTERFACE_ERRORS = {
    "vlan 0": (access("0"),
               WHO1 + ": vlan='0': VLAN 0 is the 802.1p priority tag, not a VLAN (use 1-4094)"),
    "vlan 4095": (access("4095"),
                  WHO1 + ": vlan='4095': VLAN 4095 is reserved by 802.1Q (use 1-4094)"),
    "vlan 5000": (access("5000"),
                  WHO1 + ": vlan='5000': VLAN 5000 is above 4094, the largest 802.1Q VLAN "
                  "(use 1-4094)"),
    "vlan not numeric": (access("web"),
                         WHO1 + ": vlan='web': 'web' is not a VLAN number (use 1-4094)"),
    "vlan empty": (access(""), WHO1 + ": vlan='': '' is not a VLAN number (use 1-4094)"),
    "vlan is a list": (access("5,7"),
                       WHO1 + ": vlan='5,7': '5,7' is not a VLAN number (use 1-4094)"),
    "trunk reversed range": (trunk("5,110-100"),
                             WHO1 + ": vlans='5,110-100': range '110-100' is reversed "
                             "(write 100-110)"),
    "trunk bad member": (trunk("5,x"),
                         WHO1 + ": vlans='5,x': 'x' is not a VLAN number (use 1-4094)"),
    "trunk open range": (trunk("100-"),
                         WHO1 + ": vlans='100-': range '100-' needs both ends (write e.g. "
                         "100-110)"),
    "trunk empty": (trunk(""),
                    WHO1 + ": vlans='': the VLAN list is empty (write e.g. 5,7,100-110)"),
    "trunk vlan 0": (trunk("0-5"),
                     WHO1 + ": vlans='0-5': VLAN 0 is the 802.1p priority tag, not a VLAN "
                     "(use 1-4094)"),
    "duplicate mac": (access("5") + access("7"),
                      WHO1 + ": listed twice in virt-vlan metadata (entries 1 and 2); keep one"),
    "duplicate mac other case": (access("5") + trunk("7", mac=MAC1.upper()),
                                 WHO1 + ": listed twice in virt-vlan metadata (entries 1 and 2); "
                                 "keep one"),
    "mac the domain lacks": (access(mac="52:54:00:99:99:99"),
                             "domain vm1, interface 52:54:00:99:99:99: virt-vlan metadata names a "
                             "MAC the domain has no <interface> for (its MACs: %s, %s); fix the "
                             "mac attribute" % (MAC1, MAC2)),
    "unknown mode": (entry(mac=MAC1, mode="tagged", vlan="5"),
                     WHO1 + ": mode='tagged'; use mode='access' (one untagged VLAN) or "
                     "mode='trunk' (tagged VLANs)"),
    "missing mode": (entry(mac=MAC1, vlan="5"),
                     WHO1 + ": mode=None; use mode='access' (one untagged VLAN) or mode='trunk' "
                     "(tagged VLANs)"),
    "vlan on trunk": (entry(mac=MAC1, mode="trunk", vlan="5"),
                      WHO1 + ": unknown attribute vlan='5' for mode trunk; a trunk interface "
                      "takes a list: use vlans='5,7', or mode='access'"),
    "vlans on access": (entry(mac=MAC1, mode="access", vlans="5,7"),
                        WHO1 + ": unknown attribute vlans='5,7' for mode access; an access "
                        "interface takes one VLAN: use vlan='5', or mode='trunk'"),
    "unknown attribute": (access(priority="3"),
                          WHO1 + ": unknown attribute priority='3' for mode access; allowed: "
                          "allow, guard, ips, isolated, mac, mode, uplink, vlan"),
    "unknown attribute on trunk": (trunk(pvid="5"),
                                   WHO1 + ": unknown attribute pvid='5' for mode trunk; "
                                   "allowed: allow, guard, ips, isolated, mac, mode, native, uplink, vlans"),
    "native also in vlans": (trunk(native="5"),
                             WHO1 + ": native='5' is also in vlans='5,7'; the native VLAN is "
                             "the one the guest sees untagged, list it in native only"),
    "access without vlan": (entry(mac=MAC1, mode="access"),
                            WHO1 + ": mode access needs vlan='...'; add e.g. vlan='5'"),
    "trunk without vlans": (entry(mac=MAC1, mode="trunk"),
                            WHO1 + ": mode trunk needs vlans='...'; add e.g. "
                            "vlans='5,7,100-110'"),
    "missing mac": (entry(mode="access", vlan="5"),
                    "domain vm1, interface #1: <vv:interface> has no mac attribute; add "
                    "mac='52:54:00:..' of the guest NIC"),
    "missing mac, second entry": (access() + entry(mode="access", vlan="5"),
                                  "domain vm1, interface #2: <vv:interface> has no mac "
                                  "attribute; add mac='52:54:00:..' of the guest NIC"),
    "bad mac": (access(mac="52:54:00:00:01"),
                "domain vm1, interface 52:54:00:00:01: mac='52:54:00:00:01' is not a MAC "
                "address; write six hex pairs like 52:54:00:11:22:33"),
    "bad mac hex": (access(mac="52:54:00:00:00:0g"),
                    "domain vm1, interface 52:54:00:00:00:0g: mac='52:54:00:00:00:0g' is not a "
                    "MAC address; write six hex pairs like 52:54:00:11:22:33"),
    "empty uplink": (access(uplink=""),
                     WHO1 + ": uplink='' is empty; name an uplink of the host config or leave "
                     "the attribute out"),
    "blank uplink": (access(uplink="  "),
                     WHO1 + ": uplink='' is empty; name an uplink of the host config or leave "
                     "the attribute out"),
    "unknown element": ("<vv:port mac='%s' mode='access' vlan='5'/>" % MAC1,
                        "domain vm1: unknown element <vv:port> in virt-vlan metadata; only "
                        "<interface> is allowed"),
}


@pytest.mark.parametrize("entries, message", list(INTERFACE_ERRORS.values()),
                         ids=list(INTERFACE_ERRORS))
def test_parse_domain_refuses(entries, message):
    assert parse_error(domain_xml(entries)) == message


@pytest.mark.parametrize("entries", [v[0] for v in INTERFACE_ERRORS.values()],
                         ids=list(INTERFACE_ERRORS))
def test_parse_domain_errors_are_one_line_naming_the_domain(entries):
    message = parse_error(domain_xml(entries))
    assert "\n" not in message
    assert message.startswith("domain vm1")


def test_two_vlan_containers():
    two = ("<vv:vlan xmlns:vv='urn:virt-vlan:1'>%s</vv:vlan>"
           "<v2:vlan xmlns:v2='urn:virt-vlan:1'/>" % access())
    assert parse_error(domain_xml(metadata_xml=two)) == (
        "domain vm1: <metadata> has 2 <vlan xmlns='urn:virt-vlan:1'> elements; merge them into "
        "one")


def test_no_domain_element():
    assert parse_error(b"<hookData><network/></hookData>") == (
        "hook input: no <domain> element in the XML on stdin; libvirt passes the domain XML there")


def test_bad_mac_with_newline_is_folded_onto_one_line():
    # &#10; survives attribute normalisation: the raw value has a newline.
    assert parse_error(domain_xml(access(mac="52:54&#10;00"))) == (
        "domain vm1, interface 52:54 00: mac='52:54\\n00' is not a MAC address; write six hex "
        "pairs like 52:54:00:11:22:33")


def test_syntax_error_quoting_a_newline_is_folded_onto_one_line():
    message = parse_error(domain_xml("<x:port xmlns:x='urn:a&#10;b'/>"))
    assert "\n" not in message
    assert message.startswith("domain XML: XML is not well-formed: xmlns:x: 'urn:a b' is not a "
                              "valid URI")


def test_unknown_uplink_with_newline_is_folded_onto_one_line(mixed_config):
    dom = metadata.parse_domain(domain_xml(access(uplink="a&#10;b")))
    with pytest.raises(InputError) as info:
        metadata.wants(dom, mixed_config)
    assert str(info.value) == (WHO1 + ": unknown uplink 'a\\nb'; test.conf defines: eth0, eth1; "
                               "use one of those or add [uplink a b]")


def test_huge_vlan_number_is_an_input_error():
    with pytest.raises(InputError) as info:
        metadata.parse_domain(domain_xml(access("1" * 5000)))
    assert str(info.value).startswith(WHO1 + ": vlan='111")
    assert str(info.value).endswith(": VLAN 11111111... is above 4094, the largest 802.1Q VLAN "
                                    "(use 1-4094)")


# --- hardening ----------------------------------------------------------------


def test_oversize_xml_is_refused_before_parsing():
    xml = domain_xml(access()) + b" " * MAX_XML_BYTES
    assert parse_error(xml) == (
        "domain XML: XML is %d bytes, more than the 4194304 accepted; this is not a libvirt "
        "document" % len(xml))


def test_xml_of_exactly_the_limit_is_parsed():
    xml = domain_xml(access())
    xml += b" " * (MAX_XML_BYTES - len(xml))
    assert metadata.parse_domain(xml).tagged


def test_doctype_is_refused():
    xml = b"<!DOCTYPE domain>" + domain_xml(access())
    assert parse_error(xml) == ("domain XML: XML has a DOCTYPE; libvirt never writes one, "
                                "remove it")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE domain [
  <!ENTITY a "lol">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
  <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
  <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
  <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
  <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
  <!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
  <!ENTITY i "&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;">
]>
<domain type='kvm' xmlns:vv='urn:virt-vlan:1'><name>&i;</name></domain>
"""


def test_billion_laughs_is_refused_not_expanded():
    # libxml2 >= 2.11 stops the expansion itself (amplification limit) before
    # our DOCTYPE check runs; older ones hand back the unexpanded tree, which
    # the DOCTYPE check refuses. Either way: refused, one line, not expanded.
    message = parse_error(BILLION_LAUGHS)
    assert re.match(r"^domain XML: XML (has a DOCTYPE; libvirt never writes one, remove it|"
                    r"is not well-formed: .*(amplification|entity).*; fix the document)$",
                    message)
    assert "lollollol" not in message


def test_small_internal_entity_is_refused_by_the_doctype_check():
    xml = (b"<!DOCTYPE domain [<!ENTITY v '5'>]><domain><name>vm1</name><metadata>"
           b"<vv:vlan xmlns:vv='urn:virt-vlan:1'><vv:interface mac='52:54:00:00:00:01' "
           b"mode='access' vlan='&v;'/></vv:vlan></metadata></domain>")
    assert parse_error(xml) == ("domain XML: XML has a DOCTYPE; libvirt never writes one, "
                                "remove it")


def test_external_entity_is_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("top-secret")
    xml = ("<!DOCTYPE domain [<!ENTITY x SYSTEM 'file://%s'>]>"
           "<domain xmlns:vv='urn:virt-vlan:1'><name>&x;</name></domain>" % secret).encode()
    message = parse_error(xml)
    assert message == "domain XML: XML has a DOCTYPE; libvirt never writes one, remove it"
    assert "top-secret" not in message


def test_undeclared_entity_is_malformed():
    message = parse_error(b"<domain><name>&x;</name></domain>")
    assert message.startswith("domain XML: XML is not well-formed: ")
    assert message.endswith("; fix the document")


@pytest.mark.parametrize("xml", [b"", b"<domain>", b"<domain></network>", b"not xml at all"])
def test_malformed_xml(xml):
    message = parse_error(xml)
    assert message.startswith("domain XML: XML is not well-formed: ")
    assert message.endswith("; fix the document")
    assert "\n" not in message


def test_network_doctype_is_refused():
    assert parse_error(b"<!DOCTYPE network>" + network_xml(), metadata.parse_network) == (
        "network XML: XML has a DOCTYPE; libvirt never writes one, remove it")


# --- wants --------------------------------------------------------------------


def test_wants_use_default_uplink_and_target_as_port(mixed_config):
    dom = metadata.parse_domain(domain_xml(access("5")))
    assert metadata.wants(dom, mixed_config) == (
        Want(uplink="eth0", mode="access", vlans=(5,), port="vnet0", who=WHO1),)


def test_wants_without_target_have_no_port(mixed_config):
    dom = metadata.parse_domain(domain_xml(trunk("5,100-101", mac=MAC2, uplink="eth1")))
    assert metadata.wants(dom, mixed_config) == (
        Want(uplink="eth1", mode="trunk", vlans=(5, 100, 101), port=None,
             who="domain vm1, interface " + MAC2),)


def test_wants_of_an_untagged_domain_are_empty(mixed_config):
    assert metadata.wants(metadata.parse_domain(domain_xml()), mixed_config) == ()


def test_wants_unknown_uplink(mixed_config):
    dom = metadata.parse_domain(domain_xml(access(uplink="eth9")))
    with pytest.raises(InputError) as info:
        metadata.wants(dom, mixed_config)
    assert str(info.value) == (WHO1 + ": unknown uplink 'eth9'; test.conf defines: eth0, eth1; "
                               "use one of those or add [uplink eth9]")


def test_wants_vlan_not_allowed(mixed_config):
    dom = metadata.parse_domain(domain_xml(access("100")))
    with pytest.raises(InputError) as info:
        metadata.wants(dom, mixed_config)
    assert str(info.value) == (WHO1 + ": VLAN 100 not allowed on uplink eth0 (allowed: 5,7); "
                               "ask the host admin to add it to allowed-vlans in [uplink eth0] "
                               "of test.conf")


def test_wants_trunk_lists_every_denied_vlan(mixed_config):
    dom = metadata.parse_domain(domain_xml(trunk("5,8,200-201", uplink="eth1")))
    with pytest.raises(InputError, match=r": VLAN 8,200-201 not allowed on uplink eth1 "
                                         r"\(allowed: 5,7,100-110\)"):
        metadata.wants(dom, mixed_config)


def test_host_vlan_is_not_a_guest_vlan(mixed_config):
    # eth1 carries VLAN 10 for the host only (host-vlans), not for guests.
    dom = metadata.parse_domain(domain_xml(access("10", uplink="eth1")))
    with pytest.raises(InputError, match=r"VLAN 10 not allowed on uplink eth1"):
        metadata.wants(dom, mixed_config)


# --- networks -----------------------------------------------------------------


def test_untagged_network_is_not_ours():
    net = metadata.parse_network(network_xml(meta=None, forward="<forward mode='nat'/>",
                                             bridge="<bridge name='virbr0'/>", name="default"))
    assert net == metadata.Network(name="default", bridge="virbr0", forward="nat")


def test_network_without_forward_mode_means_nat():
    net = metadata.parse_network(network_xml(meta=None, forward="<forward/>"))
    assert net.forward == "nat"


def test_isolated_network_has_no_forward():
    assert metadata.parse_network(network_xml(meta=None, forward="")).forward is None


def test_tagged_network():
    net = metadata.parse_network(network_xml("<vv:network vlan='5' uplink='eth0'/>"))
    assert net == metadata.Network(name="vlan5", bridge="br05", forward="bridge", vlan=5,
                                   uplink="eth0")


def test_network_inside_hook_data():
    net = metadata.parse_network(b"<hookData>" + network_xml() + b"</hookData>")
    assert net.vlan == 5


def test_network_want(mixed_config):
    net = metadata.parse_network(network_xml())
    assert metadata.network_want(net, mixed_config) == Want(
        uplink="eth0", mode="access", vlans=(5,), port=None, who="network vlan5")


def test_network_want_on_other_uplink(mixed_config):
    net = metadata.parse_network(network_xml("<vv:network vlan='100' uplink='eth1'/>",
                                             bridge="<bridge name='br1100'/>", name="v100"))
    assert metadata.network_want(net, mixed_config).uplink == "eth1"


def test_network_with_wrong_bridge_name(mixed_config):
    net = metadata.parse_network(network_xml(bridge="<bridge name='vlan5br'/>"))
    with pytest.raises(InputError) as info:
        metadata.network_want(net, mixed_config)
    assert str(info.value) == ("network vlan5: <bridge name='vlan5br'/> but VLAN 5 on uplink eth0 "
                               "is bridge br05; set <bridge name='br05'/>")


def test_network_vlan_not_allowed(mixed_config):
    net = metadata.parse_network(network_xml("<vv:network vlan='6'/>", bridge="<bridge "
                                             "name='br06'/>"))
    with pytest.raises(InputError) as info:
        metadata.network_want(net, mixed_config)
    assert str(info.value) == ("network vlan5: VLAN 6 not allowed on uplink eth0 (allowed: 5,7); "
                               "add it to allowed-vlans in [uplink eth0] of test.conf")


def test_network_unknown_uplink(mixed_config):
    net = metadata.parse_network(network_xml("<vv:network vlan='5' uplink='bond0'/>"))
    with pytest.raises(InputError, match=r"^network vlan5: unknown uplink 'bond0'; test\.conf "
                                         r"defines: eth0, eth1"):
        metadata.network_want(net, mixed_config)


NETWORK_ERRORS = {
    "nat forward": (dict(forward="<forward mode='nat'/>"),
                    "network vlan5: virt-vlan networks need <forward mode='bridge'/> and <bridge "
                    "name='...'/> (found forward nat, bridge br05); see "
                    "xml-examples/network-vlan5.xml"),
    "no forward": (dict(forward=""),
                   "network vlan5: virt-vlan networks need <forward mode='bridge'/> and <bridge "
                   "name='...'/> (found forward None, bridge br05); see "
                   "xml-examples/network-vlan5.xml"),
    "no bridge": (dict(bridge=""),
                  "network vlan5: virt-vlan networks need <forward mode='bridge'/> and <bridge "
                  "name='...'/> (found forward bridge, bridge None); see "
                  "xml-examples/network-vlan5.xml"),
    "unknown attribute": (dict(meta="<vv:network vlan='5' mode='access'/>"),
                          "network vlan5: unknown attribute mode='access' on <vv:network>; "
                          "allowed: allow, guard, ips, isolated, uplink, vlan"),
    "missing vlan": (dict(meta="<vv:network uplink='eth0'/>"),
                     "network vlan5: <vv:network> needs vlan='5' (the VLAN its guests see "
                     "untagged)"),
    "vlan 4095": (dict(meta="<vv:network vlan='4095'/>"),
                  "network vlan5: vlan='4095': VLAN 4095 is reserved by 802.1Q (use 1-4094)"),
    "vlan list": (dict(meta="<vv:network vlan='5,7'/>"),
                  "network vlan5: vlan='5,7': '5,7' is not a VLAN number (use 1-4094)"),
    "two networks": (dict(meta="<vv:network vlan='5'/><vv:network vlan='7'/>"),
                     "network vlan5: virt-vlan metadata has 2 <network> elements; a libvirt "
                     "network is one VLAN, keep one"),
}


@pytest.mark.parametrize("parts, message", list(NETWORK_ERRORS.values()),
                         ids=list(NETWORK_ERRORS))
def test_parse_network_refuses(parts, message):
    assert parse_error(network_xml(**parts), metadata.parse_network) == message


def test_no_network_element():
    assert parse_error(b"<hookData/>", metadata.parse_network) == (
        "network hook input: no <network> element in the XML on stdin")


def test_misspelt_container_in_our_namespace_is_refused():
    xml = (b"<domain><name>vm1</name><metadata><vv:vlans xmlns:vv='urn:virt-vlan:1'>"
           b"<vv:interface mac='52:54:00:00:00:01' mode='access' vlan='5'/></vv:vlans>"
           b"</metadata></domain>")
    with pytest.raises(InputError) as info:
        metadata.parse_domain(xml)
    assert str(info.value) == ("domain vm1: <metadata> has <vv:vlans> in the virt-vlan namespace; "
                               "the element is <vv:vlan xmlns:vv='urn:virt-vlan:1'>")


def test_entity_declaration_refused_before_parsing():
    xml = (b"<?xml version='1.0'?><!DOCTYPE d [<!ENTITY a 'x'>]><domain xmlns:vv='urn:virt-vlan:1'>"
           b"<name>&a;</name></domain>")
    with pytest.raises(InputError, match="^domain XML: XML has a DOCTYPE; libvirt never writes "
                                         "one, remove it$"):
        metadata.parse_domain(xml)


# --- metadata prepared for a NIC not attached yet (hot-plug) ------------------


def test_not_strict_keeps_an_entry_for_a_missing_mac_pending(mixed_config):
    xml = domain_xml(access("5"), access("7", mac="52:54:00:99:99:99"))
    dom = metadata.parse_domain(xml, strict=False)
    assert [s.mac for s in dom.specs] == [MAC1]
    assert [(s.mac, s.vlans) for s in dom.pending] == [("52:54:00:99:99:99", (7,))]
    assert [w.port for w in metadata.wants(dom, mixed_config)] == ["vnet0"]


def test_not_strict_domain_with_only_pending_entries_is_untagged():
    dom = metadata.parse_domain(domain_xml(access(mac="52:54:00:99:99:99")), strict=False)
    assert not dom.tagged and len(dom.pending) == 1


def test_strict_is_the_default_and_refuses_the_missing_mac():
    message = parse_error(domain_xml(access(mac="52:54:00:99:99:99")))
    assert "names a MAC the domain has no <interface> for" in message


def test_not_strict_still_refuses_a_bad_pending_entry():
    message = parse_error(domain_xml(access("4095", mac="52:54:00:99:99:99")),
                          parse=lambda xml: metadata.parse_domain(xml, strict=False))
    assert message == ("domain vm1, interface 52:54:00:99:99:99: vlan='4095': VLAN 4095 is "
                       "reserved by 802.1Q (use 1-4094)")


# --- the work a domain definition can cost (issue 19, item 3) --------------------------------

def test_more_entries_than_the_cap_are_refused():
    macs = ["52:54:00:00:%02x:%02x" % (i // 256, i % 256) for i in range(metadata.MAX_ENTRIES + 1)]
    xml = domain_xml(*(access(mac=mac) for mac in macs), nics=[(mac, None) for mac in macs])
    assert parse_error(xml) == ("domain vm1: virt-vlan metadata has 257 entries, more than the "
                                "256 accepted; one <vv:interface> per NIC of the guest")
    ok = domain_xml(*(access(mac=mac) for mac in macs[:-1]), nics=[(mac, None) for mac in macs])
    assert len(metadata.parse_domain(ok).specs) == metadata.MAX_ENTRIES


def test_nics_are_matched_by_lookup_not_by_scanning(monkeypatch):
    # Entries x <interface>s grew quadratically: count the reads of a NIC's MAC.
    macs = ["52:54:00:00:%02x:%02x" % (i // 256, i % 256) for i in range(200)]
    xml = domain_xml(*(trunk(mac=mac) for mac in macs), nics=[(mac, "t%d" % i)
                                                              for i, mac in enumerate(macs)])
    original = metadata.Nic
    seen_mac_reads = []

    class Counting(original):  # type: ignore[misc,valid-type]
        def __getattribute__(self, name):  # type: ignore[no-untyped-def]
            if name == "mac":
                seen_mac_reads.append(1)
            return original.__getattribute__(self, name)
    monkeypatch.setattr(metadata, "Nic", Counting)
    domain = metadata.parse_domain(xml)
    assert [n.target for n in (domain.nic(m) for m in macs)] == ["t%d" % i for i in range(200)]
    assert len(seen_mac_reads) <= 4 * len(macs), len(seen_mac_reads)


# --- silent no-ops (issue 19, item 8) ---------------------------------------------------------

@pytest.mark.parametrize("meta, message", [
    ("<vv:netwrok vlan='5'/>", "network vlan5: unknown element <vv:netwrok> in virt-vlan "
     "metadata; a network takes one <vv:network vlan='5'/>"),
    ("<vv:interface mac='%s' mode='access' vlan='5'/>" % MAC1,
     "network vlan5: unknown element <vv:interface> in virt-vlan metadata; a network takes "
     "one <vv:network vlan='5'/>"),
    ("<network vlan='5'/>", "network vlan5: unknown element <network> in virt-vlan metadata; "
     "a network takes one <vv:network vlan='5'/>"),
])
def test_network_metadata_typo_is_refused(meta, message):
    assert parse_error(network_xml(meta=meta), metadata.parse_network) == message


def test_network_metadata_container_typo_is_refused():
    xml = network_xml(meta=None).replace(
        b"</network>", b"<metadata><vv:vlna xmlns:vv='urn:virt-vlan:1'><vv:network vlan='5'/>"
        b"</vv:vlna></metadata></network>")
    assert parse_error(xml, metadata.parse_network) == (
        "network vlan5: <metadata> has <vv:vlna> in the virt-vlan namespace; the element is "
        "<vv:vlan xmlns:vv='urn:virt-vlan:1'>")


def test_network_with_other_metadata_is_untagged():
    xml = network_xml(meta=None).replace(
        b"</network>", b"<metadata><app:x xmlns:app='urn:other'/></metadata></network>")
    assert metadata.parse_network(xml).vlan is None


@pytest.mark.parametrize("strict", [True, False])
def test_two_interfaces_with_the_mac_of_an_entry_are_refused(strict):
    xml = domain_xml(access(), nics=((MAC1, "vnet0"), (MAC2, None), (MAC1, "vnet1")))
    with pytest.raises(InputError) as caught:
        metadata.parse_domain(xml, strict=strict)
    assert str(caught.value) == ("domain vm1, interface %s: 2 <interface>s have this MAC; give "
                                 "each NIC its own <mac address>" % MAC1)


def test_two_interfaces_with_one_mac_no_entry_names_are_left_alone():
    xml = domain_xml(access(mac=MAC2), nics=((MAC1, "vnet0"), (MAC2, None), (MAC1, "vnet1")))
    assert [s.mac for s in metadata.parse_domain(xml).specs] == [MAC2]


# --- untagged guests are never refused by a guard (issue 19, item 5) ---------------------------

DESCRIBED = ("<domain type='kvm'><name>plain</name><description>uses urn:virt-vlan:1 one day"
             "</description>%s<devices><interface type='bridge'><mac address='%s'/>"
             "</interface></devices></domain>")


@pytest.mark.parametrize("extra", [
    "<metadata><app:x xmlns:app='urn:app'><!-- <!ENTITY x 'y'> --></app:x></metadata>",
    "<metadata><app:x xmlns:app='urn:app'><![CDATA[<!DOCTYPE html>]]></app:x></metadata>",
    "<metadata><app:x xmlns:app='urn:app'><?app <!DOCTYPE x> ?></app:x></metadata>",
])
def test_untagged_domain_with_declaration_text_in_comments_or_cdata_is_untagged(extra):
    domain = metadata.parse_domain((DESCRIBED % (extra, MAC1)).encode())
    assert not domain.tagged and domain.name == "plain"  # parsed, not guessed


def test_untagged_domain_over_the_size_cap_is_untagged():
    xml = (DESCRIBED % ("", MAC1)).encode()
    xml = xml.replace(b"</domain>", b" " * metadata.MAX_XML_BYTES + b"</domain>")
    assert not metadata.parse_domain(xml).tagged
    net = network_xml(meta=None).replace(b"</network>", b"<description>urn:virt-vlan:1"
                                         b"</description>" + b" " * metadata.MAX_XML_BYTES
                                         + b"</network>")
    assert metadata.parse_network(net).vlan is None


def test_untagged_domain_with_a_real_doctype_is_untagged_and_nothing_is_expanded():
    xml = BILLION_LAUGHS.replace(b" xmlns:vv='urn:virt-vlan:1'", b"")
    assert not metadata.parse_domain(xml).tagged


def test_tagged_domain_with_declaration_text_in_a_comment_is_parsed():
    xml = domain_xml(access()).replace(b"<metadata>", b"<metadata><!-- <!DOCTYPE x> -->")
    assert [s.vlans for s in metadata.parse_domain(xml).specs] == [(5,)]


@pytest.mark.parametrize("binding", [
    b"<vv:vlan xmlns:vv='urn:virt-vlan:1'/>",
    b'<vlan xmlns="urn:virt-vlan:1"/>',
    b"<vv:vlan xmlns:vv = \"&ns;\"/>",  # an entity could spell our namespace
])
def test_domain_that_may_carry_ours_is_still_refused_by_the_guards(binding):
    base = (b"<!DOCTYPE domain [<!ENTITY ns 'urn:virt-vlan:1'>]><domain><name>vm1</name>"
            b"<metadata>%s</metadata></domain>" % binding)
    assert parse_error(base) == ("domain XML: XML has a DOCTYPE; libvirt never writes one, "
                                 "remove it")
    big = base.replace(b"<!DOCTYPE domain [<!ENTITY ns 'urn:virt-vlan:1'>]>", b"")
    big = big.replace(b"</domain>", b" " * metadata.MAX_XML_BYTES + b"</domain>")
    assert parse_error(big).startswith("domain XML: XML is ")


def test_markup_drops_comments_cdata_and_pis_in_one_pass():
    from virtvlan.parse import xmlguard

    assert xmlguard.markup(b"a<!--b-->c<![CDATA[d]]>e<?f g?>h<!--open") == b"aceh"
    assert xmlguard.markup(b"<!-- -- <![CDATA[ -->x") == b"x"
