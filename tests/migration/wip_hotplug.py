"""WIP, not collected (pytest collects test_*.py only): scenario 5 of issue 21.

Not yet seen passing in the VM; move it into test_migration.py once it has.
"""

import two_hosts as th
from test_migration import MAC_ACCESS, _access, _print_hooks, _sources, _start_on_a

MAC_PLUGGED = "52:54:00:77:00:03"


def test_a_hot_plugged_tagged_nic_moves_with_the_guest(hosts, guests):
    a, b = _start_on_a(hosts, guests, "vm5", [(MAC_ACCESS, "br05")], [_access(MAC_ACCESS, 5)],
                       acpi=True)
    a.virt_vlan("attach", "vm5", "--access", "7", "--mac", MAC_PLUGGED, "--live",
                "-c", "qemu:///system")
    assert a.master(a.taps("vm5")[MAC_PLUGGED]) == "br07"
    th.migrate(a, b, "vm5")
    _print_hooks(b)
    taps = b.taps("vm5")
    assert b.master(taps[MAC_ACCESS]) == "br15" and b.master(taps[MAC_PLUGGED]) == "br17"
    assert _sources(b, "vm5") == {MAC_ACCESS: "br15", MAC_PLUGGED: "br17"}
