"""Trunks carry only what they are allowed (issue 7), on a real kernel.

The lab (FilterLab in topology.py): a switch namespace with VLANs 5, 7, 9
and 10 (10.V.0.1/24) plus an untagged 10.99.0.1/24; the host namespace runs
virt-vlan with eth0 trunk-wired into br0, allowed VLANs 5,7,9, host VLAN 10
(10.10.0.2/24 on br0.10) and the host's own untagged 10.99.0.2/24 on br0.
Guests are namespaces behind veth "taps"; a trunk guest terminates VLANs on
its own eth0.V. Every address lives in its VLAN's subnet and every namespace
answers ARP only on the interface an address is on, so a reply proves the
VLAN the frames crossed.

Three oracles, none of them virt-vlan's own code: traffic (both ways, and a
negative check only after a positive one from the same namespace),
`bridge -json vlan show` (exact tables of br0 and its ports after every
step) and `ip -d -json link` (vlan_filtering). Two pings of the host
(untagged and br0.10, 100 ms apart) run from the switch through every test;
each may lose at most one reply.

Issue 7's scenarios: 1 test_trunk_guest_sees_only_its_list, 2
test_native_vlan, 3 every test (FilterLab.check_host_pings), 4 every test
(FilterLab.assert_tables), 5 test_changed_list_updates_the_tap, 6
test_adopted_bridge_converted_without_loss and
test_bridge_made_by_an_earlier_virt_vlan_converted_at_next_plug, 7 test_full_trunk_as_ranges (the
speed figure is in tests/bench/trunk_filter.py).
"""

import os
import re

import pytest

try:
    from .topology import (HOST_NATIVE, HOST_V10, SW5, SW7, SW9, SW10, SW_NATIVE, FilterLab,
                           Pinger, bridge_ranges, entries, host_state, ip_batch, reachable,
                           state_diff, unreachable, vid_set, vlan_filtering)
except ImportError:  # tests/kernel is no package: pytest put this folder on sys.path
    from topology import (HOST_NATIVE, HOST_V10, SW5, SW7, SW9,  # type: ignore[no-redef]
                          SW10, SW_NATIVE, FilterLab, Pinger, bridge_ranges, entries,
                          host_state, ip_batch, reachable, state_diff, unreachable, vid_set,
                          vlan_filtering)

# br0 and its uplink before any guest: the host's untagged VLAN (the bridge's
# default PVID 1) untagged, and host VLAN 10 tagged for br0.10.
BASE = {"eth0": entries([10], pvid=1), "br0": entries([10], pvid=1)}


@pytest.fixture(scope="module", autouse=True)
def _preload():
    """Import what forked virt-vlan runs need once, before the first test."""
    if os.environ.get("VIRT_VLAN_IN_VM") == "1":
        import virtvlan.apply.executor  # noqa: F401
        import virtvlan.cli.commands  # noqa: F401
        import virtvlan.apply.engine  # noqa: F401


@pytest.fixture
def lab(tmp_path):
    lab = FilterLab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def built(lab: FilterLab, **kw) -> FilterLab:
    """The lab with a bridge virt-vlan made: filtering on, the base tables."""
    lab.build_filtering(**kw)
    assert vlan_filtering(lab.host, "br0") == 1, "virt-vlan made br0 without VLAN filtering"
    lab.assert_tables(BASE, "after the bootstrap plug and unplug")
    return lab


def one_line_error(result, *needles: str) -> str:
    assert result.rc == 1, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result
    for needle in needles:
        assert re.search(needle, lines[0]), "%r not in %r" % (needle, lines[0])
    return lines[0]


def assert_status(lab: FilterLab, port: str, pvid: str, table) -> None:
    """`virt-vlan status` against the oracle's table of `port`: the PVID and
    the port's VLANs (all of them, or the tagged ones without the PVID)."""
    shown_pvid, shown = lab.status_port(port)
    assert shown_pvid == pvid, (port, shown_pvid, pvid)
    tagged = sorted(vid for vid, flags in table.items() if flags == "T")
    assert vid_set(shown) in (sorted(table), tagged), (port, shown, table)


# 1 ---------------------------------------------------------------------------

def test_trunk_guest_sees_only_its_list(lab):
    built(lab)
    gt = lab.filter_guest("gt", "vnet1", tagged={5: "10.5.0.20/24", 7: "10.7.0.20/24",
                                                 9: "10.9.0.20/24", 10: "10.10.0.20/24"})
    ga = lab.filter_guest("ga", "vnet2", untagged=["10.9.0.10/24"])

    lab.plug_trunk("vnet1", "5,7")
    lab.assert_tables({"eth0": entries([5, 7, 10], pvid=1), "br0": entries([10], pvid=1),
                       "vnet1": entries([5, 7])}, "trunk guest 5,7 plugged")
    lab.plug("vnet2", access=9)
    with_access = {"eth0": entries([5, 7, 9, 10], pvid=1), "br0": entries([9, 10], pvid=1),
                   "vnet1": entries([5, 7])}
    lab.assert_tables(with_access, "access guest on VLAN 9 plugged")

    # Positive, both ways.
    assert reachable(gt, SW5), "trunk guest cannot reach VLAN 5"
    assert reachable(gt, SW7), "trunk guest cannot reach VLAN 7"
    assert reachable(lab.sw, "10.5.0.20"), "switch cannot reach the trunk guest on VLAN 5"
    assert reachable(lab.sw, "10.7.0.20"), "switch cannot reach the trunk guest on VLAN 7"
    assert reachable(ga, SW9), "access guest on VLAN 9 cannot reach the switch"
    assert reachable(lab.sw, "10.9.0.10"), "switch cannot reach the access guest on VLAN 9"
    assert reachable(lab.host, SW10), "host cannot reach the switch on its VLAN 10"
    # Negative: VLAN 9 and the host's VLAN 10 are not on the guest's list.
    for addr in (SW9, "10.9.0.10", SW10, HOST_V10):
        assert unreachable(gt, addr), "trunk guest with vlans=5,7 reaches %s" % addr
    for addr in ("10.9.0.20", "10.10.0.20"):
        assert unreachable(lab.sw, addr), "switch reaches the trunk guest's %s" % addr
    assert unreachable(ga, "10.9.0.20"), "access guest on 9 reaches the trunk guest's VLAN 9"
    assert unreachable(lab.host, "10.10.0.20"), "host VLAN 10 reaches the trunk guest"

    assert "vlan_filtering 1" in lab.status_bridge(), lab.status_bridge()
    assert_status(lab, "vnet1", "none", entries([5, 7]))
    lab.assert_tables(with_access, "after the traffic checks and status")

    lab.unplug("vnet2")
    lab.assert_tables({"eth0": entries([5, 7, 10], pvid=1), "br0": entries([10], pvid=1),
                       "vnet1": entries([5, 7])}, "access guest unplugged")
    assert reachable(gt, SW5), "unplugging the access guest broke the trunk guest"
    lab.unplug("vnet1")
    lab.assert_tables(BASE, "last guest unplugged")
    lab.check_host_pings()


# 2 ---------------------------------------------------------------------------

def test_native_vlan(lab):
    built(lab)
    # Tagged 5 and 7 on eth0.V; untagged on eth0 an address in VLAN 9 (the
    # native VLAN to be) and one in the host's untagged subnet.
    g = lab.filter_guest("g", "vnet1", untagged=["10.9.0.30/24", "10.99.0.30/24"],
                         tagged={5: "10.5.0.20/24", 7: "10.7.0.20/24"})

    lab.plug_trunk("vnet1", "5,7")
    lab.assert_tables({"eth0": entries([5, 7, 10], pvid=1), "br0": entries([10], pvid=1),
                       "vnet1": entries([5, 7])}, "5,7 without native")
    assert reachable(g, SW5), "trunk guest cannot reach VLAN 5"
    assert reachable(lab.sw, "10.5.0.20")
    # Without native the guest's untagged frames reach nothing: not VLAN 9,
    # not the host's untagged VLAN (switch or host).
    for addr in (SW9, SW_NATIVE, HOST_NATIVE):
        assert unreachable(g, addr), "untagged frames of a guest without native reach " + addr
    for addr in ("10.9.0.30", "10.99.0.30"):
        assert unreachable(lab.sw, addr), "switch reaches the untagged guest address " + addr

    lab.plug_trunk("vnet1", "5,7", native=9)
    with_native = {"eth0": entries([5, 7, 9, 10], pvid=1), "br0": entries([10], pvid=1),
                   "vnet1": entries([5, 7], pvid=9)}
    lab.assert_tables(with_native, "5,7 with native 9")
    assert reachable(g, SW9), "native VLAN 9: untagged guest cannot reach VLAN 9"
    assert reachable(lab.sw, "10.9.0.30"), "native VLAN 9: switch cannot reach the guest"
    assert reachable(g, SW5) and reachable(g, SW7), "native broke the tagged VLANs"
    for addr in (SW_NATIVE, HOST_NATIVE):
        assert unreachable(g, addr), "native VLAN 9 guest reaches the host's untagged " + addr
    assert unreachable(lab.sw, "10.99.0.30"), "the host's untagged VLAN reaches the guest"
    assert_status(lab, "vnet1", "9", with_native["vnet1"])

    lab.unplug("vnet1")
    lab.assert_tables(BASE, "last guest unplugged")
    lab.check_host_pings()


# 5 ---------------------------------------------------------------------------

def test_changed_list_updates_the_tap(lab):
    built(lab)
    g = lab.filter_guest("g", "vnet1", tagged={5: "10.5.0.20/24", 7: "10.7.0.20/24",
                                               9: "10.9.0.20/24"})
    lab.plug_trunk("vnet1", "5,7")
    lab.assert_tables({"eth0": entries([5, 7, 10], pvid=1), "br0": entries([10], pvid=1),
                       "vnet1": entries([5, 7])}, "first start with 5,7")
    assert reachable(g, SW7)
    assert unreachable(g, SW9)

    # The guest's list changed between two starts: 5,9.
    lab.plug_trunk("vnet1", "5,9")
    second = {"eth0": entries([5, 9, 10], pvid=1), "br0": entries([10], pvid=1),
              "vnet1": entries([5, 9])}
    lab.assert_tables(second, "second start with 5,9")
    assert reachable(g, SW9), "the new VLAN 9 does not work"
    assert reachable(g, SW5), "VLAN 5 kept on the list stopped working"
    assert unreachable(g, SW7), "VLAN 7, gone from the list, still works"

    # Plugging twice plans nothing and changes nothing.
    dry = lab.ok("plug", "vnet1", "--trunk", "5,9", "--dry-run")
    assert dry.out.strip() == "# nothing to change", dry
    assert lab.plan_length("vnet1", "trunk", (5, 9)) == 0
    before = host_state(lab.host)
    lab.plug_trunk("vnet1", "5,9")
    lab.assert_tables(second, "the same plug again")
    diff = state_diff(before, host_state(lab.host))
    assert diff == "", "a second identical plug changed the host:\n" + diff

    # A native VLAN added, then the same again: also nothing the second time.
    lab.plug_trunk("vnet1", "5", native=7)
    third = {"eth0": entries([5, 7, 10], pvid=1), "br0": entries([10], pvid=1),
             "vnet1": entries([5], pvid=7)}
    lab.assert_tables(third, "third start with 5, native 7")
    dry = lab.ok("plug", "vnet1", "--trunk", "5", "--native", "7", "--dry-run")
    assert dry.out.strip() == "# nothing to change", dry

    lab.unplug("vnet1")
    lab.assert_tables(BASE, "last guest unplugged")
    lab.check_host_pings()


# 6 ---------------------------------------------------------------------------

@pytest.fixture
def adopted(lab):
    """The host's network config made br0 (filtering off) with eth0, the
    untagged address and br0.10; virt-vlan's config says trunk-filtering = no."""
    lab.build_filtering(adopted=True, trunk_filtering=False)
    assert vlan_filtering(lab.host, "br0") == 0
    return lab


def test_adopted_bridge_converted_without_loss(adopted):
    lab = adopted
    ga = lab.filter_guest("ga", "vnet2", untagged=["10.9.0.10/24"])
    gt = lab.filter_guest("gt", "vnet1", tagged={5: "10.5.0.20/24", 7: "10.7.0.20/24",
                                                 9: "10.9.0.20/24"})
    gn = lab.filter_guest("gn", "vnet3", tagged={7: "10.7.0.30/24"})

    # Filtering off and not asked for: served as before, with a warning.
    result = lab.vv("plug", "vnet2", "--access", "9")
    assert result.rc == 0, result
    result = lab.vv("plug", "vnet1", "--trunk", "5,7")
    assert result.rc == 0 and "br0" in result.err, (
        "no warning about the unfiltered bridge br0 at a trunk plug: %r" % result)
    assert vlan_filtering(lab.host, "br0") == 0, "br0 converted without trunk-filtering = yes"
    assert "vlan_filtering 0" in lab.status_bridge(), lab.status_bridge()
    # Nothing programmed on the trunk guest's tap: the kernel's default PVID.
    assert lab.trunk_tables().get("vnet1") == entries(pvid=1), lab.trunk_tables()
    assert reachable(ga, SW9), "access guest on the unfiltered bridge cannot reach VLAN 9"
    assert reachable(gt, SW5) and reachable(gt, SW7), "trunk guest on the unfiltered bridge"

    # Now the admin asks for filtering; the next plug converts br0.
    lab.set_trunk_filtering(True)
    access_ping = Pinger(ga, SW9)
    trunk_ping = Pinger(gt, SW7)
    lab.children += [access_ping, trunk_ping]
    result = lab.vv("plug", "vnet3", "--trunk", "7")
    assert result.rc == 0, result
    assert "vnet1" in result.err, (
        "the trunk guest started before the conversion got its VLANs without a warning "
        "naming its tap: %r" % result)
    assert vlan_filtering(lab.host, "br0") == 1, "trunk-filtering = yes did not convert br0"
    for name, pinger in (("access guest (VLAN 9)", access_ping),
                         ("earlier trunk guest (VLAN 7)", trunk_ping)):
        assert pinger.running(), "ping from the %s stopped" % name
        sent, lost, summary = pinger.result()
        print("conversion, %s: %s" % (name, summary))
        if pinger is access_ping:
            assert sent >= 10 and len(lost) <= 1, "access guest during conversion: " + summary
    lab.check_host_pings()

    converted = {"eth0": entries([5, 7, 9, 10], pvid=1), "br0": entries([9, 10], pvid=1),
                 "vnet1": entries([5, 7, 9], pvid=1), "vnet3": entries([7])}
    # The earlier trunk guest (vnet1): every allowed VLAN tagged and the
    # default PVID it had, until it is plugged again with its own list.
    lab.assert_tables(converted, "after the conversion")
    assert "vlan_filtering 1" in lab.status_bridge(), lab.status_bridge()
    assert reachable(gn, SW7), "trunk guest plugged at the conversion cannot reach VLAN 7"
    assert reachable(gt, SW5) and reachable(gt, SW7), "earlier trunk guest lost a VLAN"
    assert reachable(gt, SW9), "earlier trunk guest did not get every allowed VLAN"
    assert reachable(ga, SW9), "access guest lost VLAN 9"
    for addr in (SW10, HOST_V10):
        assert unreachable(gt, addr), "earlier trunk guest reaches host VLAN 10 at " + addr

    # Its next start narrows it to its own list.
    lab.plug_trunk("vnet1", "5,7")
    assert lab.trunk_tables()["vnet1"] == entries([5, 7]), lab.trunk_tables()
    assert reachable(gt, SW5) and unreachable(gt, SW9)
    for tap in ("vnet1", "vnet2", "vnet3"):
        lab.unplug(tap)
    lab.assert_tables(BASE, "last guest unplugged")
    assert vlan_filtering(lab.host, "br0") == 1


# 7 ---------------------------------------------------------------------------

def test_full_trunk_as_ranges(lab):
    # Every VLAN but the host's 10 may be asked for; 1 is br0's default PVID,
    # the VLAN the uplink carries untagged.
    built(lab, allowed="1-9,11-4094")
    g = lab.filter_guest("g", "vnet1", tagged={5: "10.5.0.20/24", 9: "10.9.0.20/24",
                                               10: "10.10.0.20/24"})
    before = host_state(lab.host)
    for args in (("--trunk", "1-9,11-4094"), ("--trunk", "5", "--native", "1")):
        result = lab.vv("plug", "vnet1", *args)
        one_line_error(result, r"\bVLAN 1\b", "br0")
        diff = state_diff(before, host_state(lab.host))
        assert diff == "", "a refused plug (%s) changed the host:\n%s" % (args, diff)
        lab.assert_tables(BASE, "refused %s" % " ".join(args))

    lab.plug_trunk("vnet1", "2-9,11-4094")
    assert bridge_ranges(lab.host, "vnet1") == [(2, 9, "T"), (11, 4094, "T")]
    assert bridge_ranges(lab.host, "eth0") == [(1, 1, "PU"), (2, 4094, "T")]
    assert bridge_ranges(lab.host, "br0") == [(1, 1, "PU"), (10, 10, "T")]
    lab.assert_tables({"eth0": entries(range(2, 4095), pvid=1), "br0": entries([10], pvid=1),
                       "vnet1": entries(list(range(2, 10)) + list(range(11, 4095)))},
                      "2-9,11-4094 plugged")
    assert_status(lab, "vnet1", "none", entries(list(range(2, 10)) + list(range(11, 4095))))
    assert reachable(g, SW5) and reachable(g, SW9), "full trunk guest cannot reach 5 and 9"
    assert unreachable(g, SW10) and unreachable(g, HOST_V10), "full trunk reaches host VLAN 10"

    dry = lab.ok("plug", "vnet1", "--trunk", "2-9,11-4094", "--dry-run")
    assert dry.out.strip() == "# nothing to change", dry
    lab.unplug("vnet1")
    lab.assert_tables(BASE, "last guest unplugged")
    lab.check_host_pings()



def test_bridge_made_by_an_earlier_virt_vlan_converted_at_next_plug(lab):
    # What a virt-vlan without filtering left behind: br0 (its mark, the
    # uplink's MAC, the host's address), br0.10, an access guest on VLAN 9
    # (br0.9 -> br09) and a trunk guest's tap on br0, all unfiltered.
    lab.build_filtering(adopted=True)  # trunk-filtering = no: ours converts anyway
    ga = lab.filter_guest("ga", "vnet2", untagged=["10.9.0.10/24"])
    gt = lab.filter_guest("gt", "vnet1", tagged={5: "10.5.0.20/24", 7: "10.7.0.20/24"})
    gn = lab.filter_guest("gn", "vnet3", tagged={7: "10.7.0.30/24"})
    mark = "virt-vlan:managed"
    ip_batch(lab.host, [
        "link set br0 alias " + mark, "link set br0.10 alias " + mark,
        "link add link br0 name br0.9 type vlan id 9", "link set br0.9 alias " + mark,
        "link add br09 type bridge forward_delay 0 stp_state 0", "link set br09 alias " + mark,
        "link set br0.9 master br09", "link set br0.9 up", "link set br09 up",
        "link set vnet2 master br09", "link set vnet1 master br0"])
    assert reachable(ga, SW9), "setup: access guest cannot reach VLAN 9"
    assert reachable(gt, SW7), "setup: trunk guest cannot reach VLAN 7"

    access_ping = Pinger(ga, SW9)
    lab.children.append(access_ping)
    result = lab.vv("plug", "vnet3", "--trunk", "7")
    assert result.rc == 0, result
    assert "vnet1" in result.err, (
        "the trunk guest started before the conversion got its VLANs without a warning "
        "naming its tap: %r" % result)
    assert vlan_filtering(lab.host, "br0") == 1, "virt-vlan's own unfiltered br0 not converted"
    sent, lost, summary = access_ping.result()
    print("conversion of virt-vlan's br0, access guest (VLAN 9): " + summary)
    assert sent >= 10 and len(lost) <= 1, "access guest during conversion: " + summary
    lab.check_host_pings()

    lab.assert_tables({"eth0": entries([5, 7, 9, 10], pvid=1), "br0": entries([9, 10], pvid=1),
                       "vnet1": entries([5, 7, 9], pvid=1), "vnet3": entries([7])},
                      "after the conversion")
    assert reachable(gn, SW7), "trunk guest plugged at the conversion cannot reach VLAN 7"
    assert reachable(gt, SW5) and reachable(gt, SW7), "earlier trunk guest lost a VLAN"
    assert unreachable(gt, HOST_V10), "earlier trunk guest reaches host VLAN 10"
