"""End to end: `virt-vlan check` and `virt-vlan explain` against the real
libvirtd and kernel in the VM (see conftest.py for uplinks and config).

Oracles are `ip -json -d link show` and virsh; virt-vlan is run as the
installed command, the way an admin or a monitoring system runs it.

"Clean" here means: the access uplinks of the e2e config (eacc, emix; the
trunk uplink etrk left out, written to a config of this test's own) with a
tagged guest running on eacc VLAN 5, everything as the hooks built it. etrk
is left out because its trunk bridge br1, once another test created it, stays
(trunk bridges are never removed) and is judged by the trunk-filtering check,
which has its own unit tests; this keeps the expected exit code independent
of the order the e2e files run in.
"""

import json
from typing import List, Optional

import pytest

import libvirt_env as env
from conftest import CONFIG
from libvirt_env import Nic, links, mac, vv_access, vv_trunk

CLEAN_CONFIG = CONFIG[:CONFIG.index("[uplink etrk]")] + CONFIG[CONFIG.index("[uplink emix]"):]


def check(config: Optional[str] = None, expect: Optional[int] = None) -> dict:
    args: List[str] = [str(env.VIRT_VLAN)]
    if config is not None:
        args += ["--config", config]
    proc = env.run(args + ["check", "-c", env.URI, "--json"], check=False, timeout=600)
    assert proc.stderr == "", proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == proc.returncode
    if expect is not None:
        assert proc.returncode == expect, "check exited %d, expected %d:\n%s" % (
            proc.returncode, expect, proc.stdout)
    return out


@pytest.fixture
def clean_config(tmp_path) -> str:
    path = tmp_path / "clean.conf"
    path.write_text(CLEAN_CONFIG)
    return str(path)


@pytest.fixture
def seed4(libvirt):
    """Seed 004's mix made by hand: NIC vv4nic is a port of bridge br4mix and
    also carries the VLAN device vv4nic.5. Removed afterwards."""
    env.ensure_switch()
    env.ip("link", "add", "vv4nic", "type", "veth", "peer", "name", "sw4nic", "netns",
           env.SWITCH_NS)
    env.ip("link", "add", "br4mix", "type", "bridge")
    env.ip("link", "set", "vv4nic", "master", "br4mix")
    env.ip("link", "add", "link", "vv4nic", "name", "vv4nic.5", "type", "vlan", "id", "5")
    for dev in ("br4mix", "vv4nic", "vv4nic.5"):
        env.ip("link", "set", dev, "up")
    yield
    env.ip("link", "del", "vv4nic", check=False)  # takes vv4nic.5 and the peer along
    env.ip("link", "del", "br4mix", check=False)


def test_check_clean_host_exits_0_and_warning_exits_1(guests, clean_config):
    guests.define("chk1", [Nic(mac(0x901), source_bridge="br05")], [vv_access(mac(0x901), 5)])
    guests.start("chk1")
    tap = env.tap("chk1")
    assert links()[tap].get("master") == "br05"
    out = check(clean_config, expect=0)
    assert out["libvirt"] is True and out["findings"] == []

    # An MTU mismatch along the guest's path is a warning: exit 1, naming it.
    env.ip("link", "set", tap, "mtu", "1400")
    out = check(clean_config, expect=1)
    whats = [f["what"] for f in out["findings"]]
    assert [f["severity"] for f in out["findings"]] == ["warning"], whats
    assert whats[0].startswith("MTU differs along the path of br05: ")
    assert "%s 1400" % tap in whats[0]


def test_check_seed_004_mix_exits_2(libvirt, seed4):
    now = links()
    assert now["vv4nic"].get("master") == "br4mix"
    assert env.vlan_of(now["vv4nic.5"]) == 5 and now["vv4nic.5"].get("link") == "vv4nic"
    out = check(expect=2)
    mix = [f for f in out["findings"] if f["severity"] == "problem"
           and f["what"] == "VLAN device vv4nic.5 takes VLAN 5 from bridge br4mix"]
    assert len(mix) == 1, out["findings"]
    assert "guests on br4mix lose VLAN 5" in mix[0]["why"]
    assert mix[0]["fix"].startswith("ip link del vv4nic.5;")


def test_check_without_libvirt_does_host_checks(libvirt, seed4):
    proc = env.run([str(env.VIRT_VLAN), "check", "-c",
                    "qemu+unix:///system?socket=/nonexistent/sock"], check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("note: libvirt did not answer (")
    assert lines[0].endswith("): host checks only")
    assert "PROBLEM  what:  VLAN device vv4nic.5 takes VLAN 5 from bridge br4mix" in lines


def test_explain_names_every_device_on_the_real_path(guests):
    access_mac, trunk_mac = mac(0x911), mac(0x912)
    guests.define("expl1", [Nic(access_mac, source_bridge="br15"),
                            Nic(trunk_mac, source_bridge="br1")],
                  [vv_access(access_mac, 5, uplink="etrk"), vv_trunk(trunk_mac, "5,7", "etrk")])
    guests.start("expl1")
    taps = env.taps("expl1")
    proc = env.run([str(env.VIRT_VLAN), "explain", "expl1", "-c", env.URI, "--json"])
    found = {p["mac"]: p for p in json.loads(proc.stdout)}
    now = links()

    access = [h["device"] for h in found[access_mac]["hops"]]
    assert access == [taps[access_mac], "br15", "br1.5", "br1", "vvtrk"]
    # The path is the kernel's: each hop is linked to the next as ip shows it.
    assert now[taps[access_mac]].get("master") == "br15"
    assert now["br1.5"].get("master") == "br15" and now["br1.5"].get("link") == "br1"
    assert env.vlan_of(now["br1.5"]) == 5
    assert now["vvtrk"].get("master") == "br1"
    assert [h["tcpdump"] for h in found[access_mac]["hops"]][-1] == \
        "tcpdump -e -n -i vvtrk vlan 5"

    trunk = [h["device"] for h in found[trunk_mac]["hops"]]
    assert trunk == [taps[trunk_mac], "br1", "vvtrk"]
    assert now[taps[trunk_mac]].get("master") == "br1"
    for path in found.values():
        assert path["ok"] is True, path
        for hop in path["hops"]:
            assert hop["device"] in now, hop

    text = env.run([str(env.VIRT_VLAN), "explain", "expl1", "-c", env.URI,
                    "--mac", access_mac]).stdout
    for device in access:
        assert "-> %s " % device in text, text
