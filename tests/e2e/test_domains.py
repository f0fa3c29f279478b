"""End to end: the domain commands (virt-vlan set/show/attach/detach) on a real
libvirtd, its hooks installed (conftest.py: uplink eacc = device vvacc,
access wiring, VLANs 5,7,9 -> br05/br07/br09 fed by vvacc.V).

Oracles are independent of virt-vlan: `ip -json -d link show` for the
kernel, `virsh domiflist` / `virsh metadata` for libvirt.
"""

import json
import subprocess

import libvirt_env as env
from libvirt_env import Nic, links, mac, ports, vv_access

M1, M2 = mac(0x901), mac(0x902)


def test_set_config_then_start_lands_on_the_bridge(guests):
    # <source bridge> names a bridge that does not exist: the guest could
    # not start unless `set` pointed it at br05 (through libvirt's device
    # update of the persistent definition).
    guests.define("dset1", [Nic(M1, source_bridge="nosuchbr")])
    env.virt_vlan("set", "dset1", "--mac", M1, "--access", "5", "--config")
    assert env.sources("dset1", inactive=True) == {M1: "br05"}
    assert "vlan=\"5\"" in env.vv_metadata("dset1", live=False)
    shown = json.loads(env.virt_vlan("show", "dset1", "--json").stdout)
    assert shown["state"] == "shut off"
    assert [(n["mac"], n["bridge"], n["status"], n["problems"]) for n in shown["nics"]] == [
        (M1, "br05", "not running", [])]

    guests.start("dset1")
    tap = env.tap("dset1")
    now = links()
    assert now[tap].get("master") == "br05", "tap %s is on %s" % (tap, now[tap].get("master"))
    env.assert_access_bridge(now, "br05", feed="vvacc.5", parent="vvacc", vlan=5)
    shown = json.loads(env.virt_vlan("show", "dset1", "--json").stdout)
    (nic,) = shown["nics"]
    assert (nic["tap"], nic["status"], nic["problems"]) == (tap, "wired", [])
    listed = env.virt_vlan("list").stdout.splitlines()
    assert any(l.split()[:3] == ["dset1", M1, tap] for l in listed), listed


def test_set_live_moves_a_running_guest_from_vlan_5_to_7(guests):
    guests.define("dlive1", [Nic(M1, source_bridge="br05")], [vv_access(M1, 5)])
    guests.start("dlive1")
    tap = env.tap("dlive1")
    assert links()[tap].get("master") == "br05"

    out = env.virt_vlan("set", "dlive1", "--mac", M1, "--access", "7", "--live").stdout
    assert "access VLAN 7 on uplink eacc -> bridge br07 (live)" in out
    now = links()
    assert now[tap].get("master") == "br07", "tap %s is on %s" % (tap, now[tap].get("master"))
    env.assert_access_bridge(now, "br07", feed="vvacc.7", parent="vvacc", vlan=7)
    assert ports(now, "br07") == sorted(["vvacc.7", tap])
    # What VLAN 5 no longer needs is gone; the uplink stays.
    assert "br05" not in now and "vvacc.5" not in now, sorted(now)
    assert "vvacc" in now
    # libvirt's live view agrees (it moved the tap itself), the persistent
    # definition is untouched (--live only).
    assert env.sources("dlive1") == {M1: "br07"}
    assert 'vlan="7"' in env.vv_metadata("dlive1", live=True)
    assert 'vlan="5"' in env.vv_metadata("dlive1", live=False)
    # The guest's reservation (the hook's key) now holds br07 only.
    uuid = env.virsh("domuuid", "dlive1").stdout.strip()
    held = (env.RESERVED_DIR / ("domain-%s" % uuid)).read_text().split()
    assert held == ["br07"], held
    (nic,) = json.loads(env.virt_vlan("show", "dlive1", "--json").stdout)["nics"]
    assert (nic["status"], nic["problems"]) == ("wired", [])

    guests.destroy("dlive1")
    env.wait_for(env.gone("br07", "vvacc.7"), 60, "br07 and vvacc.7 to be removed")


def test_set_live_refusal_changes_nothing(guests):
    guests.define("dlive2", [Nic(M1, source_bridge="br05")], [vv_access(M1, 5)])
    guests.start("dlive2")
    before = env.topology()
    proc = env.virt_vlan("set", "dlive2", "--mac", M1, "--access", "99", "--live", check=False)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert "VLAN 99 not allowed on uplink eacc" in line
    assert env.topology() == before
    assert 'vlan="5"' in env.vv_metadata("dlive2", live=True)


def test_attach_and_detach_on_a_running_guest(guests):
    guests.define("datt1", [Nic(M1, source_bridge="br05")], [vv_access(M1, 5)], acpi=True)
    guests.start("datt1")
    first = env.tap("datt1")

    env.virt_vlan("attach", "datt1", "--access", "7", "--mac", M2, "--live")
    taps = env.taps("datt1")
    assert set(taps) == {M1, M2}
    now = links()
    # The new NIC went straight onto br07 (libvirt attached it there: the
    # bridge existed before the device), next to the bridge's feed.
    assert now[taps[M2]].get("master") == "br07"
    # Its filter went in before libvirt made the tap, under the name the
    # command gave it: the port's chain, with the NIC's own MAC.
    assert taps[M2] == "vv" + M2.replace(":", "")
    filters = env.port_filters()
    assert filters.ports.get(taps[M2]) == "port-" + taps[M2]
    assert "ether saddr != %s drop" % M2 in filters.chains["port-" + taps[M2]]
    env.assert_access_bridge(now, "br07", feed="vvacc.7", parent="vvacc", vlan=7)
    assert now[first].get("master") == "br05"
    assert env.sources("datt1") == {M1: "br05", M2: "br07"}
    live = env.vv_metadata("datt1", live=True)
    assert M1 in live and M2 in live and 'vlan="7"' in live
    assert M2 not in env.vv_metadata("datt1", live=False)  # --live only
    assert M2 not in env.sources("datt1", inactive=True)

    # `detach --live` waits for the guest to release the NIC; these guests
    # have no OS, so the test ejects it for them (env.guest_ejects).
    slot = env.pci_slot("datt1", M2)
    detach = subprocess.Popen([str(env.VIRT_VLAN), "-c", env.URI, "detach", "datt1", "--mac",
                               M2, "--live", "--wait", "300"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        env.guest_ejects("datt1", slot)
        out, err = detach.communicate(timeout=600)
    finally:
        if detach.poll() is None:
            detach.kill()
    assert detach.returncode == 0, (out, err)
    assert "detached" in out and "detach requested" not in out, (out, err)
    assert M2 not in env.vv_metadata("datt1", live=True)
    assert M2 not in env.taps("datt1")
    # VLAN 7 lost its last user: its bridge and feed are gone, VLAN 5 stays.
    env.wait_for(env.gone("br07", "vvacc.7"), 60, "br07 and vvacc.7 to be removed after detach")
    now = links()
    assert now[first].get("master") == "br05"
    env.assert_access_bridge(now, "br05", feed="vvacc.5", parent="vvacc", vlan=5)
    guests.destroy("datt1")
    env.wait_for(env.gone("br05", "vvacc.5", "br07", "vvacc.7"), 60,
                 "the bridges and feeds of datt1 to be removed")
