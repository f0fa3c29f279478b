"""Guests move between two hosts and keep their VLANs (issue 21).

Host A names VLAN 5's bridge br05 and its trunk bridge br0; host B names them
br15 and brtrunk (conftest.py). Each test starts its own guest on A. Hook
calls of each host are printed (they are the facts docs/moving-guests.md
states for this libvirt).
"""

import json
import time

import two_hosts as th
from conftest import CONFIG_B

MAC_ACCESS = "52:54:00:77:00:01"
MAC_TRUNK = "52:54:00:77:00:02"
MAC_PLUGGED = "52:54:00:77:00:03"


def _access(mac: str, vlan: int) -> str:
    return "<vv:interface mac='%s' mode='access' vlan='%d'/>" % (mac, vlan)


def _start_on_a(hosts, guests, name, nics, vv, acpi=False):  # type: ignore[no-untyped-def]
    a = hosts["A"]
    guests.append(name)
    path = th.ROOT / ("%s.xml" % name)
    path.write_text(th.domain_xml(name, nics, vv, acpi=acpi))
    a.virsh("define", str(path))
    started = time.monotonic()
    a.virsh("start", name, timeout=1200)
    print("%s started on A in %.0fs" % (name, time.monotonic() - started))
    return a, hosts["B"]


def _sources(host, name):  # type: ignore[no-untyped-def]
    """MAC -> <source bridge> of the live XML (virsh domiflist's Source column)."""
    out = host.virsh("domiflist", name).stdout
    return {w[4].lower(): w[2] for w in (line.split() for line in out.splitlines())
            if len(w) >= 5}


def _assert_protected(host, taps):  # type: ignore[no-untyped-def]
    """Each tap (MAC -> tap) has its port filter, which checks the guest's MAC."""
    filters = host.port_filters()
    for mac, tap in taps.items():
        assert "mac=%s" % mac in filters.get(tap, []), (host.name, tap, filters)


def _print_hooks(*hosts):  # type: ignore[no-untyped-def]
    for host in hosts:
        print("hook calls on %s:\n  %s" % (host.name, "\n  ".join(host.hook_calls())))


def test_live_migration_to_a_host_that_names_its_bridges_differently(hosts, guests, tmp_path):
    vv = [_access(MAC_ACCESS, 5),
          "<vv:interface mac='%s' mode='trunk' vlans='5,7' native='9'/>" % MAC_TRUNK]
    a, b = _start_on_a(hosts, guests, "vm1", [(MAC_ACCESS, "br05"), (MAC_TRUNK, "br0")], vv)
    taps_a = a.taps("vm1")
    assert a.master(taps_a[MAC_ACCESS]) == "br05" and a.master(taps_a[MAC_TRUNK]) == "br0"
    _assert_protected(a, taps_a)
    with th.Traffic([a, b], MAC_ACCESS, tmp_path) as traffic:
        time.sleep(1)  # frames reach A's tap before the move
        started = time.monotonic()
        moved = th.migrate(a, b, "vm1")
        print("live migration took %.1fs: %s" % (time.monotonic() - started, moved.stdout))
        taps_b = th.wait_for(lambda: b.taps("vm1"), 60, "vm1's taps on B")
        time.sleep(1)  # frames reach B's tap after the move
    _print_hooks(a, b)
    assert b.state("vm1") == "running"
    # B's bridges, B's VLAN table and MTU; the live XML names B's bridges.
    assert b.master(taps_b[MAC_ACCESS]) == "br15"
    assert b.master(taps_b[MAC_TRUNK]) == "brtrunk"
    assert _sources(b, "vm1") == {MAC_ACCESS: "br15", MAC_TRUNK: "brtrunk"}
    table = b.bridge_vlans(taps_b[MAC_TRUNK])
    assert {vid: flags for vid, flags in table.items()} == {
        5: [], 7: [], 9: ["Egress Untagged", "PVID"]}, table
    assert b.mtu(taps_b[MAC_ACCESS]) == b.mtu("br15")
    # Port security moves with the guest: B's taps carry their filters.
    _assert_protected(b, taps_b)
    # Frames for the guest: on B's access tap only VLAN 5's, untagged.
    seen_b = [s for s in traffic.seen(b) if s[0] == taps_b[MAC_ACCESS]]
    seen_a = [s for s in traffic.seen(a) if s[0] == taps_a[MAC_ACCESS]]
    print("frames on A's tap: %s\nframes on B's tap: %s" % (seen_a, seen_b))
    assert {(s[1], s[2]) for s in seen_b} == {("vv5", False)}
    assert {(s[1], s[2]) for s in seen_a} == {("vv5", False)}
    last_a = max(s[4] for s in seen_a)
    first_b = min(s[3] for s in seen_b)
    # Negative: B's tap got the flooded frames before A's stopped (no gap on the wire).
    print("LOSS WINDOW (last frame on A's tap -> first on B's): %.0f ms" % (
        (first_b - last_a) * 1000))
    # The source keeps nothing the guest alone used: its access bridge and feed.
    th.wait_for(lambda: not {"br05", "br0.5"} & set(a.links()), 300,
                "br05 and br0.5 to go from A")
    print("A keeps: %s" % a.managed())
    assert a.state("vm1") == "shut off"
    assert not set(taps_a.values()) & set(a.port_filters()), a.port_filters()


def test_a_host_that_does_not_allow_the_vlan_refuses_the_guest(hosts, guests):
    a, b = _start_on_a(hosts, guests, "vm2", [(MAC_ACCESS, "br05")], [_access(MAC_ACCESS, 5)])
    before = b.managed()
    b.write_config(CONFIG_B % "7,9")
    try:
        done = th.migrate(a, b, "vm2", check=False)
    finally:
        b.write_config(CONFIG_B % "5,7,9")
    _print_hooks(b)
    assert done.returncode != 0
    assert ("virt-vlan: domain vm2, interface %s: VLAN 5 not allowed on uplink up (allowed: "
            "7,9)" % MAC_ACCESS) in done.stderr, done.stderr
    assert a.state("vm2") == "running"
    assert a.master(a.taps("vm2")[MAC_ACCESS]) == "br05"
    assert b.state("vm2") == "absent"
    assert b.managed() == before


def test_a_migration_that_fails_after_prepare_on_b_leaves_a_wired(hosts, guests):
    a, b = _start_on_a(hosts, guests, "vm3", [(MAC_ACCESS, "br05")], [_access(MAC_ACCESS, 5)])
    before = b.managed()
    calls = len(b.hook_calls())
    # B prepares (hooks wire br15, QEMU listens); A cannot reach this address.
    done = a.virsh("migrate", "--live", "vm3", b.uri, "--migrateuri", "tcp://10.99.0.9",
                   check=False, timeout=900)
    _print_hooks(a, b)
    assert done.returncode != 0
    assert "vm3 prepare begin -" in b.hook_calls()[calls:]
    th.wait_for(lambda: b.managed() == before, 300, "B to take back what it built")
    assert b.state("vm3") == "absent"
    assert a.state("vm3") == "running"
    assert a.master(a.taps("vm3")[MAC_ACCESS]) == "br05"


def test_save_on_a_and_restore_on_b_then_managed_save_and_start(hosts, guests):
    a, b = _start_on_a(hosts, guests, "vm4", [(MAC_ACCESS, "br05")], [_access(MAC_ACCESS, 5)])
    image = th.ROOT / "vm4.save"
    a.virsh("save", "vm4", str(image), timeout=900)
    b.virsh("restore", str(image), timeout=1200)
    _print_hooks(a, b)
    assert b.state("vm4") == "running"
    assert b.master(b.taps("vm4")[MAC_ACCESS]) == "br15"
    assert _sources(b, "vm4") == {MAC_ACCESS: "br15"}
    # Managed save and start on one host: the restore hook changes nothing.
    a.virsh("start", "vm4", timeout=1200)
    a.virsh("managedsave", "vm4", timeout=900)
    assert a.state("vm4") == "shut off"
    a.virsh("start", "vm4", timeout=1200)
    assert a.master(a.taps("vm4")[MAC_ACCESS]) == "br05"
    assert _sources(a, "vm4") == {MAC_ACCESS: "br05"}


def test_a_hot_plugged_tagged_nic_moves_with_the_guest(hosts, guests):
    a, b = _start_on_a(hosts, guests, "vm5", [(MAC_ACCESS, "br05")], [_access(MAC_ACCESS, 5)],
                       acpi=True)
    a.virt_vlan("attach", "vm5", "--access", "7", "--mac", MAC_PLUGGED, "--live",
                "-c", "qemu:///system")
    assert a.master(a.taps("vm5")[MAC_PLUGGED]) == "br07"
    th.migrate(a, b, "vm5", "--persistent")
    _print_hooks(b)
    taps = b.taps("vm5")
    assert b.master(taps[MAC_ACCESS]) == "br15" and b.master(taps[MAC_PLUGGED]) == "br17"
    assert _sources(b, "vm5") == {MAC_ACCESS: "br15", MAC_PLUGGED: "br17"}
    # --persistent: libvirt copies A's definition without the migrate hook, so
    # it names A's bridge; `check` on B says so, and the retag it names fixes it.
    stale = ("domain vm5, interface %s has <source bridge='br05'> in its persistent "
             "definition; this host uses br15" % MAC_ACCESS)
    assert stale in _check_whats(b)
    b.virt_vlan("set", "vm5", "--mac", MAC_ACCESS, "--access", "5", "--config",
                "-c", "qemu:///system")
    assert stale not in _check_whats(b)


def _check_whats(host):  # type: ignore[no-untyped-def]
    """What `virt-vlan check` on `host` finds (its exit code is 0-2 by findings)."""
    done = host.virt_vlan("check", "-c", "qemu:///system", "--json", check=False)
    assert done.returncode in (0, 1, 2), done.stderr
    whats = [f["what"] for f in json.loads(done.stdout)["findings"]]
    print("check on %s: %s" % (host.name, whats))
    return whats
