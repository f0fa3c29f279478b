"""checks/moving.py and the migrate/restore hooks: an incoming guest on this host.

Host B's configs name their bridges differently from host A's (where the
XML was written): its VLAN 5 access bridge is br15 (the uplink is its second
[uplink] section), its trunk bridge brt. The snapshot is hand-made.
"""

import pytest

from conftest import parse_config
from virtvlan.checks import moving
from virtvlan.errors import InputError, Refused
from virtvlan.hook import handler
from virtvlan.model import Link, Snapshot
from virtvlan.parse.metadata import parse_domain

MAC1, MAC2, MAC3 = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"

# As libvirt formats it (single quotes, two-space indent), plus what a
# byte-preserving rewrite must keep: a comment, odd spacing, an attribute
# after `bridge`, and an untagged NIC on A's bridge name.
XML_A = ("""<domain type='kvm'>
  <name>vm1</name>
  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
  <metadata>
    <vv:vlan xmlns:vv='urn:virt-vlan:1'>
      <vv:interface mac='%s' mode='access' vlan='5'/>
      <vv:interface mac='%s' mode='trunk' vlans='5,7' native='9'/>
    </vv:vlan>
  </metadata>
  <devices>
    <!-- the access NIC -->
    <interface type='bridge'>
      <mac address='%s'/>
      <source  bridge = 'br05'   />
      <target dev='vnet0'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <mac address='%s'/>
      <source bridge="br0" portid='x'/>
      <mtu size='1500'/>
    </interface>
    <interface type='bridge'>
      <mac address='%s'/>
      <source bridge='br05'/>
    </interface>
  </devices>
</domain>
""" % (MAC1, MAC2, MAC1, MAC2, MAC3)).encode()

CONF_B = """\
[uplink other]
allowed-vlans = 5

[uplink eth0]
wiring = trunk
trunk-bridge = brt
allowed-vlans = 5,7,9
"""
ETH0 = Link("eth0", index=2, mac="52:54:00:aa:00:00", mtu=1500)
HOST_B = Snapshot(links=(ETH0,))


@pytest.fixture
def conf_b():
    return parse_config("[global]\ndefault-uplink = eth0\n\n" + CONF_B, "b.conf")


def _incoming(xml, config, snap=HOST_B):
    return moving.incoming(parse_domain(xml, strict=False), xml, config, snap)


def test_access_and_trunk_nics_name_this_hosts_bridges_and_nothing_else_changes(conf_b):
    out = _incoming(XML_A, conf_b)
    expected = (XML_A.replace(b"<source  bridge = 'br05'   />", b"<source  bridge = 'br05'   />"
                              .replace(b"br05", b"br15"))
                .replace(b'<source bridge="br0" portid', b'<source bridge="brt" portid'))
    # Byte for byte: the comment, quotes, spacing and the untagged NIC's
    # br05 (not ours to move) are kept.
    assert out == expected
    assert out.count(b"br05") == 1


def test_the_moves_are_reported_per_nic(conf_b):
    moves = moving.bridge_moves(parse_domain(XML_A, strict=False), conf_b)
    assert moving.describe_moves(moves) == [
        "domain vm1, interface %s: <source bridge='br05'> becomes 'br15' on this host" % MAC1,
        "domain vm1, interface %s: <source bridge='br0'> becomes 'brt' on this host" % MAC2,
    ]


def test_a_guest_already_on_this_hosts_bridges_gives_no_output(conf_b):
    xml = XML_A.replace(b"'br05'   />", b"'br15'   />").replace(b'"br0"', b'"brt"')
    assert _incoming(xml, conf_b) is None


def test_an_interface_without_source_gets_one(conf_b):
    xml = XML_A.replace(b"<source  bridge = 'br05'   />", b"")
    out = _incoming(xml, conf_b)
    root = parse_domain(out, strict=False)
    assert root.nic(MAC1).source_bridge == "br15"
    assert root.nic(MAC2).source_bridge == "brt" and root.nic(MAC3).source_bridge == "br05"


def test_a_network_interface_is_left_to_its_network(conf_b):
    xml = XML_A.replace(b"<interface type='bridge'>\n      <mac address='%s'/>\n      <source  "
                        b"bridge = 'br05'   />" % MAC1.encode(),
                        b"<interface type='network'>\n      <mac address='%s'/>\n      <source "
                        b"network='vlan5'/>" % MAC1.encode())
    out = _incoming(xml, conf_b)
    assert b"network='vlan5'" in out and b"br15" not in out


def test_refused_when_the_vlan_is_not_allowed_here(make_config):
    config = make_config("[uplink eth0]\nwiring = trunk\nallowed-vlans = 7,9\n")
    with pytest.raises(InputError) as err:
        _incoming(XML_A, config)
    assert str(err.value) == (
        "domain vm1, interface %s: VLAN 5 not allowed on uplink eth0 (allowed: 7,9); ask the "
        "host admin to add it to allowed-vlans in [uplink eth0] of test.conf" % MAC1)


def test_refused_when_the_uplink_device_is_missing_here(conf_b):
    with pytest.raises(Refused) as err:
        _incoming(XML_A, conf_b, Snapshot(links=(Link("eth9", index=3),)))
    assert "eth0 does not exist on this host" in str(err.value)
    assert "\n" not in str(err.value)


def test_refused_when_this_hosts_mtu_is_smaller(conf_b):
    xml = XML_A.replace(b"<mtu size='1500'/>", b"<mtu size='9000'/>")
    with pytest.raises(Refused) as err:
        _incoming(xml, conf_b)
    assert str(err.value) == (
        "domain vm1, interface %s: the guest's <mtu size='9000'/> is larger than MTU 1500 of "
        "bridge brt on this host; set mtu = 9000 in [uplink eth0] of b.conf (and on the "
        "switch), or lower the guest's MTU" % MAC2)


def test_an_mtu_that_fits_is_accepted(conf_b):
    jumbo = Snapshot(links=(Link("eth0", index=2, mtu=9000),))
    xml = XML_A.replace(b"<mtu size='1500'/>", b"<mtu size='9000'/>")
    assert b"brt" in _incoming(xml, conf_b, jumbo)


def test_markup_the_scanner_does_not_follow_is_reserialized_not_lost(conf_b):
    # A CDATA section in a description: the splice is checked against the
    # parsed edit, and the document is still right.
    xml = XML_A.replace(b"<name>vm1</name>", b"<name>vm1</name><description><![CDATA[<x>]]>"
                                              b"</description>")
    out = _incoming(xml, conf_b)
    domain = parse_domain(out, strict=False)
    assert [n.source_bridge for n in domain.nics] == ["br15", "brt", "br05"]
    assert b"&lt;x&gt;" in out or b"<![CDATA[<x>]]>" in out


# --- the hook: stdout carries the XML only when it changes ---------------------------------

@pytest.fixture
def hook_host(tmp_path, monkeypatch):
    """The hook on host B: its config file and a hand-made snapshot."""
    from virtvlan.host import rtnl

    path = tmp_path / "b.conf"
    path.write_text("[global]\ndefault-uplink = eth0\n\n" + CONF_B)
    monkeypatch.setattr(rtnl, "read_snapshot", lambda *a, **k: HOST_B)
    return path


@pytest.mark.parametrize("op", ["migrate", "restore"])
def test_the_hook_returns_the_rewritten_xml(hook_host, op):
    out = []
    code, err = handler.serve("qemu", ["vm1", op, "begin", "-"], XML_A, str(hook_host), out)
    assert (code, err) == (0, "")
    assert out == [_incoming(XML_A, parse_config(hook_host.read_text(), str(hook_host)))]


def test_the_hook_prints_it_on_stdout_and_nothing_when_unchanged(hook_host, monkeypatch,
                                                                  capfdbinary):
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(hook_host))
    assert handler.run("qemu", ["vm1", "migrate", "begin", "-"], XML_A) == 0
    printed = capfdbinary.readouterr()
    assert printed.out.count(b"br15") == 1 and printed.err == b""
    same = XML_A.replace(b"'br05'   />", b"'br15'   />").replace(b'"br0"', b'"brt"')
    assert handler.run("qemu", ["vm1", "migrate", "begin", "-"], same) == 0
    assert capfdbinary.readouterr() == (b"", b"")


def test_the_hook_refuses_with_one_line_and_no_xml(hook_host, monkeypatch, capfdbinary):
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(hook_host))
    xml = XML_A.replace(b"vlans='5,7'", b"vlans='5,8'")
    assert handler.run("qemu", ["vm1", "migrate", "begin", "-"], xml) == 1
    printed = capfdbinary.readouterr()
    assert printed.out == b""
    assert printed.err.decode() == (
        "virt-vlan: domain vm1, interface %s: VLAN 8 not allowed on uplink eth0 (allowed: "
        "5,7,9); ask the host admin to add it to allowed-vlans in [uplink eth0] of %s\n"
        % (MAC2, hook_host))
