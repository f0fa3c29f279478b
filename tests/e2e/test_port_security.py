"""End to end: port security (issue 20, docs/port-security.md) through libvirt.

Real libvirtd, qemu (TCG) and kernel 6.1 in the test VM; every uplink of the
session config has `port-security = yes`, and emix allows no exception
(conftest.py). The shared agent runs during every test here: it serves the
hooks, wires the hot-plugged NIC and heals the flushed ruleset.

Oracles are independent of virt-vlan's own reader: `nft -j list table bridge
virt_vlan` (a tap's element in the map `ports`, the chain it jumps to, each
rule spelt from its expression, never from the comment virt-vlan writes) and
`bridge -d -json link show` for the `isolated` port flag. That the rules drop
what they should is proven with frames in tests/kernel/test_port_security.py;
here the question is whether libvirt's paths give each tap its rules and take
them away.
"""

from typing import List

import libvirt_env as env
from libvirt_env import Nic, links, mac, vv_access, vv_trunk
# The hot-plug helpers of the agent tests: an admin bridge `lan` where the
# NIC lands first, the metadata prepared before `virsh attach-interface`.
from test_agent import attach, lan, master_is, set_metadata  # noqa: F401 (lan: a fixture)

WAIT = 300  # seconds; TCG on a shared machine: a hook or an agent pass can take a minute

# The rules of a protected NIC, as `env.port_filters` spells them.
CONTROL = "ether daddr & ff:ff:ff:ff:ff:f0 == 01:80:c2:00:00:00 drop"
RA = "icmpv6 type == nd-router-advert drop"
DHCP = "udp sport == 67 udp dport == 68 drop"
DHCP6 = "udp sport == 547 drop"
TAGGED = "vlan id != 0 drop"
QINQ = "ether type == 8021ad drop"


def source(nic_mac: str) -> str:
    return "ether saddr != %s drop" % nic_mac


def access_rules(nic_mac: str) -> List[str]:
    """Every rule of an access NIC without exceptions or ips=: control
    frames, source MAC, ARP sender MAC, the link-layer address option of
    neighbour solicitations/advertisements (the MAC as a 48-bit number at
    offset 208 of the ICMPv6 message), rogue servers, tags."""
    return [CONTROL, source(nic_mac), "arp saddr ether != %s drop" % nic_mac,
            "icmpv6 type == { nd-neighbor-solicit, nd-neighbor-advert } @th,208,48 != %d "
            "@th,192,8 == { 1, 2 } @th,200,8 == 1 drop" % int(nic_mac.replace(":", ""), 16),
            RA, DHCP, DHCP6, TAGGED, QINQ]


def trunk_rules(nic_mac: str) -> List[str]:
    """A trunk NIC's: control frames, source MAC, 802.1ad (no guard="router")."""
    return [CONTROL, source(nic_mac), QINQ]


def isolated(tap: str) -> bool:
    port = env.bridge_port(tap)
    assert port is not None, "tap %s is no bridge port" % tap
    return port["isolated"]


def no_filter(*taps: str):  # type: ignore[no-untyped-def]
    """A wait_for predicate: no map element and no chain is left for `taps`."""
    def check() -> bool:
        filters = env.port_filters()
        return not (set(taps) & set(filters.ports)) and not (
            {"port-" + t for t in taps} & set(filters.chains))
    return check


# --- 1. start and stop -------------------------------------------------------------------

def test_started_guest_has_its_filters_and_leaves_none_when_it_stops(guests):
    acc, trk = mac(0xe11), mac(0xe12)
    guests.define("ps1", [Nic(acc, source_bridge="br05"), Nic(trk, source_bridge="br1")],
                  [vv_access(acc, 5), vv_trunk(trk, "5,7", uplink="etrk")])
    guests.start("ps1")  # paused: its CPUs have not run, so nothing passed unfiltered
    taps = env.taps("ps1")
    now = links()
    assert now[taps[acc]].get("master") == "br05" and now[taps[trk]].get("master") == "br1"

    filters = env.port_filters()
    # Each tap's element in the map jumps to its own chain; the base chain
    # dispatches on the input interface through that map.
    for tap in taps.values():
        assert filters.ports.get(tap) == "port-" + tap, filters.ports
    assert filters.chains.get("prerouting") == ["meta iifname vmap @ports"], filters.chains
    assert filters.of(taps[acc]) == access_rules(acc)
    assert filters.of(taps[trk]) == trunk_rules(trk)
    # The trunk keeps exactly its VLANs (the filter does not replace them).
    assert env.bridge_vlans(taps[trk]) == {5: [], 7: []}, env.bridge_vlans(taps[trk])
    assert not isolated(taps[acc]) and not isolated(taps[trk])

    guests.destroy("ps1")
    env.wait_for(no_filter(*taps.values()), WAIT,
                 "no chain or map element left for the taps %s of the stopped guest"
                 % sorted(taps.values()))


# --- 2. virt-vlan set --live -------------------------------------------------------------

def test_set_live_carries_the_filter_and_changes_it(guests):
    nic = mac(0xe21)
    guests.define("ps2", [Nic(nic, source_bridge="br05")], [vv_access(nic, 5)])
    guests.start("ps2")
    tap = env.tap("ps2")
    assert env.port_filters().of(tap) == access_rules(nic)

    # Re-tag: the tap moves to br07 with the same filter.
    env.virt_vlan("set", "ps2", "--mac", nic, "--access", "7", "--live")
    assert links()[tap].get("master") == "br07"
    assert env.port_filters().of(tap) == access_rules(nic)
    assert not isolated(tap)

    # Options: isolated, the router exception, its own address.
    env.virt_vlan("set", "ps2", "--mac", nic, "--access", "7", "--isolated", "--allow",
                  "router", "--ips", "10.0.7.10", "--live")
    live = env.vv_metadata("ps2", live=True)
    assert 'allow="router"' in live and 'isolated="yes"' in live, live
    rules = env.port_filters().of(tap)
    assert rules is not None, "tap %s lost its filter: %s" % (tap, env.port_filters())
    for gone in (RA, DHCP, DHCP6):
        assert gone not in rules, rules
    for kept in (CONTROL, source(nic), TAGGED, QINQ):
        assert kept in rules, rules
    assert "arp saddr ip != { 0.0.0.0, 10.0.7.10 } drop" in rules, rules
    assert isolated(tap)
    assert links()[tap].get("master") == "br07"


# --- 3. hot-plug through the agent -------------------------------------------------------

def test_hotplugged_nic_gets_its_filter_from_the_agent(guests, lan):
    name = guests.define("ps3", [], acpi=True)
    guests.start(name)
    nic = mac(0xe31)
    set_metadata(name, [vv_access(nic, 5, isolated="yes")])

    tap = attach(name, nic)  # onto `lan`: libvirt runs no hook for it, the agent wires it

    def wired() -> bool:
        port = env.bridge_port(tap)
        return (master_is(tap, "br05")() and env.port_filters().of(tap) == access_rules(nic)
                and port is not None and port["isolated"] is True)
    env.wait_for(wired, WAIT, "hot-plugged tap %s on br05 with its filter, isolated" % tap)
    assert env.ports(links(), "lan") == []

    guests.destroy(name)
    env.wait_for(no_filter(tap), WAIT, "no filter left for the hot-plugged tap %s" % tap)


# --- 4. an exception the host does not allow --------------------------------------------

def test_exception_not_allowed_on_the_uplink_refuses_the_start(guests):
    nic = mac(0xe41)
    guests.define("ps4", [Nic(nic, source_bridge="br25")],
                  [vv_access(nic, 5, uplink="emix", allow="router")])
    before, filters, reserved = env.topology(), env.port_filters(), env.reservations()

    proc = guests.start("ps4", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, "virsh start succeeded:\n%s" % output
    said = [line for line in output.splitlines() if "virt-vlan: " in line]
    assert len(said) == 1, "expected virt-vlan's one line in virsh's error:\n%s" % output
    assert ("domain ps4, interface %s: allow='router' is not permitted on uplink emix "
            "(allowed-exceptions = none in [uplink emix]" % nic) in said[0], output
    assert env.state("ps4") == "shut off"
    # Nothing built: no link, no filter, no reservation.
    assert env.topology() == before, "kernel state changed by a refused start"
    assert env.port_filters() == filters
    assert env.reservations() == reserved


# --- 5. nft flush ruleset ----------------------------------------------------------------

def test_flushed_ruleset_is_rebuilt_by_the_agent(guests):
    nic = mac(0xe51)
    guests.define("ps5", [Nic(nic, source_bridge="br07")], [vv_access(nic, 7, isolated="yes")])
    guests.start("ps5")
    tap = env.tap("ps5")
    before = env.port_filters()
    assert before.of(tap) == access_rules(nic) and before.handle is not None

    env.run(["nft", "flush", "ruleset"])  # removes every table, virt-vlan's with it

    # Rebuilt: a new table (the kernel gives it a new handle) with the tap's
    # chain and its map element; no hook runs, so only the agent can do it.
    def rebuilt() -> bool:
        now = env.port_filters()
        return now.handle not in (None, before.handle) and now.of(tap) == access_rules(nic)
    env.wait_for(rebuilt, WAIT, "the agent to rebuild the filter of %s after `nft flush "
                 "ruleset`" % tap)
    assert env.port_filters().chains.get("prerouting") == ["meta iifname vmap @ports"]
    assert isolated(tap) and links()[tap].get("master") == "br07"
