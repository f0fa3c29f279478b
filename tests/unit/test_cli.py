"""CLI behaviour that needs no kernel: usage errors, input checks, check-domain."""

import pytest

from virtvlan.cli.commands import main

DOMAIN = """<domain type='kvm'><name>vm1</name>
<devices><interface type='bridge'><mac address='52:54:00:AA:00:01'/>
<source bridge='br05'/></interface></devices>
<metadata><vv:vlan xmlns:vv='urn:virt-vlan:1'>
<vv:interface mac='52:54:00:aa:00:01' mode='access' vlan='5'/></vv:vlan></metadata>
</domain>"""


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "vv.conf"
    path.write_text("[uplink eth0]\nallowed-vlans = 5,7\n")
    return str(path)


def _err_lines(capsys):
    return capsys.readouterr().err.splitlines()


def test_usage_error_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as done:
        main(["plug", "vnet0"])
    assert done.value.code == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1
    assert lines[0].startswith("virt-vlan: one of the arguments --access --trunk is required")


def test_access_and_trunk_are_exclusive(capsys):
    with pytest.raises(SystemExit) as done:
        main(["plug", "vnet0", "--access", "5", "--trunk", "5,7"])
    assert done.value.code == 2


@pytest.mark.parametrize("args, message", [
    (["--access", "0"], "plug vnet0: VLAN 0 is the 802.1p priority tag"),
    (["--access", "x"], "plug vnet0: 'x' is not a VLAN number"),
    (["--trunk", "7-5"], "plug vnet0: range '7-5' is reversed (write 5-7)"),
    (["--access", "9"], "plug vnet0: VLAN 9 not allowed on uplink eth0"),
    (["--access", "5", "--uplink", "eth9"], "plug vnet0: unknown uplink 'eth9'"),
])
def test_plug_bad_input_exit_1_one_line(conf, capsys, args, message):
    assert main(["--config", conf, "plug", "vnet0"] + args) == 1
    lines = _err_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("virt-vlan: " + message)


def test_plug_without_config_says_how_to_write_it(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "none.conf"), "plug", "vnet0", "--access", "5"]) == 1
    (line,) = _err_lines(capsys)
    assert "none.conf does not exist; write it with at least '[uplink eth0]'" in line


def test_check_domain(tmp_path, conf, capsys):
    xml = tmp_path / "vm1.xml"
    xml.write_text(DOMAIN)
    assert main(["--config", conf, "check-domain", str(xml)]) == 0
    assert capsys.readouterr().out == (
        "domain vm1, interface 52:54:00:aa:00:01: access VLAN 5 on uplink eth0 -> bridge br05\n")
    xml.write_text(DOMAIN.replace("vlan='5'", "vlan='7' uplink='eth1'"))
    assert main(["--config", conf, "check-domain", str(xml)]) == 1
    (line,) = _err_lines(capsys)
    assert line.startswith("virt-vlan: domain vm1, interface 52:54:00:aa:00:01: unknown uplink "
                           "'eth1'")


def test_check_domain_reports_the_bridge_another_hosts_config_gives(tmp_path, capsys):
    # Host B: the same uplink is its second [uplink] section, so VLAN 5 is br15 there.
    other = tmp_path / "b.conf"
    other.write_text("[global]\ndefault-uplink = eth0\n\n[uplink eth9]\nallowed-vlans = 5\n\n"
                     "[uplink eth0]\nallowed-vlans = 5,7\n")
    xml = tmp_path / "vm1.xml"
    xml.write_text(DOMAIN)
    assert main(["--config", str(other), "check-domain", str(xml)]) == 0
    assert capsys.readouterr().out == (
        "domain vm1, interface 52:54:00:aa:00:01: access VLAN 5 on uplink eth0 -> bridge br15\n"
        "domain vm1, interface 52:54:00:aa:00:01: <source bridge='br05'> becomes 'br15' on "
        "a host with %s (its migrate/restore hook rewrites it)\n" % other)


def test_check_config_bad_file_names_line(tmp_path, capsys):
    path = tmp_path / "vv.conf"
    path.write_text("[uplink eth0]\nallowed-vlans = 5\nwirring = trunk\n")
    assert main(["--config", str(path), "check-config"]) == 1
    (line,) = _err_lines(capsys)
    assert line.startswith("virt-vlan: config %s:3: unknown key 'wirring'" % path)


def test_status_shows_our_bridges_and_adopted_ones_only(capsys, monkeypatch):
    from virtvlan.host import rtnl
    from virtvlan.model import Link, Snapshot

    snap = Snapshot(links=(
        Link("eth0", index=2), Link("virbr0", "bridge", 3), Link("vnet9", "tun", 4, master="virbr0"),
        Link("br05", "bridge", 5, mtu=9000, managed=True),
        Link("eth0.5", "vlan", 6, master="br05", vlan_id=5, parent="eth0", managed=True),
        Link("vnet1", "tun", 7, master="br05"),
        Link("br07", "bridge", 8),  # an admin's bridge fed by our VLAN device
        Link("eth0.7", "vlan", 9, master="br07", vlan_id=7, parent="eth0", managed=True)))
    monkeypatch.setattr(rtnl, "read_snapshot", lambda netns=None: snap)
    assert main(["status"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "br05 (managed, mtu 9000)",
        "  eth0.5          VLAN 5 on eth0, managed",
        "  vnet1           tun",
        "br07 (adopted, mtu 1500)",
        "  eth0.7          VLAN 7 on eth0, managed"]


def test_status_without_our_bridges_says_how_they_are_marked(capsys, monkeypatch):
    from virtvlan.host import rtnl
    from virtvlan.model import Link, Snapshot

    snap = Snapshot(links=(Link("virbr0", "bridge", 3), Link("vnet9", "tun", 4, master="virbr0")))
    monkeypatch.setattr(rtnl, "read_snapshot", lambda netns=None: snap)
    assert main(["status"]) == 0
    assert capsys.readouterr().out == (
        "no virt-vlan bridges on this host (devices are marked with alias 'virt-vlan:managed')\n")


# --- trunk filtering: plug --native, dry runs, status -------------------------

TRUNK = "[uplink eth1]\nwiring = trunk\nallowed-vlans = 5,7,9\n"


@pytest.fixture
def trunk_conf(tmp_path, monkeypatch):
    path = tmp_path / "trunk.conf"
    path.write_text(TRUNK)
    monkeypatch.setenv("VIRT_VLAN_LOCK", str(tmp_path / "lock"))
    return str(path)


def _host(monkeypatch, *links):
    from virtvlan.host import rtnl
    from virtvlan.model import Snapshot

    snap = Snapshot(links=links)
    monkeypatch.setattr(rtnl, "read_snapshot", lambda netns=None: snap)
    return snap


@pytest.mark.parametrize("args, message", [
    (["--access", "5", "--native", "7"], "plug vnet0: --native goes with --trunk only"),
    (["--trunk", "5,7", "--native", "7"], "plug vnet0: --native 7 is also in --trunk 5,7"),
    (["--trunk", "5", "--native", "8"], "plug vnet0: VLAN 8 not allowed on uplink eth1"),
    (["--trunk", "5", "--native", "x"], "plug vnet0: 'x' is not a VLAN number"),
])
def test_plug_native_bad_input_exit_1_one_line(trunk_conf, capsys, args, message):
    assert main(["--config", trunk_conf, "plug", "vnet0"] + args) == 1
    lines = _err_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("virt-vlan: " + message)


def test_plug_trunk_native_dry_run_prints_bridge_commands(trunk_conf, capsys, monkeypatch):
    from virtvlan.model import Link

    _host(monkeypatch, Link("eth1", index=2, mac="52:54:00:aa:00:01"),
          Link("vnet0", "tun", 3))
    assert main(["--config", trunk_conf, "plug", "vnet0", "--trunk", "5,7", "--native", "9",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ip link add name br0 mtu 1500 address 52:54:00:aa:00:01 type bridge")
    assert out[-10:] == [
        "ip link set dev eth1 master br0",
        "ip link set dev vnet0 master br0",
        "bridge vlan del dev vnet0 vid 1",
        "bridge vlan add dev vnet0 vid 9 pvid untagged",
        "bridge vlan add dev vnet0 vid 5",
        "bridge vlan add dev vnet0 vid 7",
        "bridge vlan add dev eth1 vid 5",
        "bridge vlan add dev eth1 vid 7",
        "bridge vlan add dev eth1 vid 9",
        "ip link set dev br0 type bridge vlan_filtering 1"]


def test_status_shows_trunk_filtering_and_port_vlans(trunk_conf, capsys, monkeypatch):
    from virtvlan.model import Link, PortVlans

    def pv(tagged=(), untagged=(), pvid=None):
        return PortVlans(frozenset(tagged), frozenset(untagged), pvid)

    _host(monkeypatch,
          Link("br0", "bridge", 2, managed=True, vlan_filtering=True,
               vlans=pv({5}, {1}, 1)),
          Link("eth1", index=3, master="br0", vlans=pv({5, 7, 8, 9}, {1}, 1)),
          Link("vnet0", "tun", 4, master="br0", vlans=pv({5, 7}, {9}, 9)),
          Link("vnet1", "tun", 5, master="br0", vlans=pv()),
          Link("br0.5", "vlan", 6, vlan_id=5, parent="br0", managed=True, master="br05"),
          Link("br05", "bridge", 7, managed=True))
    assert main(["--config", trunk_conf, "status"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "br0 (managed, mtu 1500, trunk, vlan_filtering 1, default_pvid 1)",
        "  eth1            device, pvid 1, vlans 1,5,7-9, untagged 1",
        "  vnet0           tun, pvid 9, vlans 5,7,9, untagged 9",
        "  vnet1           tun, pvid none, vlans none",
        "  br0 (self)      pvid 1, vlans 1,5, untagged 1",
        "br05 (managed, mtu 1500)",
        "  br0.5           VLAN 5 on br0, managed"]


def test_status_warns_about_an_adopted_trunk_bridge_that_does_not_filter(trunk_conf, capsys,
                                                                       monkeypatch):
    from virtvlan.model import Link, PortVlans

    default = PortVlans(frozenset(), frozenset({1}), 1)
    _host(monkeypatch, Link("br0", "bridge", 2, vlans=default),
          Link("eth1", index=3, master="br0", vlans=default),
          Link("vnet0", "tun", 4, master="br0", vlans=default))
    assert main(["--config", trunk_conf, "status"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "br0 (adopted, mtu 1500, trunk, vlan_filtering 0, default_pvid 1)",
        "  warning: br0 does not filter VLANs, so its trunk guests see every VLAN of the wire, "
        "not only their list; set trunk-filtering = yes in [uplink eth1] to enforce them",
        "  eth1            device, pvid 1, vlans 1, untagged 1",
        "  vnet0           tun, pvid 1, vlans 1, untagged 1",
        "  br0 (self)      pvid 1, vlans 1, untagged 1"]


def test_plug_onto_an_unfiltered_adopted_bridge_warns_in_the_log_only(trunk_conf, capsys,
                                                                     monkeypatch, caplog):
    from virtvlan.model import Link, PortVlans

    default = PortVlans(frozenset(), frozenset({1}), 1)
    _host(monkeypatch, Link("br0", "bridge", 2, vlans=default),
          Link("eth1", index=3, master="br0", vlans=default), Link("vnet0", "tun", 4))
    assert main(["--config", trunk_conf, "plug", "vnet0", "--trunk", "5,7", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == ["ip link set dev vnet0 master br0"]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [(
        "WARNING", "plug vnet0: trunk bridge br0 does not filter VLANs (an adopted bridge): "
        "vnet0 sees and can send on every VLAN of eth1, not only 5,7; set trunk-filtering = "
        "yes in [uplink eth1] of %s to enforce the list" % trunk_conf)]
