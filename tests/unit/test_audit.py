"""`virt-vlan check` findings on hand-built snapshots: each finding's positive
and negative case, the exit codes and the command's JSON shape."""

import json

import pytest

from conftest import ACCESS_CONF, MIXED_CONF, TRUNK_CONF
from virtvlan.parse import config as config_mod
from virtvlan.checks.audit import PROBLEM, WARNING, Finding, audit, exit_code, table
from virtvlan.parse.metadata import Domain, Nic, VlanSpec
from virtvlan.model import Link, PortVlans, Snapshot

ACCESS = config_mod.parse(ACCESS_CONF, "/etc/virt-vlan/virt-vlan.conf")
TRUNK = config_mod.parse(TRUNK_CONF, "/etc/virt-vlan/virt-vlan.conf")
MIXED = config_mod.parse(MIXED_CONF, "/etc/virt-vlan/virt-vlan.conf")
MAC = "52:54:00:00:00:01"


def _clean_access(**tap) -> Snapshot:
    """eth0 with eth0.5 feeding br05, guest tap vnet0 on br05: all as virt-vlan makes it."""
    return Snapshot((
        Link("eth0"),
        Link("eth0.5", kind="vlan", vlan_id=5, parent="eth0", master="br05", managed=True),
        Link("br05", kind="bridge", managed=True),
        Link("vnet0", kind="tun", **dict({"master": "br05"}, **tap)),
    ))


def _domain(mode="access", vlans=(5,), source="br05", tap="vnet0", native=None,
            uplink=None) -> Domain:
    return Domain("vm1", "uuid-1", nics=(Nic(MAC, "bridge", target=tap, source_bridge=source),),
                  specs=(VlanSpec(MAC, mode, tuple(vlans), uplink=uplink, native=native),))


def _whats(findings):
    return [(f.severity, f.what) for f in findings]


def test_clean_access_host_has_no_findings():
    found = audit(_clean_access(), ACCESS, [_domain()])
    assert found == ()
    assert exit_code(found) == 0
    assert table(found) == "OK: no findings"


# --- seed 004: VLAN device on a bridge port ------------------------------------------

def test_vlan_device_on_bridge_port_is_a_problem_naming_vlan_and_bridge():
    snap = Snapshot((
        Link("eth0", master="br0"),
        Link("br0", kind="bridge"),
        Link("eth0.5", kind="vlan", vlan_id=5, parent="eth0"),
        Link("vnet3", kind="tun", master="br0"),
    ))
    found = audit(snap, None, None)
    assert _whats(found) == [(PROBLEM, "VLAN device eth0.5 takes VLAN 5 from bridge br0")]
    (f,) = found
    assert "guests on br0 lose VLAN 5" in f.why
    assert f.fix.startswith("ip link del eth0.5;")
    assert exit_code(found) == 2


def test_vlan_device_on_free_nic_is_not_the_mix():
    snap = Snapshot((Link("eth0"), Link("eth0.5", kind="vlan", vlan_id=5, parent="eth0")))
    assert audit(snap, None, None) == ()


# --- seed 000: VLAN device on the wrong parent -----------------------------------------

PETH_CONF = """\
[uplink xen1]
device = peth1
allowed-vlans = 49-52
"""


def test_xen_rename_vlan_on_eth1_when_device_is_peth1():
    config = config_mod.parse(PETH_CONF, "vv.conf")
    snap = Snapshot((
        Link("peth1", master="xenbr1"),  # Xen's network-bridge: physical NIC renamed
        Link("xenbr1", kind="bridge"),
        Link("eth1", kind="veth"),
        Link("peth1.49", kind="vlan", vlan_id=49, parent="peth1"),
        Link("eth1.52", kind="vlan", vlan_id=52, parent="eth1"),
    ))
    found = [f for f in audit(snap, config, None) if "not on uplink device" in f.what]
    assert _whats(found) == [(WARNING, "VLAN device eth1.52 sits on eth1, not on uplink device "
                                       "peth1")]
    assert "Xen's network-bridge rename" in found[0].why


def test_feed_name_on_wrong_parent_is_a_problem():
    config = config_mod.parse(PETH_CONF, "vv.conf")
    snap = Snapshot((Link("peth1"), Link("eth1"),
                     Link("peth1.52", kind="vlan", vlan_id=52, parent="eth1", master="br052"),
                     Link("br052", kind="bridge")))
    found = audit(snap, config, None)
    assert _whats(found) == [(PROBLEM, "VLAN device peth1.52 sits on eth1, not on uplink "
                                       "device peth1")]
    assert "guests on br052 see nothing of VLAN 52" in found[0].why


def test_vlan_devices_on_the_configured_device_are_fine():
    config = config_mod.parse(PETH_CONF, "vv.conf")
    snap = Snapshot((Link("peth1"), Link("eth1", kind="veth"),
                     Link("peth1.52", kind="vlan", vlan_id=52, parent="peth1")))
    assert audit(snap, config, None) == ()


def test_missing_uplink_device_is_a_problem():
    snap = Snapshot((Link("eth1"),))
    assert _whats(audit(snap, ACCESS, None)) == [(PROBLEM, "uplink device eth0 does not exist")]


# --- guests: tap off its bridge, <source bridge> differs --------------------------------

def test_tap_not_on_its_bridge_is_a_problem():
    snap = _clean_access(master="br07")
    snap = snap.with_link(Link("br07", kind="bridge"))
    found = audit(snap, ACCESS, [_domain()])
    assert _whats(found) == [(PROBLEM, "tap vnet0 is on br07, not on its bridge br05")]
    assert found[0].fix == "virt-vlan plug vnet0 --access 5 --uplink eth0"
    # The same host without libvirt's answer: no guest checks, and br05 then
    # looks unused only if nothing is on it (vnet0 is a port of br07 here).
    assert _whats(audit(snap, ACCESS, None)) == [(WARNING, "bridge br05 has no guest")]


def test_tap_missing_is_a_problem():
    snap = Snapshot(tuple(l for l in _clean_access() if l.name != "vnet0"))
    found = audit(snap, ACCESS, [_domain()])
    assert _whats(found) == [(PROBLEM, "tap vnet0 does not exist")]
    assert found[0].where == "domain vm1, interface %s, tap vnet0" % MAC
    assert found[0].fix == "virsh domiflist vm1; restart the guest if the tap is gone"


def test_source_bridge_differs_from_target_is_a_warning():
    found = audit(_clean_access(), ACCESS, [_domain(source="virbr0")])
    assert _whats(found) == [(WARNING, "domain vm1, interface %s has <source bridge='virbr0'>, "
                                       "its target is br05" % MAC)]
    assert "libvirtd restarts" in found[0].why
    assert exit_code(found) == 1


# --- persistent definitions (a guest moved here with --persistent) --------------------

def test_definition_naming_another_hosts_bridge_is_a_warning_with_the_retag():
    """virsh migrate --persistent copies the source's definition without the
    migrate hook: its <source bridge> is the other host's (br15 there)."""
    defined = _domain(mode="trunk", vlans=(5, 7), native=100, source="br15", tap=None)
    found = [f for f in audit(_clean_access(), TRUNK, [], defined=[defined])
             if "persistent" in f.where]
    assert _whats(found) == [(WARNING, "domain vm1, interface %s has <source bridge='br15'> in "
                                       "its persistent definition; this host uses br0" % MAC)]
    assert found[0].where == "domain vm1 (persistent definition)"
    assert "start fails where that bridge does not exist" in found[0].why
    assert found[0].fix.startswith("virt-vlan set vm1 --mac %s --trunk 5,7 --native 100 --config"
                                   % MAC)
    assert exit_code(found) == 1


def test_definition_naming_this_hosts_bridge_is_clean():
    assert audit(_clean_access(), ACCESS, [_domain()], defined=[_domain(tap=None)]) == ()


def test_definition_this_host_refuses_is_a_warning_naming_the_refusal():
    found = audit(_clean_access(), ACCESS, [], defined=[_domain(vlans=(9,), tap=None)])
    assert _whats(found) == [(WARNING, "domain vm1's definition is refused by this host's config")]
    assert "VLAN 9" in found[0].fix


def test_definitions_are_not_judged_without_a_config():
    found = audit(_clean_access(), None, [], defined=[_domain(source="br15", tap=None)])
    assert [f for f in found if "persistent" in f.where] == []


def test_untagged_domains_are_ignored():
    found = audit(_clean_access(), ACCESS, [Domain("plain", "u2", nics=(Nic(MAC, "bridge"),))])
    assert found == ()


def test_tagged_guest_without_config_is_a_problem():
    found = audit(_clean_access(), None, [_domain()])
    assert (PROBLEM, "domain vm1 is tagged but the host has no virt-vlan config") in _whats(found)


def test_trunk_tap_lacking_bridge_vlans_on_filtering_bridge():
    def snap(vlans):
        return Snapshot((
            Link("eth1", master="br0"),
            Link("br0", kind="bridge", vlan_filtering=True, managed=True, vlans=PortVlans()),
            Link("vnet3", kind="tun", master="br0", vlans=vlans),
        ))
    dom = _domain(mode="trunk", vlans=(5, 7), source="br0", tap="vnet3", native=100)
    good = PortVlans(tagged=frozenset({5, 7}), untagged=frozenset({100}), pvid=100)
    assert audit(snap(good), TRUNK, [dom]) == ()
    bad = PortVlans(tagged=frozenset({5}), untagged=frozenset(), pvid=None)
    found = audit(snap(bad), TRUNK, [dom])
    assert _whats(found) == [
        (PROBLEM, "tap vnet3 does not carry VLAN 7 tagged on br0"),
        (PROBLEM, "tap vnet3 does not have native VLAN 100 as its untagged PVID (PVID none)")]
    assert found[0].fix == "virt-vlan plug vnet3 --trunk 5,7 --native 100 --uplink eth1"


# --- unused virt-vlan devices ---------------------------------------------------------

def test_managed_bridge_without_guest_is_unused():
    snap = Snapshot(tuple(l for l in _clean_access() if l.name != "vnet0"))
    found = audit(snap, ACCESS, [])
    assert _whats(found) == [(WARNING, "bridge br05 has no guest")]
    assert found[0].fix.startswith("virt-vlan cleanup")


def test_unused_bridge_not_flagged_when_reserved_or_kept_or_admins():
    snap = Snapshot(tuple(l for l in _clean_access() if l.name != "vnet0"))
    assert audit(snap, ACCESS, [], reserved=frozenset({"br05"})) == ()
    keep = config_mod.parse(ACCESS_CONF + "keep-empty-bridges = yes\n", "vv.conf")
    assert audit(snap, keep, []) == ()
    admins = Snapshot(tuple(Link(l.name, kind=l.kind, vlan_id=l.vlan_id, parent=l.parent,
                                 master=l.master) for l in snap))
    assert audit(admins, ACCESS, []) == ()


def test_managed_vlan_device_without_bridge_is_unused():
    snap = Snapshot((Link("eth0"), Link("eth0.7", kind="vlan", vlan_id=7, parent="eth0",
                                        managed=True)))
    assert _whats(audit(snap, ACCESS, None)) == [(WARNING, "VLAN device eth0.7 feeds no bridge")]
    # A host VLAN (trunk wiring's host-vlans) is the host's: never "unused".
    snap = Snapshot((Link("eth0"), Link("eth1", master="br1"), Link("br1", kind="bridge", managed=True,
                                                      vlan_filtering=True),
                     Link("br1.10", kind="vlan", vlan_id=10, parent="br1", managed=True)))
    assert audit(snap, MIXED, None) == ()


# --- MTU along a path (seed 003) --------------------------------------------------------

def test_mtu_mismatch_along_access_path():
    # The NIC cannot carry tagged full-size frames: its MTU is 1496, so is the
    # feed's and the bridge's, but the guest tap kept 1500.
    snap = Snapshot((
        Link("eth0", mtu=1496),
        Link("eth0.5", kind="vlan", vlan_id=5, parent="eth0", master="br05", managed=True,
             mtu=1496),
        Link("br05", kind="bridge", managed=True, mtu=1496),
        Link("vnet0", kind="tun", master="br05", mtu=1500),
    ))
    found = audit(snap, ACCESS, [_domain()])
    assert _whats(found) == [(WARNING, "MTU differs along the path of br05: br05 1496, "
                                       "eth0.5 1496, vnet0 1500, eth0 1496")]
    assert "larger than 1496 bytes from vnet0" in found[0].why
    assert "mtu 1496 for vnet0" in found[0].fix


def test_bridge_mtu_differs_from_configured_mtu():
    config = config_mod.parse(ACCESS_CONF + "mtu = 9000\n", "vv.conf")
    found = audit(_clean_access(), config, [_domain()])
    assert _whats(found) == [(WARNING, "bridge br05 has MTU 1500, [uplink eth0] sets mtu = 9000")]


# --- bridge settings --------------------------------------------------------------------

@pytest.mark.parametrize("field, what", [
    ("nf_call", "bridge br05 passes bridged frames through iptables (br_netfilter)"),
    ("stp", "bridge br05 runs STP"),
])
def test_netfilter_and_stp_on_virt_vlan_bridge(field, what):
    snap = _clean_access().changed("br05", **{field: True})
    assert _whats(audit(snap, ACCESS, [_domain()])) == [(WARNING, what)]


def test_netfilter_on_other_bridges_is_not_ours():
    snap = _clean_access().with_link(Link("virbr0", kind="bridge", nf_call=True, stp=True))
    assert audit(snap, ACCESS, [_domain()]) == ()


def test_trunk_bridge_without_vlan_filtering():
    def snap(filtering):
        return Snapshot((Link("eth1", master="br0"),
                         Link("br0", kind="bridge", vlan_filtering=filtering)))
    found = audit(snap(False), TRUNK, None)
    assert _whats(found) == [(WARNING, "trunk bridge br0 does not filter VLANs")]
    assert "trunk-filtering = yes in [uplink eth1]" in found[0].fix
    assert audit(snap(True), TRUNK, None) == ()


# --- exit codes and output --------------------------------------------------------------

def test_exit_codes_follow_worst_finding():
    w = Finding(WARNING, "w", "x", "y", "z")
    p = Finding(PROBLEM, "p", "x", "y", "z")
    assert [exit_code(()), exit_code((w,)), exit_code((w, p))] == [0, 1, 2]


def test_table_is_aligned_one_line_per_field():
    lines = table((Finding(PROBLEM, "p", "x", "y", "z"),
                   Finding(WARNING, "w", "a", "b", "c"))).splitlines()
    assert lines[0] == "PROBLEM  what:  p"
    assert lines[3] == "         fix:   z"
    assert lines[4] == "WARNING  what:  w"


@pytest.fixture
def host(monkeypatch, tmp_path):
    """The check command on a hand-built host: the snapshot and the domains
    are data; libvirt is `test:///default` (real libvirt code, no host)."""
    conf = tmp_path / "vv.conf"
    conf.write_text(ACCESS_CONF)
    state = {"snap": _clean_access()}
    monkeypatch.setattr("virtvlan.host.rtnl.read_snapshot", lambda netns=None: state["snap"])
    monkeypatch.setenv("VIRT_VLAN_RUN_DIR", str(tmp_path / "run"))
    state["conf"] = str(conf)
    return state


@pytest.mark.parametrize("change, code", [
    ({}, 0),
    ({"stp": True}, 1),
])
def test_check_command_exit_codes_and_json(host, capsys, change, code):
    from virtvlan.cli.commands import main

    host["snap"] = host["snap"].changed("br05", **change)
    assert main(["--config", host["conf"], "check", "-c", "test:///default", "--json"]) == code
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"status", "libvirt", "config", "notes", "findings"}
    assert out["status"] == code and out["libvirt"] is True
    for finding in out["findings"]:
        assert set(finding) == {"severity", "what", "where", "why", "fix"}
    assert len(out["findings"]) == code


def test_check_command_problem_exit_2_table(host, capsys):
    from virtvlan.cli.commands import main

    host["snap"] = host["snap"].with_link(Link("br0", kind="bridge")).changed(
        "eth0", master="br0")
    assert main(["--config", host["conf"], "check", "-c", "test:///default"]) == 2
    out = capsys.readouterr().out
    assert "PROBLEM  what:  VLAN device eth0.5 takes VLAN 5 from bridge br0" in out


@pytest.mark.parametrize("where", ["global", "command"])
def test_check_uri_before_or_after_the_command(host, capsys, tagged_test_domain, where):
    """`virt-vlan -c URI check` (virsh habit) and `virt-vlan check -c URI` both
    reach libvirt: the tagged test domain's tap is found missing (exit 2)."""
    from virtvlan.cli.commands import main

    uri = ["-c", "test:///default"]
    args = (uri + ["--config", host["conf"], "check", "--json"] if where == "global"
            else ["--config", host["conf"], "check", "--json"] + uri)
    assert main(args) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["libvirt"] is True
    assert [(f["what"], f["where"]) for f in out["findings"]] == [
        ("tap testnet0 does not exist", "domain test, interface aa:bb:cc:dd:ee:ff, tap testnet0")]


def test_check_without_libvirt_says_host_checks_only(host, capsys):
    from virtvlan.cli.commands import main

    code = main(["--config", host["conf"], "check", "-c", "qemu+unix:///system?socket=/nonexistent",
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["libvirt"] is False
    assert out["notes"][0].startswith("libvirt did not answer (")
    assert out["notes"][0].endswith("): host checks only")


@pytest.fixture
def tagged_test_domain():
    """libvirt's test:///default domain "test" (running, NIC aa:bb:cc:dd:ee:ff on
    tap testnet0) tagged access VLAN 5 through the metadata API. The test
    driver keeps its state while a connection to it is open."""
    from virtvlan.virt import adapter as virt

    conn = virt.connect("test:///default")
    guest = conn.guest("test")
    guest.set_metadata(b"<vlan><interface mac='aa:bb:cc:dd:ee:ff' mode='access' vlan='5'/>"
                       b"</vlan>", virt.AFFECT_LIVE)
    try:
        yield guest
    finally:
        guest.set_metadata(None, virt.AFFECT_LIVE)
        conn.close()


@pytest.mark.parametrize("master, code, whats", [
    ("br05", 0, []),
    ("br07", 2, [(PROBLEM, "tap testnet0 is on br07, not on its bridge br05")]),
])
def test_check_command_reads_running_tagged_domains(host, capsys, tagged_test_domain, master,
                                                    code, whats):
    from virtvlan.cli.commands import main

    host["snap"] = Snapshot(tuple(l for l in host["snap"] if l.name != "vnet0") + (
        Link("br07", kind="bridge"), Link("testnet0", kind="tun", master=master)))
    assert main(["--config", host["conf"], "check", "-c", "test:///default", "--json"]) == code
    out = json.loads(capsys.readouterr().out)
    assert [(f["severity"], f["what"]) for f in out["findings"]] == whats


def test_check_with_refused_config_is_a_problem(host, capsys, tmp_path):
    from virtvlan.cli.commands import main

    bad = tmp_path / "bad.conf"
    bad.write_text("[uplink eth0]\nallowed-vlans = 4095\n")
    assert main(["--config", str(bad), "check", "-c", "test:///default", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    (finding,) = out["findings"]
    assert finding["what"] == "the host config is refused"
    assert finding["fix"].startswith("config %s:2: allowed-vlans" % bad)
    assert out["notes"] == ["no usable host config: checks that need it were skipped"]


def test_check_running_domain_with_refused_metadata(host, capsys):
    """Metadata the hook refuses (VLAN 4095) on the running test domain."""
    from virtvlan.virt import adapter as virt
    from virtvlan.cli.commands import main

    conn = virt.connect("test:///default")
    guest = conn.guest("test")
    guest.set_metadata(b"<vlan><interface mac='aa:bb:cc:dd:ee:ff' mode='access' vlan='4095'/>"
                       b"</vlan>", virt.AFFECT_LIVE)
    try:
        assert main(["--config", host["conf"], "check", "-c", "test:///default", "--json"]) == 2
    finally:
        guest.set_metadata(None, virt.AFFECT_LIVE)
        conn.close()
    (finding,) = json.loads(capsys.readouterr().out)["findings"]
    assert finding["where"] == "domain test, interface aa:bb:cc:dd:ee:ff"
    assert "VLAN 4095 is reserved by 802.1Q" in finding["fix"]


def test_check_help_states_nagios_convention(capsys):
    from virtvlan.cli.commands import main

    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0 no findings, 1 warnings only, 2 problems" in text and "Nagios" in text


def test_device_the_agent_stopped_rebuilding_is_a_problem():
    found = audit(_clean_access(), ACCESS, [_domain()], held=[("br1.5", 6, 60.0)])
    assert _whats(found) == [(PROBLEM, "the agent stopped rebuilding br1.5")]
    assert "deleted 6 times within 60 s" in found[0].why
    assert exit_code(found) == 2


def test_check_command_reports_the_agents_holds(host, capsys):
    import time

    from virtvlan.agent import monitor
    from virtvlan.cli.commands import main

    # The file as the agent's monitor writes it (one hold in force, one over).
    now = time.time()
    monitor.write_holds([monitor.HeldDevice("br1.5", 6, 60.0, now - 10, now + 300),
                         monitor.HeldDevice("br1.7", 6, 60.0, now - 900, now - 600)])
    assert main(["--config", host["conf"], "check", "-c", "test:///default", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert [f["where"] for f in out["findings"]] == ["br1.5"]


def test_check_command_reads_persistent_definitions(host, capsys):
    """A defined (not running) guest whose definition names another host's
    bridge, as `virsh migrate --persistent` leaves it: check warns (exit 1)
    with the retag that fixes it; once fixed, it is clean."""
    import libvirt

    from virtvlan.cli.commands import main

    def define(bridge: str) -> None:
        conn.defineXML(
            "<domain type='test'><name>moved</name>"
            "<uuid>6c1c0c2e-2d2b-4c55-9d6b-2f0e6b1a7e11</uuid><memory>8192</memory>"
            "<os><type>hvm</type></os><metadata><vv:vlan xmlns:vv='urn:virt-vlan:1'><vv:interface "
            "mac='52:54:00:00:00:09' mode='access' vlan='7'/></vv:vlan></metadata>"
            "<devices><interface type='bridge'><mac address='52:54:00:00:00:09'/>"
            "<source bridge='%s'/></interface></devices></domain>" % bridge)

    conn = libvirt.open("test:///default")
    try:
        define("br17")
        assert main(["--config", host["conf"], "check", "-c", "test:///default", "--json"]) == 1
        (found,) = json.loads(capsys.readouterr().out)["findings"]
        assert found["what"] == ("domain moved, interface 52:54:00:00:00:09 has <source "
                                 "bridge='br17'> in its persistent definition; this host uses "
                                 "br07")
        assert found["fix"].startswith("virt-vlan set moved --mac 52:54:00:00:00:09 --access 7 "
                                       "--config")
        define("br07")
        assert main(["--config", host["conf"], "check", "-c", "test:///default", "--json"]) == 0
    finally:
        conn.lookupByName("moved").undefine()
        conn.close()
