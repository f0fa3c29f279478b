"""The agent's live host model (host/live.py) against a real kernel.

The oracle is a fresh full read (rtnl.read_snapshot, itself checked against
pyroute2 and `ip -json` in test_rtnl.py): after each storm of changes, made
by `ip` and `bridge` in other processes, the model brought up to date by
its notifications must equal it, link by link and field by field.
"""

from typing import Iterator, List

import pytest
from topology import ip_batch, run

from virtvlan.host import rtnl
from virtvlan.host.live import LiveHost, differences


@pytest.fixture
def model(netns) -> Iterator[LiveHost]:  # type: ignore[no-untyped-def]
    live = LiveHost(netns.name)
    try:
        yield live
    finally:
        live.close()


def agrees(live: LiveHost, netns, what: str) -> None:  # type: ignore[no-untyped-def]
    found = live.consistency()
    assert found == [], "after %s the model differs from a full read:\n%s" % (
        what, "\n".join(found[:20]))
    # The snapshot the engine plans from, against a read of our own.
    whole = live.snapshot()
    assert differences(whole, rtnl.read_snapshot(netns.name)) == []
    # What verification reads back: some devices, as the whole has them.
    some = {link.name for link in whole.links[::7]} | {"gone0"}
    part = live.snapshot_of(sorted(some))
    assert part.links == tuple(link for link in whole.links if link.name in some)
    assert part.routes == tuple(r for r in whole.routes if r.dev in some)


def bridge_batch(ns: str, lines: List[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    run("ip", "netns", "exec", ns, "bridge", "-batch", "-", input=text)


def test_storm_of_devices_vlans_and_ports(netns, model, vlan_support):
    """Hundreds of bridges, VLAN devices and ports made, re-tagged and deleted."""
    ns = netns.name
    ip_batch(ns, ["link add up0 type veth peer name up1", "link set up0 up"])
    ip_batch(ns, ["link add br%d type bridge vlan_filtering %d" % (i, i % 2) for i in range(120)]
             + ["link add link up0 name up0.%d type vlan id %d" % (i + 2, i + 2)
                for i in range(120)]
             + ["link set up0.%d master br%d" % (i + 2, i) for i in range(120)]
             + ["link add t%d type veth peer name p%d" % (i, i) for i in range(120)]
             + ["link set t%d master br%d" % (i, i) for i in range(120)]
             + ["link set br%d up" % i for i in range(120)]
             + ["link set t%d up" % i for i in range(0, 120, 2)])
    agrees(model, netns, "creating 480 devices")
    # Filtering bridges: tagged ranges, a PVID moved, the bridge's own entries.
    bridge_batch(ns, ["vlan add dev t%d vid 10-20" % i for i in range(1, 120, 2)]
                 + ["vlan add dev t%d vid 30 pvid untagged" % i for i in range(1, 120, 2)]
                 + ["vlan del dev t%d vid 15" % i for i in range(1, 120, 4)]
                 + ["vlan add dev br%d vid 40 self" % i for i in range(1, 120, 2)]
                 + ["vlan del dev t%d vid 1" % i for i in range(1, 120, 2)])
    agrees(model, netns, "bridge VLAN changes")
    bridge_batch(ns, ["link set dev t%d isolated on" % i for i in range(1, 120, 10) if i % 3])
    ip_batch(ns, ["link set t%d nomaster" % i for i in range(0, 120, 3)]
             + ["link set t%d master br%d" % (i, (i + 1) % 120) for i in range(0, 120, 6)]
             + ["link set br%d type bridge vlan_filtering 1" % i for i in range(0, 120, 4)]
             # A flag set this way is announced only for a device that is up
             # (netdev_state_change); as libvirt's taps are. `bridge link`
             # (AF_BRIDGE, as virt-vlan sets it) is announced either way.
             + ["link set t%d type bridge_slave isolated on" % i for i in range(2, 120, 10)
                if i % 3]  # still ports, and up
             + ["link set t%d name n%d" % (i, i) for i in range(3, 120, 14)])  # down ones
    agrees(model, netns, "moving, isolating and renaming ports")
    ip_batch(ns, ["link del br%d" % i for i in range(0, 120, 2)]
             + ["link del up0.%d" % (i + 2) for i in range(1, 120, 2)])
    agrees(model, netns, "deleting half of it")
    ip_batch(ns, ["link del up0"])  # takes every VLAN device on it along
    agrees(model, netns, "deleting the uplink under its VLAN devices")


def test_ifdown_ifup_with_addresses_and_routes(netns, netns2, model, vlan_support):
    """What `ifdown br0; ifup br0` does: IPv4 routes vanish unannounced."""
    ns = netns.name
    ip_batch(ns, ["link add up0 type veth peer name sw0 netns %s" % netns2.name,
                  "link add br0 type bridge", "link set up0 master br0",
                  "link add link br0 name br0.5 type vlan id 5",
                  "link add link br0 name br0.7 type vlan id 7",
                  "addr add 192.0.2.10/24 dev br0", "addr add 192.0.2.11/24 dev br0",
                  "addr add 198.51.100.1/24 dev br0.5", "addr add 2001:db8::1/64 dev br0 nodad",
                  "link set up0 up", "link set br0 up", "link set br0.5 up", "link set br0.7 up",
                  "route add default via 192.0.2.1 dev br0",
                  "route add 203.0.113.0/24 dev br0.5 src 198.51.100.1",
                  "route add 10.7.0.0/16 dev br0 src 192.0.2.11 metric 7",
                  "route add 2001:db8:9::/64 via 2001:db8::9 dev br0"])
    agrees(model, netns, "setting up br0 with addresses and routes")
    ip_batch(ns, ["addr del 192.0.2.11/24 dev br0"])  # its preferred-source route goes too
    agrees(model, netns, "deleting a preferred source")
    ip_batch(ns, ["link set br0.5 down", "link set br0 down"])
    agrees(model, netns, "ifdown")
    ip_batch(ns, ["link set br0 up", "link set br0.5 up",
                  "route add default via 192.0.2.1 dev br0",
                  "route add 203.0.113.0/24 dev br0.5 src 198.51.100.1"])
    agrees(model, netns, "ifup")
    ip_batch(ns, ["addr flush dev br0.5"])  # the last IPv4 address: all its IPv4 routes go
    agrees(model, netns, "flushing a device's addresses")
    ip_batch(ns, ["link del br0"])  # and br0.5, br0.7 with it
    agrees(model, netns, "deleting br0")


def test_lost_notifications_are_recovered_by_a_full_read(netns, vlan_support):
    """A receive queue too small for the storm: the kernel drops
    notifications (ENOBUFS) and the model reads the host again."""
    live = LiveHost(netns.name, rcvbuf=4096)
    try:
        ip_batch(netns.name, ["link add b%d type bridge" % i for i in range(300)]
                 + ["link set b%d up" % i for i in range(300)])
        agrees(live, netns, "a storm that overflowed the queue")
        assert live.full_reads >= 2, "the queue did not overflow: the test proves nothing"
    finally:
        live.close()


def test_port_filters_are_read_again_only_after_nftables_announces_a_change(netns, model):
    """virt-vlan's own writer, then a flush of the whole ruleset (as an admin's
    `nft flush ruleset`): the model's filters follow each."""
    from virtvlan.host import nftables, nftwrite
    from virtvlan.plan import actions as act

    ns = netns.name
    assert model.filters() == nftables.read_filters(ns) == ()
    script = "\n".join(act.SetPortFilter("vnet0", ("stp", "mac=52:54:00:00:00:01")).script())
    assert nftwrite.run_script_nft(script + "\n", ns) is None
    assert [f.port for f in model.filters()] == ["vnet0"]
    assert model.filters() == nftables.read_filters(ns)
    assert model.consistency() == []
    run("ip", "netns", "exec", ns, "nft", "flush", "ruleset")
    assert model.filters() == nftables.read_filters(ns) == ()


def test_a_device_made_during_the_check_is_no_drift_but_a_lasting_difference_is(
        netns, model, monkeypatch):
    """libvirt makes taps while other guests' hooks hold the host lock: a
    device that appears between the model's drain and the full read is in
    the read only. That passes; a difference that stays is reported."""
    ns = netns.name
    fresh, made = model._fresh, []

    def read_after_another_process_made_a_device():  # type: ignore[no-untyped-def]
        if not made:
            run("ip", "netns", "exec", ns, "ip", "link", "add", "late0", "type", "dummy")
            made.append("late0")
        return fresh()

    monkeypatch.setattr(model, "_fresh", read_after_another_process_made_a_device)
    assert model.consistency() == []
    assert made, "the device was not made during the check: the test proves nothing"
    late = [link for link in model.snapshot().links if link.name == "late0"]
    assert len(late) == 1
    # A device the model lost (as after a notification the kernel never sent).
    model._drop_link(late[0].index)
    assert model.consistency() == ["late0 (ifindex %d) is missing" % late[0].index]
