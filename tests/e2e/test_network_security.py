"""End to end: port security on the ports of a virt-vlan network
(docs/port-security.md, "Asking for it").

A guest with no virt-vlan metadata at all has a NIC on a virt-vlan network
whose uplink has `port-security = yes`: libvirt attaches its tap to the
network's bridge itself, and its tap must carry its filter (and the
network's `isolated` flag) by the time the guest is started (paused: its
CPUs have not run), and nothing of it may be left once the guest stops.
The oracle is the kernel, read with `nft -j list table bridge virt_vlan`
and `ip -json -d link show`, never virt-vlan's own code.

Port security is set explicitly in the config for the duration of these
tests (its default may change); the session's config is put back after.
"""

import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

import libvirt_env as env
from libvirt_env import Nic, links, mac

CONFIG_PATH = Path("/etc/virt-vlan/virt-vlan.conf")
NETWORK = "vlan5ps"
NETWORK_XML = """<network>
  <name>%s</name>
  <forward mode='bridge'/>
  <bridge name='br05'/>
  <metadata>
    <vv:vlan xmlns:vv='urn:virt-vlan:1'><vv:network vlan='5' %s/></vv:vlan>
  </metadata>
</network>
"""


def nft_table() -> Tuple[Dict[str, List[str]], Set[str]]:
    """(chain -> its rules' comments, names in the map `ports`) of
    `table bridge virt_vlan`; ({}, set()) when the table does not exist."""
    proc = env.run(["nft", "-j", "list", "table", "bridge", "virt_vlan"], check=False)
    if proc.returncode != 0:
        assert "No such file or directory" in proc.stderr, proc.stderr
        return {}, set()
    chains: Dict[str, List[str]] = {}
    mapped: Set[str] = set()
    for item in json.loads(proc.stdout)["nftables"]:
        if "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(item["rule"].get("comment", ""))
        elif "map" in item and item["map"]["name"] == "ports":
            for elem in item["map"].get("elem", []):
                key = elem[0] if isinstance(elem, list) else elem
                mapped.add(key if isinstance(key, str) else json.dumps(key))
    return chains, mapped


@pytest.fixture
def secure_config(libvirt):
    """The session's config (port security on, the default, on uplink eacc:
    VLAN 5 -> br05) with allowed-exceptions = router there."""
    before = CONFIG_PATH.read_text()
    eacc = before[before.index("[uplink eacc]\n"):]
    eacc = eacc[:eacc.index("\n[")] if "\n[" in eacc else eacc
    assert "port-security = no" not in eacc and "allowed-exceptions" not in eacc, eacc
    CONFIG_PATH.write_text(before.replace(
        "[uplink eacc]\n", "[uplink eacc]\nallowed-exceptions = router\n"))
    try:
        yield
    finally:
        CONFIG_PATH.write_text(before)


@pytest.fixture
def network(secure_config, tmp_path):
    """Defines the network with the given <vv:network> attributes."""
    def define(attrs: str) -> str:
        path = tmp_path / "net.xml"
        path.write_text(NETWORK_XML % (NETWORK, attrs))
        env.virsh("net-define", str(path))
        return NETWORK
    yield define
    env.virsh("net-destroy", NETWORK, check=False)
    env.virsh("net-undefine", NETWORK, check=False)


def diagnosis(domain: str) -> str:
    """What to look at when a port has no filter (the VM has no journal):
    the network records, the live XML's interfaces, and the qemu drop-in
    run by hand on that XML."""
    records = env.run(["ls", "-la", "/run/virt-vlan/networks"], check=False)
    live = env.virsh("dumpxml", domain).stdout
    iface = live[live.find("<interface"):live.rfind("</interface>") + 12]
    hook = subprocess.run(["/etc/libvirt/hooks/qemu.d/virt-vlan", domain, "start", "begin",
                           "-"], input=live.encode(), capture_output=True, timeout=600,
                          env=dict(os.environ, VIRT_VLAN_NO_AGENT="1"))
    return ("records: %s%s\nlive interface XML:\n%s\nqemu.d/virt-vlan start by hand: exit %d, "
            "stderr %r\nnft afterwards: %s" % (records.stdout, records.stderr, iface,
                                              hook.returncode, hook.stderr.decode(),
                                              nft_table()))


@pytest.mark.hooks_alone  # the hooks' own path: no agent adds the filter later
def test_port_of_protected_network_is_filtered_and_cleaned_up(network, guests):
    name = network("allow='router' isolated='yes'")
    env.virsh("net-start", name)
    guest_mac = mac(0x901)
    guests.define("psnet1", [Nic(guest_mac, source_network=name)])  # no virt-vlan metadata
    guests.start("psnet1")
    tap = env.tap("psnet1")
    chains, mapped = nft_table()
    # allow='router' takes out the rogue-server group; everything else of an
    # access NIC is there, in the planner's order.
    expected = ["stp", "mac=" + guest_mac, "arp=" + guest_mac, "nd=" + guest_mac, "tagged",
                "qinq"]
    assert chains.get("port-" + tap) == expected, diagnosis("psnet1")
    assert tap in mapped
    now = links()
    assert now[tap].get("master") == "br05"
    # The bridge port flag (ip -d: linkinfo.info_slave_data.isolated).
    assert now[tap]["linkinfo"]["info_slave_data"]["isolated"] is True

    guests.destroy("psnet1")
    chains, mapped = nft_table()
    assert "port-" + tap not in chains and tap not in mapped, (chains, mapped)
    # The running network keeps its bridge; stopping it leaves nothing.
    assert "br05" in links()
    env.virsh("net-destroy", name)
    env.wait_for(env.gone("br05", "vvacc.5"), 20, "net-destroy to remove br05 and vvacc.5")
    chains, mapped = nft_table()
    assert not [c for c in chains if c.startswith("port-")] and not mapped


@pytest.mark.hooks_alone
def test_network_asking_for_an_exception_the_uplink_does_not_allow_is_refused(network):
    name = network("allow='stp'")
    before = env.topology()
    proc = env.virsh("net-start", name, check=False)
    assert proc.returncode != 0
    assert ("allow='stp' is not permitted on uplink eacc (allowed-exceptions = router"
            in proc.stderr), proc.stderr
    assert env.topology() == before  # nothing wired for it
