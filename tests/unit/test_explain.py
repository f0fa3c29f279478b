"""`virt-vlan explain`: the frame path of a tagged NIC, on hand-built hosts."""

import json

import pytest

from conftest import ACCESS_CONF, MIXED_CONF
from virtvlan.parse import config as config_mod
from virtvlan.errors import InputError
from virtvlan.checks.explain import paths, render
from virtvlan.parse.metadata import Domain, Nic, Security, VlanSpec
from virtvlan.model import Link, PortFilter, Snapshot
from virtvlan.plan.actions import SetPortFilter

ACCESS = config_mod.parse(ACCESS_CONF, "vv.conf")
MIXED = config_mod.parse(MIXED_CONF, "vv.conf")  # eth0 access (default), eth1 trunk -> br1
MAC = "52:54:00:00:00:01"


def _domain(mode, vlans, uplink=None, native=None, tap="vnet0"):
    return Domain("vm1", "u1", nics=(Nic(MAC, "bridge", target=tap),),
                  specs=(VlanSpec(MAC, mode, vlans, uplink=uplink, native=native),))


def _hops(path):
    return [(h.device, h.frames, h.tcpdump, h.state) for h in path.hops]


def test_access_path_on_access_wiring():
    snap = Snapshot((
        Link("eth0"),
        Link("eth0.5", kind="vlan", vlan_id=5, parent="eth0", master="br05"),
        Link("br05", kind="bridge"),
        Link("vnet0", kind="tun", master="br05"),
    ))
    (path,) = paths(_domain("access", (5,)), ACCESS, snap)
    assert _hops(path) == [
        ("vnet0", "untagged (the guest's VLAN 5)", "tcpdump -e -n -i vnet0", "ok"),
        ("br05", "untagged", "tcpdump -e -n -i br05", "ok"),
        ("eth0.5", "untagged", "tcpdump -e -n -i eth0.5", "ok"),
        ("eth0", "tagged 5", "tcpdump -e -n -i eth0 vlan 5", "ok"),
    ]
    assert path.hops[2].change == "adds tag 5 towards the wire, strips it towards the guest"
    assert path.ok
    text = render((path,))
    assert text.splitlines()[0] == ("domain vm1, interface %s: access VLAN 5 on uplink eth0 "
                                    "(access wiring)" % MAC)
    assert "show:   tcpdump -e -n -i eth0 vlan 5" in text


def test_access_path_on_trunk_wiring_goes_through_trunk_bridge():
    snap = Snapshot((
        Link("eth0"),
        Link("eth1", master="br1"),
        Link("br1", kind="bridge"),
        Link("br1.7", kind="vlan", vlan_id=7, parent="br1", master="br17"),
        Link("br17", kind="bridge"),
        Link("vnet0", kind="tun", master="br17"),
    ))
    (path,) = paths(_domain("access", (7,), uplink="eth1"), MIXED, snap)
    assert _hops(path) == [
        ("vnet0", "untagged (the guest's VLAN 7)", "tcpdump -e -n -i vnet0", "ok"),
        ("br17", "untagged", "tcpdump -e -n -i br17", "ok"),
        ("br1.7", "untagged", "tcpdump -e -n -i br1.7", "ok"),
        ("br1", "tagged 7", "tcpdump -e -n -i br1 vlan 7", "ok"),
        ("eth1", "tagged 7", "tcpdump -e -n -i eth1 vlan 7", "ok"),
    ]
    assert path.wiring == "trunk"


def test_trunk_path_with_native_vlan():
    snap = Snapshot((
        Link("eth1", master="br1"),
        Link("br1", kind="bridge", vlan_filtering=True),
        Link("vnet3", kind="tun", master="br1"),
    ))
    (path,) = paths(_domain("trunk", (5, 7), uplink="eth1", native=100, tap="vnet3"), MIXED, snap)
    assert _hops(path) == [
        ("vnet3", "tagged 5,7; VLAN 100 untagged (native)", "tcpdump -e -n -i vnet3", "ok"),
        ("br1", "tagged 5,7,100", "tcpdump -e -n -i br1 vlan", "ok"),
        ("eth1", "tagged 5,7,100", "tcpdump -e -n -i eth1 vlan", "ok"),
    ]
    assert "untagged frames in VLAN 100" in path.hops[0].change
    assert path.native == 100


def test_trunk_path_one_vlan_without_native_filters_that_vlan():
    snap = Snapshot((Link("eth1", master="br1"), Link("br1", kind="bridge"),
                     Link("vnet3", kind="tun", master="br1")))
    (path,) = paths(_domain("trunk", (5,), uplink="eth1", tap="vnet3"), MIXED, snap)
    assert [h.tcpdump for h in path.hops] == ["tcpdump -e -n -i vnet3 vlan 5",
                                              "tcpdump -e -n -i br1 vlan 5",
                                              "tcpdump -e -n -i eth1 vlan 5"]


def test_drift_is_shown_on_the_hop():
    snap = Snapshot((
        Link("eth0"),
        Link("eth0.5", kind="vlan", vlan_id=5, parent="eth0", master="br05"),
        Link("br05", kind="bridge"),
        Link("br07", kind="bridge"),
        Link("vnet0", kind="tun", master="br07"),
    ))
    (path,) = paths(_domain("access", (5,)), ACCESS, snap)
    assert [h.state for h in path.hops] == ["tap vnet0 is on br07, not on its bridge br05", "ok",
                                            "ok", "ok"]
    assert not path.ok
    assert ("  -> vnet0   guest tap  !! tap vnet0 is on br07, not on its bridge br05\n"
            in render((path,)))


def test_not_running_and_missing_devices():
    (path,) = paths(_domain("access", (5,), tap=None), ACCESS, Snapshot((Link("eth0"),)))
    assert [(h.device, h.state) for h in path.hops] == [
        ("(tap)", "libvirt names no tap for it"), ("br05", "bridge br05 does not exist"),
        ("eth0.5", "feed eth0.5 of br05 does not exist"), ("eth0", "ok")]


def test_untagged_domain_and_unknown_mac_are_input_errors():
    with pytest.raises(InputError, match="domain plain has no virt-vlan metadata"):
        paths(Domain("plain", "u"), ACCESS, Snapshot())
    with pytest.raises(InputError, match="no tagged interface with MAC 52:54:00:ff:ff:ff"):
        paths(_domain("access", (5,)), ACCESS, Snapshot(), mac="52:54:00:FF:FF:FF")


def test_mac_selects_one_nic():
    dom = Domain("vm1", "u1", nics=(Nic(MAC, "bridge"), Nic("52:54:00:00:00:02", "bridge")),
                 specs=(VlanSpec(MAC, "access", (5,)),
                        VlanSpec("52:54:00:00:00:02", "access", (7,))))
    assert [p.vlans for p in paths(dom, ACCESS, Snapshot())] == [(5,), (7,)]
    assert [p.vlans for p in paths(dom, ACCESS, Snapshot(), mac="52:54:00:00:00:02")] == [(7,)]


def test_explain_command_errors_against_test_driver(tmp_path, capsys):
    """libvirt's test:///default driver (real libvirt code): its domain "test"
    has no virt-vlan metadata; a missing domain is one line naming it."""
    from virtvlan.cli.commands import main

    conf = tmp_path / "vv.conf"
    conf.write_text(ACCESS_CONF)
    assert main(["--config", str(conf), "explain", "test", "-c", "test:///default"]) == 1
    err = capsys.readouterr().err
    assert err == ("virt-vlan: domain test has no virt-vlan metadata; tag a NIC with "
                   "'virt-vlan set test --mac MAC --access V'\n")
    assert main(["--config", str(conf), "explain", "nosuch", "-c", "test:///default"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("virt-vlan: domain nosuch: no such domain at test:///default")


def test_explain_command_json_on_tagged_test_domain(monkeypatch, tmp_path, capsys):
    """The command on a tagged domain of test:///default (tagged through the
    metadata API), the host being a hand-built snapshot."""
    from virtvlan.virt import adapter as virt
    from virtvlan.cli.commands import main

    conf = tmp_path / "vv.conf"
    conf.write_text(ACCESS_CONF)
    snap = Snapshot((Link("eth0"),
                     Link("eth0.5", kind="vlan", vlan_id=5, parent="eth0", master="br05"),
                     Link("br05", kind="bridge"), Link("testnet0", kind="tun", master="br05")))
    monkeypatch.setattr("virtvlan.host.rtnl.read_snapshot", lambda netns=None: snap)
    conn = virt.connect("test:///default")  # keeps the test driver's state alive
    guest = conn.guest("test")
    guest.set_metadata(b"<vlan><interface mac='aa:bb:cc:dd:ee:ff' mode='access' vlan='5'/>"
                       b"</vlan>", virt.AFFECT_LIVE)
    try:
        assert main(["--config", str(conf), "explain", "test", "-c", "test:///default",
                     "--json"]) == 0
    finally:
        guest.set_metadata(None, virt.AFFECT_LIVE)
        conn.close()
    (path,) = json.loads(capsys.readouterr().out)
    assert set(path) == {"domain", "mac", "mode", "vlans", "native", "uplink", "wiring",
                         "hops", "ok", "note", "security"}
    assert path["security"]["state"] == "off"  # ACCESS_CONF: port-security = no
    assert (path["domain"], path["mac"], path["vlans"], path["ok"]) == (
        "test", "aa:bb:cc:dd:ee:ff", [5], True)
    assert [h["device"] for h in path["hops"]] == ["testnet0", "br05", "eth0.5", "eth0"]
    assert set(path["hops"][0]) == {"device", "role", "frames", "change", "tcpdump", "state"}


# --- port security on the path ---------------------------------------------------------

SECURE = config_mod.parse(ACCESS_CONF.replace("port-security = no\n",
                                              "port-security = yes\n"
                                              "allowed-exceptions = router\n"), "vv.conf")
RULES = ("stp", "mac=" + MAC, "arp=" + MAC, "nd=" + MAC, "ra", "dhcp", "dhcp6", "tagged",
         "qinq")


def _secure_snap(filters=((PortFilter("vnet0", RULES)),), isolated=False):
    return Snapshot((
        Link("eth0"),
        Link("eth0.5", kind="vlan", vlan_id=5, parent="eth0", master="br05"),
        Link("br05", kind="bridge"),
        Link("vnet0", kind="tun", master="br05", isolated=isolated),
    ), filters=filters)


def _secure_domain(**security):
    return Domain("vm1", "u1", nics=(Nic(MAC, "bridge", target="vnet0"),),
                  specs=(VlanSpec(MAC, "access", (5,), security=Security(**security)),))


def test_protected_access_nic_shows_its_filter_by_group():
    (path,) = paths(_secure_domain(), SECURE, _secure_snap())
    sec = path.security
    assert (sec.state, sec.filter, sec.problems, sec.fix) == ("on", "ok", (), "")
    assert path.ok
    assert [g.group for g in sec.expected] == ["control frames", "MAC", "ARP/NDP",
                                               "rogue servers", "tags"]
    tags = sec.expected[-1]
    assert tags.nft == (
        'nft add rule bridge virt_vlan port-vnet0 ether type 8021q vlan id != 0 drop comment '
        '"tagged"',
        'nft add rule bridge virt_vlan port-vnet0 ether type 8021ad drop comment "qinq"')
    # The same commands SetPortFilter renders for the tap (dry-run, journal).
    rendered = SetPortFilter("vnet0", RULES).render()
    assert all(line in rendered for group in sec.expected for line in group.nft)
    text = render((path,))
    assert "  port security: on; isolated no" in text
    assert "    filter on vnet0 (chain port-vnet0): its filter is in place" in text
    assert "    drops MAC:\n      frames whose source MAC is not %s\n" % MAC in text


def test_exceptions_take_out_their_group_and_isolation_is_compared():
    (path,) = paths(_secure_domain(allow=frozenset({"router"}), isolated=True), SECURE,
                    _secure_snap(filters=(PortFilter("vnet0", ("stp", "mac=" + MAC, "arp=" + MAC,
                                                               "nd=" + MAC, "tagged", "qinq")),)))
    sec = path.security
    assert "rogue servers" not in [g.group for g in sec.expected]
    assert sec.allow == ("router",) and sec.filter == "ok"
    assert sec.problems == ("tap vnet0 has isolated off, expected on",)
    assert sec.fix.startswith("restart the guest")
    assert not path.ok
    assert "exceptions (allow=) router; isolated yes" in render((path,))


def test_missing_and_differing_filter_say_so_with_the_fix():
    (missing,) = paths(_secure_domain(), SECURE, _secure_snap(filters=()))
    assert missing.security.filter == "missing"
    assert missing.security.problems == ("tap vnet0 has no port filter",)
    assert "    !! tap vnet0 has no port filter\n    fix: restart the guest" in render(
        (missing,))
    (differs,) = paths(_secure_domain(), SECURE,
                       _secure_snap(filters=(PortFilter("vnet0", ("stp", "mac=" + MAC)),)))
    assert differs.security.filter == "differs"
    assert differs.security.problems == (
        "the filter on tap vnet0 differs from the expected one (lacks arp=%s, nd=%s, ra, "
        "dhcp, dhcp6, tagged, qinq)" % (MAC, MAC),)
    assert "    found on the tap: stp, mac=%s" % MAC in render((differs,))
    (unread,) = paths(_secure_domain(), SECURE, _secure_snap(filters=None))
    assert unread.security.filter == "not read"
    assert "install nftables" in unread.security.fix


def test_exception_the_uplink_does_not_allow_is_refused():
    (path,) = paths(_secure_domain(allow=frozenset({"stp"})), SECURE, _secure_snap())
    sec = path.security
    assert sec.state == "refused" and not path.ok
    assert sec.problems[0].startswith("domain vm1, interface %s: allow='stp' is not permitted "
                                      "on uplink eth0" % MAC)


def test_port_security_off_and_a_leftover_filter():
    (off,) = paths(_secure_domain(), ACCESS, _secure_snap(filters=None))
    assert (off.security.state, off.security.filter, off.security.expected) == ("off", "", ())
    assert off.ok
    (left,) = paths(_secure_domain(), ACCESS, _secure_snap())
    assert left.security.filter == "unexpected" and not left.ok


def test_trunk_nic_filter_and_stopped_guest():
    conf = config_mod.parse(MIXED_CONF.replace("host-vlans = 10\nport-security = no\n",
                                               "host-vlans = 10\nport-security = yes\n"),
                            "vv.conf")
    dom = Domain("vm1", "u1", nics=(Nic(MAC, "bridge"),),
                 specs=(VlanSpec(MAC, "trunk", (5, 7), uplink="eth1",
                                 security=Security(guard_router=True)),))
    (path,) = paths(dom, conf, Snapshot((Link("eth1", master="br1"),), filters=()))
    sec = path.security
    assert sec.filter == "no tap" and not sec.problems
    assert [g.group for g in sec.expected] == ["control frames", "MAC", "rogue servers", "tags"]
    assert sec.expected[-1].drops == ("802.1ad (Q-in-Q) frames",)
