"""The domain commands (set, clear, show, list, attach, detach) against libvirt's
test driver: real libvirt code, in-process, no daemon.

`test:///default` keeps its state while at least one connection is open and
starts afresh after the last one closes: the `libvirt_test` fixture holds a
connection for the test (the commands open and close their own), and is the
oracle too: metadata and XML are read back through plain libvirt-python and
lxml, not through virtvlan.

Host checks (engine.check) run against this host, read as the hooks read
it (rtnl), through a config whose access uplink device is `lo`, which every
network namespace has; for the trunk uplink a NIC `eth1` is added to that
snapshot at the rtnl boundary (no second device can be made here without
changing the host). Commands that would change the host refuse before they
do (the test driver's taps do not exist), which is what those tests check.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest

from conftest import run_dropin
from lxml import etree

from virtvlan.parse import config as config_mod
from virtvlan.checks import wiring
from virtvlan.cli import nics
from virtvlan.host import rtnl
from virtvlan.cli.commands import main
from virtvlan.parse.metadata import VlanSpec, parse_domain
from virtvlan.model import Link, Snapshot

URI = "test:///default"
NS = "urn:virt-vlan:1"
SRC = Path(__file__).resolve().parents[2] / "src"
MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
TEST_MAC = "aa:bb:cc:dd:ee:ff"  # the NIC of the driver's running domain "test"

CONF = """\
[uplink eth0]
device = lo
allowed-vlans = 5,7,100-110

[uplink etrk]
device = eth1
wiring = trunk
trunk-bridge = br9
allowed-vlans = 5,7,100-110
"""

VM1 = """<domain type='test'><name>vm1</name><memory>1024</memory><os><type>hvm</type></os>
<devices>
<interface type='bridge'><mac address='%s'/><source bridge='virbr0'/></interface>
<interface type='bridge'><mac address='%s'/><source bridge='virbr0'/></interface>
</devices></domain>""" % (MAC1, MAC2)


@pytest.fixture(autouse=True)
def host_with_eth1(monkeypatch):
    """This host as rtnl reads it, plus a NIC eth1 for the trunk uplink."""
    real = rtnl.read_snapshot
    monkeypatch.setattr(rtnl, "read_snapshot",
                        lambda *a, **k: real(*a, **k).with_link(Link("eth1", kind="device")))


def _reset(c):
    # The driver starts afresh when its last connection closes, but a domain
    # object still referenced (by a traceback, say) keeps it open: undo what
    # a test may have left instead of relying on that.
    for dom in c.listAllDomains(0):
        if dom.name() != "test":
            dom.undefine()
    test = c.lookupByName("test")
    for flags in (libvirt.VIR_DOMAIN_AFFECT_LIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG):
        test.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, NS, flags)


@pytest.fixture
def conn():
    """A connection to the test driver, held for the test; vm1 defined (shut off)."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    c = libvirt.open(URI)
    _reset(c)
    c.defineXML(VM1)
    yield c
    _reset(c)
    c.close()


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "vv.conf"
    path.write_text(CONF)
    return str(path)


def vv(conf, *args):
    return main(["--config", conf, "-c", URI] + list(args))


def entries(conn, name, flags=libvirt.VIR_DOMAIN_AFFECT_CONFIG):
    """The <vv:interface> attributes in the domain XML (live or inactive)."""
    dom = conn.lookupByName(name)
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE
                      if flags == libvirt.VIR_DOMAIN_AFFECT_CONFIG else 0)
    root = etree.fromstring(xml.encode())
    return [dict(e.attrib) for e in root.iterfind("metadata/{%s}vlan/{%s}interface" % (NS, NS))]


def metadata(conn, name, flags):
    try:
        return conn.lookupByName(name).metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS, flags)
    except libvirt.libvirtError as err:
        assert err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA
        return None


def err_line(capsys):
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("virt-vlan: ")
    return line


# --- set / clear round trips --------------------------------------------------------

def test_set_writes_metadata_through_libvirt_with_prefix_vv(conn, conf, capsys):
    assert vv(conf, "set", "vm1", "--mac", MAC1, "--access", "5") == 0
    assert entries(conn, "vm1") == [{"mac": MAC1, "mode": "access", "vlan": "5"}]
    raw = conn.lookupByName("vm1").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert '<vv:vlan xmlns:vv="urn:virt-vlan:1">' in raw
    out = capsys.readouterr().out
    assert "access VLAN 5 on uplink eth0 -> bridge br05 (persistent)" in out


def test_set_replaces_the_entry_of_its_mac_and_keeps_others(conn, conf):
    assert vv(conf, "set", "vm1", "--mac", MAC1, "--access", "5") == 0
    assert vv(conf, "set", "vm1", "--mac", MAC2.upper(), "--access", "7", "--uplink", "eth0") == 0
    assert vv(conf, "set", "vm1", "--mac", MAC1, "--trunk", "100-102,5", "--native", "7",
              "--uplink", "etrk") == 0
    assert entries(conn, "vm1") == [
        {"mac": MAC1, "mode": "trunk", "vlans": "5,100-102", "native": "7", "uplink": "etrk"},
        {"mac": MAC2, "mode": "access", "vlan": "7", "uplink": "eth0"},
    ]


def test_set_by_iface_position_and_by_uuid(conn, conf):
    uuid = conn.lookupByName("vm1").UUIDString()
    assert vv(conf, "set", uuid, "--iface", "1", "--access", "7") == 0
    assert entries(conn, "vm1") == [{"mac": MAC2, "mode": "access", "vlan": "7"}]


def test_clear_one_then_all(conn, conf, capsys):
    vv(conf, "set", "vm1", "--mac", MAC1, "--access", "5")
    vv(conf, "set", "vm1", "--mac", MAC2, "--access", "7")
    assert vv(conf, "clear", "vm1", "--mac", MAC1) == 0
    assert entries(conn, "vm1") == [{"mac": MAC2, "mode": "access", "vlan": "7"}]
    assert vv(conf, "clear", "vm1") == 0
    assert metadata(conn, "vm1", libvirt.VIR_DOMAIN_AFFECT_CONFIG) is None
    capsys.readouterr()
    assert vv(conf, "clear", "vm1") == 0
    assert "no virt-vlan entries; nothing to clear" in capsys.readouterr().out


def test_clear_removes_broken_metadata_that_set_refuses(conn, conf, capsys):
    dom = conn.lookupByName("vm1")
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    "<vlan><interface mac='%s' mode='access' vlan='4095'/></vlan>" % MAC1,
                    "vv", NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    assert vv(conf, "set", "vm1", "--mac", MAC2, "--access", "5") == 1
    assert "'virt-vlan clear vm1' removes" in err_line(capsys)
    assert vv(conf, "clear", "vm1") == 0
    assert metadata(conn, "vm1", libvirt.VIR_DOMAIN_AFFECT_CONFIG) is None


# --- --live / --config / --current ----------------------------------------------------

def test_current_on_a_stopped_guest_is_its_persistent_definition(conn, conf):
    assert vv(conf, "set", "vm1", "--mac", MAC1, "--access", "5", "--current") == 0
    assert entries(conn, "vm1") == [{"mac": MAC1, "mode": "access", "vlan": "5"}]


def test_live_on_a_stopped_guest_is_refused(conn, conf, capsys):
    assert vv(conf, "set", "vm1", "--mac", MAC1, "--access", "5", "--live") == 1
    assert "domain vm1 is not running" in err_line(capsys)
    assert metadata(conn, "vm1", libvirt.VIR_DOMAIN_AFFECT_CONFIG) is None


def test_config_on_a_running_guest_leaves_the_live_definition(conn, conf):
    assert vv(conf, "set", "test", "--mac", TEST_MAC, "--access", "7", "--config") == 0
    assert entries(conn, "test") == [{"mac": TEST_MAC, "mode": "access", "vlan": "7"}]
    assert metadata(conn, "test", libvirt.VIR_DOMAIN_AFFECT_LIVE) is None


def test_live_is_checked_with_the_tap_before_anything_is_written(conn, conf, capsys):
    # The test driver's guest "runs" with tap testnet0, which this host does
    # not have: the hook's planner refuses, so the live metadata stays as it
    # was and nothing is wired (also the default: --current on a running guest).
    for flags in (["--live"], [], ["--live", "--config"]):
        assert vv(conf, "set", "test", "--mac", TEST_MAC, "--access", "5", *flags) == 1
        assert "port testnet0 does not exist on this host" in err_line(capsys)
        assert metadata(conn, "test", libvirt.VIR_DOMAIN_AFFECT_LIVE) is None
        assert metadata(conn, "test", libvirt.VIR_DOMAIN_AFFECT_CONFIG) is None


def test_set_live_writes_the_live_metadata_after_libvirt_moved_the_tap(conn, conf, monkeypatch):
    # A running agent acts on libvirt's metadata-change event at once and
    # moves the tap itself; libvirt's device update of <source bridge> then
    # fails on a tap already on the new bridge. So: bridges, then the device
    # update, then the live metadata, then the taps and the cleanup.
    from virtvlan.cli import domains
    from virtvlan.apply import engine
    from virtvlan.virt import adapter as virt

    calls = []
    real_snapshot = rtnl.read_snapshot
    monkeypatch.setattr(rtnl, "read_snapshot", lambda *a, **k: real_snapshot(*a, **k).with_link(
        Link("testnet0", kind="tun")))
    monkeypatch.setattr(engine, "wire", lambda wants, config, why, **k: calls.append(
        ("wire", tuple(w.port for w in wants))))
    monkeypatch.setattr(engine, "release", lambda config, why, **k: calls.append(("release",)))
    monkeypatch.setattr(domains, "_point_source", lambda guest, xml, mac, bridge, flags: calls.append(
        ("point-source", mac, bridge, flags)))
    real_set = virt.Guest.set_metadata

    def set_metadata(self, element, flags):  # type: ignore[no-untyped-def]
        calls.append(("metadata", flags))
        return real_set(self, element, flags)
    monkeypatch.setattr(virt.Guest, "set_metadata", set_metadata)

    assert vv(conf, "set", "test", "--mac", TEST_MAC, "--access", "5", "--live") == 0
    assert calls == [("wire", (None,)), ("point-source", TEST_MAC, "br05", virt.AFFECT_LIVE),
                     ("metadata", virt.AFFECT_LIVE), ("wire", ("testnet0",)), ("release",)]
    assert entries(conn, "test", libvirt.VIR_DOMAIN_AFFECT_LIVE) == [
        {"mac": TEST_MAC, "mode": "access", "vlan": "5"}]


def test_clear_config_keeps_the_live_entry(conn, conf):
    dom = conn.lookupByName("test")
    element = "<vlan><interface mac='%s' mode='access' vlan='5'/></vlan>" % TEST_MAC
    for flags in (libvirt.VIR_DOMAIN_AFFECT_LIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG):
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, element, "vv", NS, flags)
    assert vv(conf, "clear", "test", "--config") == 0
    assert metadata(conn, "test", libvirt.VIR_DOMAIN_AFFECT_CONFIG) is None
    assert entries(conn, "test", libvirt.VIR_DOMAIN_AFFECT_LIVE) == [
        {"mac": TEST_MAC, "mode": "access", "vlan": "5"}]


@pytest.mark.parametrize("flags", [["--current", "--live"], ["--current", "--config"]])
def test_current_with_live_or_config_is_bad_usage(conn, conf, capsys, flags):
    with pytest.raises(SystemExit) as done:
        vv(conf, "set", "vm1", "--mac", MAC1, "--access", "5", *flags)
    assert done.value.code == 2
    assert "--current cannot be combined" in err_line(capsys)


# --- bad input: one line, exit 1, nothing written ---------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--mac", MAC1, "--access", "4095"],
     "domain vm1, interface %s: VLAN 4095 is reserved by 802.1Q" % MAC1),
    (["--mac", MAC1, "--access", "9"],
     "domain vm1, interface %s: VLAN 9 not allowed on uplink eth0" % MAC1),
    (["--mac", MAC1, "--access", "5", "--uplink", "eth9"],
     "domain vm1, interface %s: unknown uplink 'eth9'" % MAC1),
    (["--mac", MAC1, "--trunk", "5,7"],
     "domain vm1, interface %s: trunk mode needs uplink eth0 wired as trunk" % MAC1),
    (["--mac", MAC1, "--trunk", "5,7", "--native", "5", "--uplink", "etrk"],
     "domain vm1, interface %s: native='5' is also in vlans='5,7'" % MAC1),
    (["--mac", "52:54:00:00:00:09", "--access", "5"],
     "domain vm1, interface 52:54:00:00:00:09: the persistent definition has no <interface> "
     "with this MAC"),
    (["--iface", "2", "--access", "5"], "domain vm1: --iface 2, but its persistent definition "
     "has 2 interface(s)"),
])
def test_set_bad_input_exit_1_one_line_nothing_written(conn, conf, capsys, args, message):
    assert vv(conf, "set", "vm1", *args) == 1
    assert err_line(capsys).startswith("virt-vlan: " + message)
    assert metadata(conn, "vm1", libvirt.VIR_DOMAIN_AFFECT_CONFIG) is None


def test_unknown_domain(conn, conf, capsys):
    assert vv(conf, "show", "nope") == 1
    assert err_line(capsys) == ("virt-vlan: domain nope: no such domain at test:///default; "
                                "see 'virsh -c test:///default list --all' for names and UUIDs")


def test_libvirt_not_answering_names_the_uri_and_the_fix(conf, capsys):
    uri = "qemu+unix:///system?socket=/nonexistent/sock"
    assert main(["--config", conf, "-c", uri, "list"]) == 1
    line = err_line(capsys)
    assert line.startswith("virt-vlan: cannot connect to libvirt at %s: " % uri)
    assert "start the daemon" in line and "pass another URI with -c" in line


def test_no_host_config(conn, tmp_path, capsys):
    assert vv(str(tmp_path / "none.conf"), "set", "vm1", "--mac", MAC1, "--access", "5") == 1
    assert "none.conf does not exist" in err_line(capsys)


@pytest.mark.parametrize("args, message", [
    (["set", "vm1", "--access", "5"], "one of the arguments --mac --iface is required"),
    (["set", "vm1", "--mac", MAC1], "one of the arguments --access --trunk is required"),
    (["set", "vm1", "--mac", "52:54", "--access", "5"], "--mac '52:54' is not a MAC address"),
    (["set", "vm1", "--mac", MAC1, "--access", "5", "--native", "7"], "--native goes with --trunk"),
    (["set", "vm1", "--iface", "x", "--access", "5"], "argument --iface: invalid int value"),
    (["detach", "vm1"], "the following arguments are required: --mac"),
])
def test_bad_usage_exit_2_one_line_nothing_written(conn, conf, capsys, args, message):
    with pytest.raises(SystemExit) as done:
        vv(conf, *args)
    assert done.value.code == 2
    assert message in err_line(capsys)
    assert metadata(conn, "vm1", libvirt.VIR_DOMAIN_AFFECT_CONFIG) is None


def test_connect_option_after_the_command_too(conn, conf, capsys):
    assert main(["--config", conf, "show", "-c", URI, "vm1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["domain"] == "vm1"


# --- show / list ----------------------------------------------------------------------------

NIC_KEYS = {"mac", "type", "tap", "source", "mode", "vlans", "native", "uplink", "bridge",
            "status", "problems", "note"}


def test_show_json_shape(conn, conf, capsys):
    vv(conf, "set", "vm1", "--mac", MAC1, "--trunk", "100-102", "--native", "5", "--uplink", "etrk")
    capsys.readouterr()
    assert vv(conf, "show", "vm1", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == {"domain", "uuid", "state", "nics", "protection"}
    assert shown["domain"] == "vm1" and shown["state"] == "shut off"
    assert shown["uuid"] == conn.lookupByName("vm1").UUIDString()
    first, second = shown["nics"]
    assert set(first) == NIC_KEYS == set(second)
    assert first == {"mac": MAC1, "type": "bridge", "tap": None, "source": "virbr0",
                     "mode": "trunk", "vlans": [100, 101, 102], "native": 5, "uplink": "etrk",
                     "bridge": "br9", "status": "not running",
                     "problems": ["<source bridge> is virbr0, not br9"], "note": None}
    assert second["mac"] == MAC2 and second["mode"] is None and second["status"] == "untagged"


def test_show_table_is_aligned(conn, conf, capsys):
    vv(conf, "set", "vm1", "--mac", MAC1, "--access", "5")
    capsys.readouterr()
    assert vv(conf, "show", "vm1") == 0
    lines = capsys.readouterr().out.split("\n\n")[0].splitlines()  # the table, not protection
    assert lines[0].split() == ["MAC", "TAP", "MODE", "VLANS", "UPLINK", "BRIDGE", "SOURCE",
                                "STATE"]
    assert lines[1].split()[:7] == [MAC1, "-", "access", "5", "eth0", "br05", "virbr0"]
    assert lines[1].endswith("not running: <source bridge> is virbr0, not br05")
    assert lines[2].split() == [MAC2, "-", "-", "-", "-", "-", "virbr0", "untagged"]
    # Aligned: every column starts at the same offset on every line.
    for word in ("TAP", "MODE", "BRIDGE", "STATE"):
        col = lines[0].index(word)
        assert all(line[col - 2:col] == "  " and line[col] != " " for line in lines)


def test_show_of_a_running_guest_reports_the_host(conn, conf, capsys):
    # Written through libvirt directly: the guest "runs" in the test driver
    # with tap testnet0, which does not exist here, and br05 neither.
    conn.lookupByName("test").setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        "<vlan><interface mac='%s' mode='access' vlan='5'/></vlan>" % TEST_MAC, "vv", NS,
        libvirt.VIR_DOMAIN_AFFECT_LIVE)
    assert vv(conf, "show", "test", "--json") == 0
    (nic,) = json.loads(capsys.readouterr().out)["nics"]
    assert nic["status"] == "drift" and nic["tap"] == "testnet0"
    assert nic["source"] == "network default"
    assert nic["problems"] == ["feed lo.5 of br05 does not exist", "bridge br05 does not exist",
                               "tap testnet0 does not exist"]


def test_list_a_line_per_tagged_nic_and_json(conn, conf, capsys):
    vv(conf, "set", "vm1", "--mac", MAC1, "--access", "5")
    vv(conf, "set", "vm1", "--mac", MAC2, "--access", "7")
    capsys.readouterr()
    assert vv(conf, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["DOMAIN", "MAC"]
    assert [l.split()[:5] for l in lines[1:]] == [["vm1", MAC1, "-", "access", "5"],
                                                  ["vm1", MAC2, "-", "access", "7"]]
    assert vv(conf, "list", "--json") == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert set(entry) == {"domain", "uuid", "state", "nics"}
    assert [n["bridge"] for n in entry["nics"]] == ["br05", "br07"]
    assert all(set(n) == NIC_KEYS for n in entry["nics"])


def test_list_reports_invalid_metadata_and_goes_on(conn, conf, capsys):
    vv(conf, "set", "vm1", "--mac", MAC1, "--access", "5")
    conn.lookupByName("test").setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        "<vlan><interface mac='%s' mode='access' vlan='0'/></vlan>" % TEST_MAC, "vv", NS,
        libvirt.VIR_DOMAIN_AFFECT_LIVE)
    capsys.readouterr()
    assert vv(conf, "list", "--json") == 0
    listed = {e["domain"]: e for e in json.loads(capsys.readouterr().out)}
    assert "VLAN 0 is the 802.1p priority tag" in listed["test"]["error"]
    assert listed["vm1"]["nics"][0]["mac"] == MAC1
    assert vv(conf, "show", "test") == 1
    assert "domain test, interface %s: vlan='0'" % TEST_MAC in err_line(capsys)


def test_list_without_tagged_domains(conn, conf, capsys):
    assert vv(conf, "list") == 0
    assert "no domain has virt-vlan metadata" in capsys.readouterr().out
    assert vv(conf, "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


# --- attach / detach on a driver without device hot-plug ------------------------------------

def test_attach_writes_no_metadata_when_libvirt_refuses_the_device(conn, conf, capsys):
    # The metadata goes in only after the attach succeeded (the hook refuses
    # metadata naming a MAC the domain does not have).
    assert vv(conf, "attach", "vm1", "--access", "5", "--mac", "52:54:00:00:00:03",
              "--config") == 1
    assert "refused to attach the device" in err_line(capsys)
    assert metadata(conn, "vm1", libvirt.VIR_DOMAIN_AFFECT_CONFIG) is None


def test_attach_refuses_a_mac_the_domain_has(conn, conf, capsys):
    assert vv(conf, "attach", "vm1", "--access", "5", "--mac", MAC1) == 1
    assert "already has an interface with this MAC" in err_line(capsys)


def test_detach_unknown_mac(conn, conf, capsys):
    assert vv(conf, "detach", "vm1", "--mac", "52:54:00:00:00:09") == 1
    assert "the persistent definition has no interface with this MAC" in err_line(capsys)


def test_detach_restores_the_metadata_when_libvirt_refuses(conn, conf, capsys):
    vv(conf, "set", "vm1", "--mac", MAC1, "--access", "5")
    assert vv(conf, "detach", "vm1", "--mac", MAC1) == 1
    assert "refused to detach the device" in err_line(capsys)
    assert entries(conn, "vm1") == [{"mac": MAC1, "mode": "access", "vlan": "5"}]


# --- the hook path never imports libvirt ----------------------------------------------------


TAGGED = """<domain type='kvm'><name>vm1</name><uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
<metadata><vv:vlan xmlns:vv='urn:virt-vlan:1'>
<vv:interface mac='%s' mode='access' vlan='5'/></vv:vlan></metadata>
<devices><interface type='bridge'><mac address='%s'/><source bridge='br05'/></interface>
</devices></domain>""" % (MAC1, MAC1)


def test_the_hook_drop_in_never_imports_libvirt(tmp_path, conf):
    # The drop-in as libvirt runs it (named qemu, XML on stdin), for a
    # tagged guest and an op that goes through parse, config, engine and
    # plan against this host (migrate: plan only, nothing is changed).
    rc, modules, stderr = run_dropin(tmp_path / "hooks", ("vm1", "migrate", "begin", "-"), TAGGED.encode(),
                                     env={"VIRT_VLAN_CONFIG": conf})
    assert rc == 0, stderr
    assert {"virtvlan.hook.handler", "virtvlan.apply.engine", "virtvlan.plan.planner", "virtvlan.parse.metadata"} <= modules
    assert not {m for m in modules if m.split(".")[0] in ("libvirt", "libvirtmod", "libvirtaio")}
    assert "virtvlan.virt.adapter" not in modules


def test_no_hook_path_module_imports_libvirt():
    code = ("import sys\n"
            "import virtvlan.hook.dropin, virtvlan.hook.handler, virtvlan.apply.engine, virtvlan.plan.planner, "
            "virtvlan.apply.executor, virtvlan.apply.netlink, virtvlan.host.rtnl, virtvlan.parse.metadata, "
            "virtvlan.parse.config, virtvlan.host.state, virtvlan.host.lock, virtvlan.plan.actions, virtvlan.model\n"
            "print(sorted(m for m in sys.modules if m.startswith(('libvirt', 'virtvlan.virt.adapter'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "[]"


# --- the pure parts (nics.py) on data ---------------------------------------------------

RUNNING = """<domain type='kvm'><name>vm1</name><uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
<devices>
<interface type='bridge'><mac address='%s'/><source bridge='br07'/><target dev='vnet0'/></interface>
<interface type='bridge'><mac address='%s'/><source bridge='br9'/><target dev='vnet1'/></interface>
</devices></domain>""" % (MAC1, MAC2)


def _running(specs):
    return parse_domain(nics.with_specs(RUNNING.encode(), specs))


def test_render_and_with_specs_round_trip_through_the_hook_parser():
    specs = [VlanSpec(MAC1, "access", (7,)),
             VlanSpec(MAC2, "trunk", (5, 100, 101, 102), uplink="etrk", native=7)]
    assert nics.render_specs(specs) == (
        b'<vlan><interface mac="%s" mode="access" vlan="7"/><interface mac="%s" mode="trunk" '
        b'vlans="5,100-102" native="7" uplink="etrk"/></vlan>' % (MAC1.encode(), MAC2.encode()))
    assert _running(specs).specs == tuple(specs)
    # Replacing drops the old element (one <vv:vlan>, as the hook demands).
    again = parse_domain(nics.with_specs(nics.with_specs(RUNNING.encode(), specs), specs[:1]))
    assert again.specs == tuple(specs[:1])
    assert parse_domain(nics.with_specs(RUNNING.encode(), [])).specs == ()


def test_source_bridge_update_keeps_the_rest_of_the_interface():
    iface = nics.interface_xml(RUNNING.encode(), MAC1)
    changed = etree.fromstring(nics.with_source_bridge(iface, "br05"))
    assert changed.find("source").get("bridge") == "br05"
    assert changed.find("target").get("dev") == "vnet0"
    assert changed.find("mac").get("address") == MAC1
    assert nics.interface_xml(RUNNING.encode(), "52:54:00:00:00:99") is None


def _host(*links):
    return Snapshot(links=tuple(links))


def test_status_wired_and_each_drift(tmp_path):
    conf = config_mod.parse(CONF.replace("device = lo", "device = eth0"), "vv.conf")
    domain = _running([VlanSpec(MAC1, "access", (7,)), VlanSpec(MAC2, "trunk", (5,), uplink="etrk")])
    good = _host(Link("eth0"), Link("eth1", master="br9"), Link("br9", kind="bridge"),
                 Link("br07", kind="bridge"), Link("eth0.7", kind="vlan", parent="eth0",
                                                   vlan_id=7, master="br07"),
                 Link("vnet0", kind="tun", master="br07"), Link("vnet1", kind="tun", master="br9"))
    statuses = wiring.nic_statuses(domain, True, conf, good)
    assert [(s.bridge, s.status, s.problems) for s in statuses] == [
        ("br07", "wired", ()), ("br9", "wired", ())]
    bad = good.changed("vnet0", master="br05").changed("eth1", master=None).without_link("eth0.7")
    statuses = wiring.nic_statuses(domain, True, conf, bad)
    assert [s.problems for s in statuses] == [
        ("feed eth0.7 of br07 does not exist", "tap vnet0 is on br05, not on its bridge br07"),
        ("uplink device eth1 is on no bridge, not a port of br9",)]
    assert [s.status for s in statuses] == ["drift", "drift"]
    assert "drift: feed eth0.7 of br07 does not exist; tap vnet0" in statuses[0].state_text


def test_status_not_running_and_untagged_and_no_config():
    conf = config_mod.parse(CONF, "vv.conf")
    domain = _running([VlanSpec(MAC1, "access", (5,))])
    first, second = wiring.nic_statuses(domain, False, conf, None)
    assert (first.status, first.tap, first.problems) == (
        "not running", None, ("<source bridge> is br07, not br05",))
    assert (second.mode, second.status) == (None, "untagged")
    (first, _) = wiring.nic_statuses(domain, True, None, None)
    assert (first.status, first.bridge) == ("unknown", None)


def test_table_aligns_and_does_not_pad_the_last_column():
    text = nics.table([("a", "bbb", "x"), ("cccc", "d", "yy")], ("H1", "H2", "H3"))
    assert text.splitlines() == ["H1    H2   H3", "a     bbb  x", "cccc  d    yy"]


# --- port security attributes (docs/port-security.md) -------------------------------

def test_set_writes_port_security_and_a_retag_keeps_it(conn, conf):
    assert vv(conf, "set", "vm1", "--mac", MAC1, "--access", "5", "--allow", "router,stp",
              "--isolated", "--ips", "10.0.5.10") == 0
    expected = {"mac": MAC1, "mode": "access", "vlan": "5", "allow": "router,stp",
                "isolated": "yes", "ips": "10.0.5.10"}
    assert entries(conn, "vm1") == [expected]
    assert vv(conf, "set", "vm1", "--mac", MAC1, "--access", "7") == 0
    assert entries(conn, "vm1") == [dict(expected, vlan="7")]
    assert vv(conf, "set", "vm1", "--mac", MAC1, "--access", "7", "--allow", "") == 0
    assert entries(conn, "vm1") == [{"mac": MAC1, "mode": "access", "vlan": "7"}]


def test_show_prints_each_nics_port_security(conn, conf, capsys):
    assert vv(conf, "set", "vm1", "--mac", MAC1, "--access", "5", "--allow", "router",
              "--isolated") == 0
    capsys.readouterr()
    assert vv(conf, "show", "vm1") == 0
    # On by default (the test config has no port-security line).
    assert "%s port security: on; allow router; isolated" % MAC1 in capsys.readouterr().out


def test_attach_names_the_tap_so_its_filter_can_go_in_first():
    from virtvlan.cli import nics

    tap = nics.attach_tap("52:54:00:AB:00:03")
    assert tap == "vv525400ab0003" and len(tap) <= 15  # IFNAMSIZ - 1
    iface = nics.new_interface("52:54:00:ab:00:03", "br07", "virtio", tap).decode()
    assert "<target dev=\"vv525400ab0003\"/>" in iface
    assert "<target" not in nics.new_interface("52:54:00:ab:00:03", "br07", "virtio").decode()


def test_attach_live_validates_then_filters_the_named_tap_before_libvirt_attaches(
        conn, conf, capsys, monkeypatch):
    """`attach --live` on the driver's running guest: the new NIC's tap does
    not exist before the attach, so the checks plan only its bridge; its
    filter goes in (engine.prefilter, under the name given to libvirt)
    before libvirt is asked, and is taken back when libvirt refuses. The
    host-changing steps are recorded here instead of run."""
    from virtvlan.apply import engine
    from virtvlan.cli import domains

    calls = []
    monkeypatch.setattr(domains, "_build_live", lambda config, xml, why: (
        calls.append("build"), (None, tuple(domains.wants(parse_domain(xml), config))))[1])
    monkeypatch.setattr(engine, "prefilter",
                        lambda want, config, why: calls.append(("prefilter", want.port)))
    monkeypatch.setattr(domains, "_unreserve_to",
                        lambda domain, config, why: calls.append("unreserve"))
    mac = "52:54:00:00:00:0a"
    assert vv(conf, "attach", "test", "--access", "5", "--mac", mac, "--live") == 1
    assert "refused to attach the device" in err_line(capsys)  # the test driver has no hot-plug
    assert calls == ["build", ("prefilter", "vv52540000000a"), "unreserve"]
