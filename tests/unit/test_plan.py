"""plan.py and actions.py on hand-made snapshots: plans, refusals, cleanup.

Configs come from conftest.py:
  access_config: [uplink eth0], access wiring -> eth0.<V> feeds br0<V>
  trunk_config:  [uplink eth1], trunk wiring  -> eth1 in br0, br0.<V> feeds br0<V>
  mixed_config:  eth0 access (br0<V>, eth0.<V>) + eth1 trunk (br1, br1.<V>, br1<V>),
                 host-vlans = 10 on eth1
Every refusal is pinned by its full message.
"""

from dataclasses import replace

import pytest

from virtvlan.plan.actions import (
    AddBridgeVlan,
    CreateBridge,
    CreateVlan,
    DelBridgeVlan,
    DeleteLink,
    MoveAddresses,
    Plan,
    Release,
    SetDown,
    SetMaster,
    SetMtu,
    SetUp,
    SetVlanFiltering,
)
from virtvlan.errors import InputError, Refused
from virtvlan.model import Address, Link, PortVlans, Route, Snapshot, Want
from virtvlan.plan.planner import describe, plan, plan_cleanup, plan_unplug

WHO = "domain vm1, interface 52:54:00:00:00:01"
ACCESS_HINT = "[uplink eth0] of test.conf"
TRUNK_HINT = "[uplink eth1] of test.conf"

ETH0 = Link("eth0", index=2, mac="52:54:00:aa:00:00")
ETH1 = Link("eth1", index=3, mac="52:54:00:aa:00:01")
VNET0 = Link("vnet0", kind="tun", index=20)
VNET1 = Link("vnet1", kind="tun", index=21)
ADDR4 = Address("inet", "192.0.2.10", 24)
ADDR6 = Address("inet6", "2001:db8::10", 64)
DEFAULT4 = Route("inet", "default", "eth1", gateway="192.0.2.1")

BRIDGE_OPTS = ("type bridge stp_state 0 forward_delay 0 nf_call_iptables 0 nf_call_ip6tables 0 "
               "nf_call_arptables 0")


def access(vlan, port="vnet0", uplink="eth0"):
    return Want(uplink=uplink, mode="access", vlans=(vlan,), port=port, who=WHO)


def trunk(*vlans, port="vnet0", uplink="eth1"):
    return Want(uplink=uplink, mode="trunk", vlans=vlans, port=port, who=WHO)


def host(*links, routes=()):
    return Snapshot(links=links, routes=routes)


def refusal(wants, config, snap):
    with pytest.raises(Refused) as info:
        plan(wants, config, snap)
    message = str(info.value)
    assert "\n" not in message
    return message


def wired(wants, config, snap):
    """The snapshot after applying the plan for `wants`."""
    return plan(wants, config, snap).simulate(snap)


# --- access wiring ------------------------------------------------------------


def test_access_creates_feed_then_bridge_then_enslaves_then_ups(access_config):
    result = plan([access(5)], access_config, host(ETH0, VNET0))
    assert result.actions == (
        CreateVlan("eth0.5", "eth0", 5),
        CreateBridge("br05", 1500),
        SetMaster("eth0.5", "br05"),
        SetMaster("vnet0", "br05"),
        SetUp("eth0.5"),
        SetUp("br05"),
    )


def test_access_plan_renders_as_ip_commands(access_config):
    assert plan([access(5)], access_config, host(ETH0, VNET0)).render() == (
        "ip link add link eth0 name eth0.5 type vlan id 5",
        "ip link set dev eth0.5 alias virt-vlan:managed",
        "ip link set dev eth0.5 addrgenmode none",
        "ip link add name br05 mtu 1500 " + BRIDGE_OPTS,
        "ip link set dev br05 alias virt-vlan:managed",
        "ip link set dev br05 addrgenmode none",
        "ip link set dev eth0.5 master br05",
        "ip link set dev vnet0 master br05",
        "ip link set dev eth0.5 up",
        "ip link set dev br05 up",
    )


def test_prepare_without_port_builds_only_the_bridge(access_config):
    result = plan([access(5, port=None)], access_config, host(ETH0))
    assert SetMaster("vnet0", "br05") not in result.actions
    assert [type(a) for a in result.actions] == [CreateVlan, CreateBridge, SetMaster, SetUp, SetUp]


def test_already_wired_host_gives_an_empty_plan(access_config):
    snap = wired([access(5)], access_config, host(ETH0, VNET0))
    result = plan([access(5)], access_config, snap)
    assert not result
    assert describe(result) is None


def test_down_tap_is_brought_up(access_config):
    result = plan([access(5)], access_config, host(ETH0, replace(VNET0, up=False)))
    assert result.actions[-1] == SetUp("vnet0")


def test_two_guests_on_one_vlan_share_the_bridge(access_config):
    result = plan([access(5), access(5, port="vnet1")], access_config, host(ETH0, VNET0, VNET1))
    bridges = [a for a in result.actions if isinstance(a, CreateBridge)]
    assert bridges == [CreateBridge("br05", 1500)]
    assert SetMaster("vnet1", "br05") in result.actions


def test_two_vlans_get_two_feeds_and_bridges(access_config):
    result = plan([access(5), access(7, port="vnet1")], access_config, host(ETH0, VNET0, VNET1))
    creates = [a for a in result.actions if isinstance(a, (CreateVlan, CreateBridge))]
    assert creates == [CreateVlan("eth0.5", "eth0", 5), CreateBridge("br05", 1500),
                       CreateVlan("eth0.7", "eth0", 7), CreateBridge("br07", 1500)]


def test_admin_made_feed_and_bridge_are_adopted(access_config):
    snap = host(ETH0, Link("eth0.5", kind="vlan", parent="eth0", vlan_id=5, master="br05"),
                Link("br05", kind="bridge"), VNET0)
    assert plan([access(5)], access_config, snap).actions == (SetMaster("vnet0", "br05"),)


def test_admin_made_feed_alone_is_adopted(access_config):
    snap = host(ETH0, Link("eth0.5", kind="vlan", parent="eth0", vlan_id=5, up=False), VNET0)
    assert plan([access(5)], access_config, snap).actions == (
        CreateBridge("br05", 1500), SetMaster("eth0.5", "br05"), SetMaster("vnet0", "br05"),
        SetUp("eth0.5"), SetUp("br05"))


def test_bridge_mtu_follows_the_uplink(access_config):
    snap = host(replace(ETH0, mtu=9000), replace(VNET0, mtu=9000))
    assert CreateBridge("br05", 9000) in plan([access(5)], access_config, snap).actions


def test_tap_with_other_mtu_gets_set_mtu_before_set_master(access_config):
    snap = host(replace(ETH0, mtu=9000), VNET0)
    actions = plan([access(5)], access_config, snap).actions
    assert actions.index(SetMtu("vnet0", 9000)) < actions.index(SetMaster("vnet0", "br05"))


def test_tap_with_bigger_mtu_is_lowered_to_the_bridge(access_config):
    actions = plan([access(5)], access_config, host(ETH0, replace(VNET0, mtu=9000))).actions
    assert SetMtu("vnet0", 1500) in actions


def test_veth_is_accepted_as_port(access_config):
    snap = host(ETH0, Link("veth-g1", kind="veth"))
    assert SetMaster("veth-g1", "br05") in plan([access(5, port="veth-g1")], access_config,
                                                snap).actions


def test_tap_on_another_virt_vlan_bridge_is_moved(access_config):
    snap = wired([access(5)], access_config, host(ETH0, VNET0))
    actions = plan([access(7)], access_config, snap).actions
    assert SetMaster("vnet0", "br07") in actions


# --- trunk wiring -------------------------------------------------------------


def test_trunk_creates_bridge_with_uplink_mac_and_moves_addresses(trunk_config):
    eth1 = replace(ETH1, addresses=(ADDR4,))
    result = plan([trunk(5, 7)], trunk_config, host(eth1, VNET0, routes=(DEFAULT4,)))
    assert result.actions == (
        CreateBridge("br0", 1500, mac="52:54:00:aa:00:01", addrgen=True),
        # The uplink moves first, onto a bridge that is already up, and its
        # addresses follow at once: no window where host traffic is dropped.
        SetUp("br0"),
        SetMaster("eth1", "br0"),
        MoveAddresses("eth1", "br0", (ADDR4,), (DEFAULT4,)),
        SetMaster("vnet0", "br0"),
        # A bridge virt-vlan creates filters: the tap gets exactly its list
        # (the default PVID goes), the uplink what is in use, and filtering
        # is switched on last, once every entry is there.
        DelBridgeVlan("vnet0", 1, 1),
        AddBridgeVlan("vnet0", 5, 5),
        AddBridgeVlan("vnet0", 7, 7),
        AddBridgeVlan("eth1", 5, 5),
        AddBridgeVlan("eth1", 7, 7),
        SetVlanFiltering("br0"),
    )


def test_trunk_plan_renders_address_move_in_safe_order(trunk_config):
    eth1 = replace(ETH1, addresses=(ADDR4, ADDR6))
    lines = plan([trunk(5)], trunk_config, host(eth1, VNET0, routes=(DEFAULT4,))).render()
    assert lines[0] == "ip link add name br0 mtu 1500 address 52:54:00:aa:00:01 " + BRIDGE_OPTS
    # The bridge carries host addresses: it keeps IPv6 link-local generation.
    assert lines[1] == "ip link set dev br0 alias virt-vlan:managed"
    assert lines[2:10] == (
        "ip link set dev br0 up",
        "ip link set dev eth1 master br0",
        "ip addr add 192.0.2.10/24 dev br0",
        "ip addr add 2001:db8::10/64 dev br0",
        "ip -4 route replace default via 192.0.2.1 dev br0 proto static",
        "ip addr del 192.0.2.10/24 dev eth1",
        "ip addr del 2001:db8::10/64 dev eth1",
        "ip link set dev vnet0 master br0",
    )


def test_trunk_without_host_addresses_moves_nothing(trunk_config):
    result = plan([trunk(5)], trunk_config, host(ETH1, VNET0))
    assert result.actions[0] == CreateBridge("br0", 1500, mac="52:54:00:aa:00:01", addrgen=False)
    assert not any(isinstance(a, MoveAddresses) for a in result.actions)


def test_trunk_route_alone_counts_as_host_address(trunk_config):
    result = plan([trunk(5)], trunk_config, host(ETH1, VNET0, routes=(DEFAULT4,)))
    assert MoveAddresses("eth1", "br0", (), (DEFAULT4,)) in result.actions


def test_trunk_bridge_mtu_is_the_uplink_mtu(trunk_config):
    result = plan([trunk(5)], trunk_config, host(replace(ETH1, mtu=9000), VNET0))
    assert result.actions[0].mtu == 9000
    assert SetMtu("vnet0", 9000) in result.actions


def test_access_guest_on_trunk_wiring_is_fed_from_the_trunk_bridge(trunk_config):
    result = plan([access(5, uplink="eth1")], trunk_config, host(ETH1, VNET0))
    assert result.actions == (
        CreateBridge("br0", 1500, mac="52:54:00:aa:00:01"),
        SetUp("br0"),
        SetMaster("eth1", "br0"),
        CreateVlan("br0.5", "br0", 5),
        CreateBridge("br05", 1500),
        SetMaster("br0.5", "br05"),
        SetMaster("vnet0", "br05"),
        SetUp("br0.5"),
        SetUp("br05"),
        # br0.5 needs VLAN 5 on the uplink and a tagged self entry.
        AddBridgeVlan("eth1", 5, 5),
        AddBridgeVlan("br0", 5, 5, self_=True),
        SetVlanFiltering("br0"),
    )


def test_existing_trunk_bridge_with_the_uplink_is_adopted(trunk_config):
    snap = host(replace(ETH1, master="br0"), Link("br0", kind="bridge", addresses=(ADDR4,)),
                VNET0, routes=(replace(DEFAULT4, dev="br0"),))
    assert plan([trunk(5)], trunk_config, snap).actions == (SetMaster("vnet0", "br0"),)


def test_existing_trunk_bridge_without_the_uplink_gets_it(trunk_config):
    snap = host(replace(ETH1, addresses=(ADDR4,)), Link("br0", kind="bridge"), VNET0)
    assert plan([trunk(5)], trunk_config, snap).actions == (
        SetMaster("eth1", "br0"), MoveAddresses("eth1", "br0", (ADDR4,), ()),
        SetMaster("vnet0", "br0"))


def test_dhcp_address_is_fine_once_the_uplink_is_in_the_trunk_bridge(trunk_config):
    snap = host(replace(ETH1, master="br0"),
                Link("br0", kind="bridge", addresses=(replace(ADDR4, dynamic=True),)), VNET0)
    assert plan([trunk(5)], trunk_config, snap).actions == (SetMaster("vnet0", "br0"),)


def test_host_vlans_are_created_on_the_trunk_bridge_with_link_local(mixed_config):
    result = plan([trunk(5)], mixed_config, host(ETH0, ETH1, VNET0))
    assert CreateVlan("br1.10", "br1", 10, addrgen=True) in result.actions
    assert SetUp("br1.10") in result.actions
    assert CreateVlan("br1.10", "br1", 10, addrgen=True).render() == (
        "ip link add link br1 name br1.10 type vlan id 10",
        "ip link set dev br1.10 alias virt-vlan:managed")


def test_trunk_plan_is_idempotent(mixed_config):
    snap = host(ETH0, replace(ETH1, addresses=(ADDR4, ADDR6)), VNET0, VNET1, routes=(DEFAULT4,))
    wants = [trunk(5, 100), access(7, port="vnet1")]
    assert not plan(wants, mixed_config, wired(wants, mixed_config, snap))


# --- refusals -----------------------------------------------------------------


def test_refuses_vlan_device_on_a_bridge_port(access_config):
    snap = host(replace(ETH0, master="br0"), Link("br0", kind="bridge"), VNET0)
    assert refusal([access(5)], access_config, snap) == (
        WHO + ": refusing to create eth0.5 on eth0: eth0 is a port of bridge br0, and a VLAN "
        "device on it would take VLAN 5's tagged frames before br0 sees them (its guests would "
        "lose VLAN 5); set wiring = trunk and trunk-bridge = br0 in " + ACCESS_HINT +
        " so access bridges are fed from br0.5")


def test_refuses_vlan_device_on_a_bond_port(access_config):
    snap = host(replace(ETH0, master="bond0"), Link("bond0", kind="bond"), VNET0)
    assert refusal([access(5)], access_config, snap) == (
        WHO + ": refusing to create eth0.5 on eth0: eth0 is a port of bond bond0, and a VLAN "
        "device on it would take VLAN 5's tagged frames before bond0 sees them (its guests "
        "would lose VLAN 5); use the bond bond0 as the uplink device in " + ACCESS_HINT)


def test_refuses_to_enslave_a_device_with_vlan_devices(trunk_config):
    snap = host(ETH1, Link("eth1.100", kind="vlan", parent="eth1", vlan_id=100),
                Link("eth1.200", kind="vlan", parent="eth1", vlan_id=200), VNET0)
    assert refusal([trunk(5)], trunk_config, snap) == (
        WHO + ": refusing to make eth1 a port of br0: eth1 has VLAN devices (eth1.100, "
        "eth1.200), which would take VLAN 100,200's tagged frames before br0 sees them; remove "
        "them first (virt-vlan removes its own when their guests stop)")


def test_refuses_to_enslave_a_port_with_vlan_devices(access_config):
    snap = host(ETH0, VNET0, Link("vnet0.9", kind="vlan", parent="vnet0", vlan_id=9))
    assert "refusing to make vnet0 a port of br05: vnet0 has VLAN devices (vnet0.9)" in refusal(
        [access(5)], access_config, snap)


def test_refuses_trunk_guest_on_access_wiring(access_config):
    assert refusal([trunk(5, 7, uplink="eth0")], access_config, host(ETH0, VNET0)) == (
        WHO + ": trunk mode needs uplink eth0 wired as trunk, but it has wiring = access; set "
        "wiring = trunk in " + ACCESS_HINT + " (its NIC then joins bridge br0)")


def test_refuses_feed_name_taken_by_another_kind(access_config):
    snap = host(ETH0, Link("eth0.5", kind="dummy"), VNET0)
    assert refusal([access(5)], access_config, snap) == (
        WHO + ": eth0.5 exists but is a dummy device, not VLAN 5 on eth0; delete or rename it, "
        "or change the naming template in " + ACCESS_HINT)


def test_refuses_feed_name_with_wrong_vlan_id(access_config):
    snap = host(ETH0, Link("eth0.5", kind="vlan", parent="eth0", vlan_id=6), VNET0)
    assert refusal([access(5)], access_config, snap) == (
        WHO + ": eth0.5 exists but is VLAN 6 on eth0, not VLAN 5 on eth0; delete or rename it, "
        "or change the naming template in " + ACCESS_HINT)


def test_refuses_feed_name_with_wrong_parent(access_config):
    snap = host(ETH0, ETH1, Link("eth0.5", kind="vlan", parent="eth1", vlan_id=5), VNET0)
    assert refusal([access(5)], access_config, snap) == (
        WHO + ": eth0.5 exists but is VLAN 5 on eth1, not VLAN 5 on eth0; delete or rename it, "
        "or change the naming template in " + ACCESS_HINT)


def test_refuses_bridge_name_taken_by_another_kind(access_config):
    snap = host(ETH0, Link("br05", kind="dummy"), VNET0)
    assert refusal([access(5)], access_config, snap) == (
        WHO + ": br05 exists but is a dummy device, not a bridge; rename it or change the naming "
        "template in " + ACCESS_HINT)


def test_refuses_trunk_bridge_name_taken_by_another_kind(trunk_config):
    snap = host(ETH1, Link("br0", kind="dummy"), VNET0)
    assert refusal([trunk(5)], trunk_config, snap) == (
        WHO + ": br0 exists but is a dummy device, not a bridge; rename it or change the naming "
        "template in " + TRUNK_HINT)


def test_refuses_second_vlan_device_for_the_same_vlan(access_config):
    snap = host(ETH0, Link("vlan5", kind="vlan", parent="eth0", vlan_id=5), VNET0)
    assert refusal([access(5)], access_config, snap) == (
        WHO + ": eth0 already carries VLAN 5 as vlan5; the kernel allows one device per VLAN: "
        "delete vlan5 or make the naming template in " + ACCESS_HINT + " produce vlan5")


def test_refuses_bridge_fed_by_a_foreign_vlan_device(access_config):
    snap = host(ETH0, ETH1, Link("br05", kind="bridge"),
                Link("eth1.5", kind="vlan", parent="eth1", vlan_id=5, master="br05"), VNET0)
    assert refusal([access(5)], access_config, snap) == (
        WHO + ": bridge br05 is fed by eth1.5, not by eth0.5; virt-vlan will not mix two feeds "
        "in one bridge: remove eth1.5 from br05 or change access-bridge in " + ACCESS_HINT)


def test_refuses_feed_that_is_a_port_of_another_bridge(access_config):
    snap = host(ETH0, Link("eth0.5", kind="vlan", parent="eth0", vlan_id=5, master="brlab"),
                Link("brlab", kind="bridge"), VNET0)
    assert refusal([access(5)], access_config, snap) == (
        WHO + ": eth0.5 is already a port of brlab, so it cannot feed br05; remove it from brlab "
        "or change access-bridge in " + ACCESS_HINT)


def test_refuses_missing_access_uplink(access_config):
    assert refusal([access(5)], access_config, host(VNET0)) == (
        WHO + ": uplink device eth0 does not exist on this host; fix device = in " + ACCESS_HINT)


def test_refuses_missing_trunk_uplink(trunk_config):
    assert refusal([trunk(5)], trunk_config, host(VNET0)) == (
        WHO + ": uplink device eth1 does not exist on this host; fix device = in " + TRUNK_HINT)


def test_refuses_trunk_uplink_in_another_bridge(trunk_config):
    snap = host(replace(ETH1, master="brlan"), Link("brlan", kind="bridge"), VNET0)
    assert refusal([trunk(5)], trunk_config, snap) == (
        WHO + ": uplink device eth1 is already a port of brlan, not of the trunk bridge br0; set "
        "trunk-bridge = brlan in " + TRUNK_HINT + " to use it")


def test_refuses_to_move_a_dhcp_address(trunk_config):
    eth1 = replace(ETH1, addresses=(ADDR4, replace(ADDR6, dynamic=True)))
    assert refusal([trunk(5)], trunk_config, host(eth1, VNET0)) == (
        WHO + ": eth1 holds 2001:db8::10/64 from DHCP/SLAAC; moving it into br0 would fight the "
        "client that manages it; make eth1 a port of bridge br0 in the host's network config "
        "(the bridge holding the address), then virt-vlan adopts it")


def test_refuses_a_physical_nic_as_port(access_config):
    snap = host(ETH0, Link("eth2"))
    assert refusal([access(5, port="eth2")], access_config, snap) == (
        WHO + ": eth2 is a host NIC, not a guest tap or veth; virt-vlan only wires guest "
        "ports")


@pytest.mark.parametrize("kind", ["bridge", "vlan", "bond", "dummy", "macvtap"])
def test_refuses_other_kinds_as_port(access_config, kind):
    snap = host(ETH0, Link("x0", kind=kind))
    assert refusal([access(5, port="x0")], access_config, snap) == (
        WHO + ": x0 is a %s device, not a guest tap or veth; virt-vlan only wires guest ports"
        % kind)


def test_refuses_a_managed_device_as_port(access_config):
    snap = host(ETH0, Link("vv-veth", kind="veth", managed=True))
    assert refusal([access(5, port="vv-veth")], access_config, snap) == (
        WHO + ": vv-veth is a device virt-vlan created itself, not a guest port")


def test_refuses_missing_port(access_config):
    assert refusal([access(5)], access_config, host(ETH0)) == (
        WHO + ": port vnet0 does not exist on this host; start the guest first (libvirt creates "
        "its tap) or name an existing tap/veth")


def test_one_refused_want_refuses_the_whole_plan(access_config):
    snap = host(ETH0, VNET0, Link("eth2"))
    with pytest.raises(Refused):
        plan([access(5), access(7, port="eth2")], access_config, snap)


def test_unknown_uplink_in_a_want_is_an_input_error(access_config):
    with pytest.raises(InputError, match=r"unknown uplink 'eth9'"):
        plan([access(5, uplink="eth9")], access_config, host(ETH0, VNET0))


def test_want_without_who_names_the_port(access_config):
    want = Want(uplink="eth0", mode="trunk", vlans=(5,), port="vnet0")
    assert refusal([want], access_config, host(ETH0, VNET0)).startswith(
        "vnet0: trunk mode needs uplink eth0")


# --- unplug and cleanup -------------------------------------------------------


def test_unplug_releases_then_deletes_bridge_before_feed(access_config):
    snap = wired([access(5)], access_config, host(ETH0, VNET0))
    assert plan_unplug("vnet0", access_config, snap).actions == (
        Release("vnet0"), DeleteLink("br05"), DeleteLink("eth0.5"))


def test_unplug_renders_as_ip_commands(access_config):
    snap = wired([access(5)], access_config, host(ETH0, VNET0))
    assert plan_unplug("vnet0", access_config, snap).render() == (
        "ip link set dev vnet0 nomaster", "ip link del dev br05", "ip link del dev eth0.5")


def test_unplug_leaves_admin_made_feed_and_bridge(access_config):
    snap = host(ETH0, Link("eth0.5", kind="vlan", parent="eth0", vlan_id=5, master="br05"),
                Link("br05", kind="bridge"), replace(VNET0, master="br05"))
    assert plan_unplug("vnet0", access_config, snap).actions == (Release("vnet0"),)


def test_unplug_deletes_our_bridge_but_leaves_admin_feed(access_config):
    snap = wired([access(5)], access_config,
                 host(ETH0, Link("eth0.5", kind="vlan", parent="eth0", vlan_id=5), VNET0))
    assert plan_unplug("vnet0", access_config, snap).actions == (Release("vnet0"),
                                                                 DeleteLink("br05"))


def test_unplug_deletes_our_feed_from_an_admin_bridge_but_not_the_bridge(access_config):
    snap = wired([access(5)], access_config, host(ETH0, Link("br05", kind="bridge"), VNET0))
    assert plan_unplug("vnet0", access_config, snap).actions == (Release("vnet0"),
                                                                 DeleteLink("eth0.5"))


def test_cleanup_keeps_our_feed_in_an_admin_bridge_in_use(access_config):
    snap = host(ETH0, Link("br05", kind="bridge"),
                Link("eth0.5", kind="vlan", parent="eth0", vlan_id=5, master="br05", managed=True))
    assert not plan_cleanup(access_config, snap, in_use=frozenset({"br05"}))


def test_unplug_keeps_a_bridge_with_another_guest(access_config):
    snap = wired([access(5), access(5, port="vnet1")], access_config, host(ETH0, VNET0, VNET1))
    assert plan_unplug("vnet0", access_config, snap).actions == (Release("vnet0"),)


def test_unplug_keeps_a_bridge_in_use(access_config):
    snap = wired([access(5)], access_config, host(ETH0, VNET0))
    assert plan_unplug("vnet0", access_config, snap, in_use=frozenset({"br05"})).actions == (
        Release("vnet0"),)


def test_unplug_keeps_bridges_when_keep_empty_bridges(make_config):
    conf = make_config("[uplink eth0]\nallowed-vlans = 5\nkeep-empty-bridges = yes\n")
    snap = wired([access(5)], conf, host(ETH0, VNET0))
    assert plan_unplug("vnet0", conf, snap).actions == (Release("vnet0"),)


def test_unplug_from_trunk_keeps_trunk_bridge_and_host_vlans(mixed_config):
    snap = wired([trunk(5)], mixed_config, host(ETH0, ETH1, VNET0))
    assert snap.get("br1").managed and snap.get("br1.10").managed
    # VLAN 5 leaves the uplink with its last user; host VLAN 10 stays.
    assert snap.get("eth1").vlans.tagged == {5, 10}
    assert plan_unplug("vnet0", mixed_config, snap).actions == (
        Release("vnet0"), DelBridgeVlan("eth1", 5, 5))


def test_unplug_access_guest_on_trunk_wiring_deletes_its_bridge_and_feed_only(trunk_config):
    snap = wired([access(5, uplink="eth1")], trunk_config, host(ETH1, VNET0))
    assert plan_unplug("vnet0", trunk_config, snap).actions == (
        Release("vnet0"), DelBridgeVlan("eth1", 5, 5), DelBridgeVlan("br0", 5, 5, self_=True),
        DeleteLink("br05"), DeleteLink("br0.5"))


def test_unplug_refuses_a_port_of_a_foreign_bridge(access_config):
    snap = host(ETH0, Link("virbr0", kind="bridge"), replace(VNET0, master="virbr0"))
    with pytest.raises(Refused) as info:
        plan_unplug("vnet0", access_config, snap)
    assert str(info.value) == ("vnet0: it is a port of virbr0, which is not a virt-vlan bridge; "
                               "leaving it alone (use 'ip link set dev vnet0 nomaster' yourself)")


def test_unplug_of_a_missing_port(access_config):
    with pytest.raises(Refused) as info:
        plan_unplug("vnet0", access_config, host(ETH0))
    assert str(info.value) == "vnet0: no such port; nothing to unplug"


def test_unplug_of_a_released_port_only_cleans_up(access_config):
    snap = wired([access(5)], access_config, host(ETH0, VNET0))
    snap = Release("vnet0").simulate(snap)
    assert plan_unplug("vnet0", access_config, snap).actions == (DeleteLink("br05"),
                                                                 DeleteLink("eth0.5"))


def test_cleanup_deletes_only_managed_devices(access_config):
    snap = host(ETH0,
                Link("br05", kind="bridge", managed=True),
                Link("eth0.5", kind="vlan", parent="eth0", vlan_id=5, master="br05", managed=True),
                Link("br07", kind="bridge"),
                Link("eth0.7", kind="vlan", parent="eth0", vlan_id=7, master="br07"))
    assert plan_cleanup(access_config, snap).actions == (DeleteLink("br05"), DeleteLink("eth0.5"))


def test_cleanup_deletes_an_orphan_managed_feed(access_config):
    snap = host(ETH0, Link("eth0.5", kind="vlan", parent="eth0", vlan_id=5, managed=True))
    assert plan_cleanup(access_config, snap).actions == (DeleteLink("eth0.5"),)


def test_cleanup_ignores_managed_bridges_the_config_cannot_name(access_config):
    snap = host(ETH0, Link("br09", kind="bridge", managed=True))
    assert not plan_cleanup(access_config, snap)


def test_cleanup_never_deletes_a_managed_trunk_bridge(trunk_config):
    snap = host(replace(ETH1, master="br0"), Link("br0", kind="bridge", managed=True))
    assert not plan_cleanup(trunk_config, snap)


# --- actions: render ----------------------------------------------------------


@pytest.mark.parametrize("action, lines", [
    (CreateBridge("br05", 1500),
     ("ip link add name br05 mtu 1500 " + BRIDGE_OPTS,
      "ip link set dev br05 alias virt-vlan:managed",
      "ip link set dev br05 addrgenmode none")),
    (CreateBridge("br0", 9000, mac="52:54:00:aa:00:01", addrgen=True),
     ("ip link add name br0 mtu 9000 address 52:54:00:aa:00:01 " + BRIDGE_OPTS,
      "ip link set dev br0 alias virt-vlan:managed")),
    (CreateVlan("eth0.5", "eth0", 5),
     ("ip link add link eth0 name eth0.5 type vlan id 5",
      "ip link set dev eth0.5 alias virt-vlan:managed",
      "ip link set dev eth0.5 addrgenmode none")),
    (CreateVlan("br0.10", "br0", 10, addrgen=True),
     ("ip link add link br0 name br0.10 type vlan id 10",
      "ip link set dev br0.10 alias virt-vlan:managed")),
    (SetMaster("vnet0", "br05"), ("ip link set dev vnet0 master br05",)),
    (Release("vnet0"), ("ip link set dev vnet0 nomaster",)),
    (SetMtu("vnet0", 9000), ("ip link set dev vnet0 mtu 9000",)),
    (SetUp("br05"), ("ip link set dev br05 up",)),
    (SetDown("br05"), ("ip link set dev br05 down",)),
    (DeleteLink("br05"), ("ip link del dev br05",)),
    (MoveAddresses("eth1", "br0", (ADDR4, ADDR6), (DEFAULT4,)),
     ("ip addr add 192.0.2.10/24 dev br0",
      "ip addr add 2001:db8::10/64 dev br0",
      "ip -4 route replace default via 192.0.2.1 dev br0 proto static",
      "ip addr del 192.0.2.10/24 dev eth1",
      "ip addr del 2001:db8::10/64 dev eth1")),
], ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else "")
def test_action_render(action, lines):
    assert action.render() == lines
    assert str(action) == "; ".join(lines)


@pytest.mark.parametrize("route, text", [
    (Route("inet", "default", "eth1", gateway="192.0.2.1"),
     "ip -4 route replace default via 192.0.2.1 dev br0 proto static"),
    (Route("inet", "198.51.100.0/24", "eth1", gateway="192.0.2.254", metric=100, table=100,
           proto="boot", scope="universe"),
     "ip -4 route replace 198.51.100.0/24 via 192.0.2.254 dev br0 metric 100 table 100"),
    (Route("inet", "192.0.2.0/24", "eth1", proto="kernel", scope="link", prefsrc="192.0.2.10"),
     "ip -4 route replace 192.0.2.0/24 dev br0 proto kernel scope link src 192.0.2.10"),
    (Route("inet6", "default", "eth1", gateway="fe80::1", metric=1024, proto="ra"),
     "ip -6 route replace default via fe80::1 dev br0 metric 1024 proto ra"),
])
def test_route_render_on_new_device(route, text):
    assert route.render("br0") == text


def test_route_render_on_its_own_device():
    assert DEFAULT4.render() == "ip -4 route replace default via 192.0.2.1 dev eth1 proto static"


# --- actions: undo ------------------------------------------------------------


BEFORE = host(ETH0, Link("br05", kind="bridge"), Link("brlab", kind="bridge"),
              replace(VNET0, master="brlab", mtu=1400, up=False), VNET1,
              replace(ETH1, addresses=(ADDR4,)), routes=(DEFAULT4,))


@pytest.mark.parametrize("action, undo", [
    (CreateBridge("br07", 1500), (DeleteLink("br07"),)),
    (CreateVlan("eth0.7", "eth0", 7), (DeleteLink("eth0.7"),)),
    (SetMaster("vnet1", "br05"), (Release("vnet1"),)),
    (SetMaster("vnet0", "br05"), (SetMaster("vnet0", "brlab"),)),
    (SetMaster("vnet0", "brlab"), ()),
    (Release("vnet0"), (SetMaster("vnet0", "brlab"),)),
    (Release("vnet1"), ()),
    (SetMtu("vnet0", 1500), (SetMtu("vnet0", 1400),)),
    (SetMtu("vnet0", 1400), ()),
    (SetUp("vnet0"), (SetDown("vnet0"),)),
    (SetUp("vnet1"), ()),
    (SetDown("vnet1"), (SetUp("vnet1"),)),
    (SetDown("vnet0"), ()),
    (DeleteLink("br05"), ()),
    (MoveAddresses("eth1", "br05", (ADDR4,), (DEFAULT4,)),
     (MoveAddresses("br05", "eth1", (ADDR4,), (replace(DEFAULT4, dev="br05"),)),)),
], ids=lambda v: str(v) if not isinstance(v, tuple) else "")
def test_action_undo(action, undo):
    assert action.undo(BEFORE) == undo


@pytest.mark.parametrize("action", [
    CreateBridge("br07", 1500),
    CreateVlan("eth0.7", "eth0", 7),
    SetMaster("vnet1", "br05"),
    SetMaster("vnet0", "br05"),
    Release("vnet0"),
    SetMtu("vnet0", 1500),
    SetUp("vnet0"),
    SetDown("vnet1"),
], ids=str)
def test_undo_restores_the_snapshot(action):
    after = action.simulate(BEFORE)
    assert after != BEFORE
    assert Plan(action.undo(BEFORE)).simulate(after) == BEFORE


def test_move_addresses_undo_moves_addresses_and_routes_back():
    move = MoveAddresses("eth1", "br05", (ADDR4,), (DEFAULT4,))
    after = move.simulate(BEFORE)
    assert after.get("br05").addresses == (ADDR4,)
    assert after.routes == (replace(DEFAULT4, dev="br05"),)
    assert Plan(move.undo(BEFORE)).simulate(after) == BEFORE


@pytest.mark.parametrize("action", [SetMaster("ghost", "br05"), Release("ghost"),
                                    SetMtu("ghost", 1500), SetUp("ghost"), SetDown("ghost")],
                         ids=str)
def test_undo_of_an_action_on_an_unknown_link_is_empty(action):
    assert action.undo(BEFORE) == ()


# --- plan and snapshot model --------------------------------------------------


def test_plan_container():
    result = Plan((SetUp("br05"), SetUp("eth0.5")))
    assert bool(result) and len(result) == 2
    assert list(result) == [SetUp("br05"), SetUp("eth0.5")]
    assert describe(result) == "ip link set dev br05 up\nip link set dev eth0.5 up"
    assert not Plan()


def test_deleting_a_device_deletes_its_vlan_children_and_frees_ports():
    snap = host(ETH0, Link("eth0.5", kind="vlan", parent="eth0", vlan_id=5, master="br05"),
                Link("br05", kind="bridge"), replace(VNET0, master="br05"))
    after = DeleteLink("eth0").simulate(snap)
    assert [link.name for link in after] == ["br05", "vnet0"]
    assert after.get("vnet0").master == "br05"
    assert DeleteLink("br05").simulate(snap).get("vnet0").master is None


# --- trunk VLAN filtering ------------------------------------------------------

DEFAULT = PortVlans(untagged=frozenset({1}), pvid=1)  # what a new port gets


def tagged(*vids, untagged=(), pvid=None):
    return PortVlans(frozenset(vids), frozenset(untagged), pvid)


def trunk_native(*vlans, native, port="vnet0", uplink="eth1"):
    return replace(trunk(*vlans, port=port, uplink=uplink), native=native)


def adopted_trunk(filtering, pvid=1, eth1=DEFAULT, self_=None, ports=()):
    """An admin's trunk bridge br0 with eth1 as port (trunk_config's names)."""
    default = PortVlans(untagged=frozenset({pvid}), pvid=pvid)
    return host(replace(ETH1, master="br0", vlans=eth1),
                Link("br0", kind="bridge", vlan_filtering=filtering, default_pvid=pvid,
                     vlans=self_ or default), VNET0, *ports)


def test_trunk_guest_gets_exactly_its_list_and_its_native_vlan(trunk_config):
    snap = wired([trunk_native(5, 7, native=100)], trunk_config, host(ETH1, VNET0))
    assert snap.get("vnet0").vlans == tagged(5, 7, untagged={100}, pvid=100)
    # The uplink carries every VLAN in use, tagged, and keeps its own PVID.
    assert snap.get("eth1").vlans == tagged(5, 7, 100, untagged={1}, pvid=1)
    assert snap.get("br0").vlans == DEFAULT and snap.get("br0").vlan_filtering


def test_trunk_plan_renders_bridge_vlan_commands(trunk_config):
    snap = wired([trunk(5)], trunk_config, host(ETH1, VNET0))
    lines = plan([trunk_native(100, 101, 102, 7, native=5)], trunk_config, snap).render()
    assert lines == ("bridge vlan add dev vnet0 vid 5 pvid untagged",
                     "bridge vlan add dev vnet0 vid 7",
                     "bridge vlan add dev vnet0 vid 100-102",
                     "bridge vlan add dev eth1 vid 7",
                     "bridge vlan add dev eth1 vid 100-102")


def test_changed_list_updates_the_tap_and_shrinks_the_uplink(trunk_config):
    snap = wired([trunk(5, 7)], trunk_config, host(ETH1, VNET0))
    result = plan([trunk(7, 100)], trunk_config, snap)
    assert result.render() == ("bridge vlan del dev vnet0 vid 5",
                               "bridge vlan add dev vnet0 vid 100",
                               "bridge vlan add dev eth1 vid 100",
                               "bridge vlan del dev eth1 vid 5")
    assert not plan([trunk(7, 100)], trunk_config, result.simulate(snap))


def test_full_trunk_is_ranges_and_a_second_plug_plans_nothing(make_config):
    config = make_config("""\
        [uplink eth1]
        wiring = trunk
        allowed-vlans = 1-4094
        """)
    snap = wired([trunk(*range(2, 4095))], config, host(ETH1, VNET0))
    assert snap.get("vnet0").vlans == tagged(*range(2, 4095))
    assert plan([trunk(*range(2, 4095))], config, snap).actions == ()
    result = plan([trunk(*range(2, 4095), port="vnet1")], config, snap.with_link(VNET1))
    assert result.render()[-2:] == ("bridge vlan del dev vnet1 vid 1",
                                    "bridge vlan add dev vnet1 vid 2-4094")


def test_the_vlan_the_uplink_carries_untagged_is_refused(make_config):
    config = make_config("""\
        [uplink eth1]
        wiring = trunk
        allowed-vlans = 1-20
        """)
    message = refusal([trunk(1, 5)], config, host(ETH1, VNET0))
    assert message == (
        WHO + ": VLAN 1 is the VLAN uplink eth1 carries untagged on trunk bridge br0 (its "
        "default PVID); a guest allowed it could send double-tagged frames that leave eth1 "
        "with only the inner tag and hop into another VLAN; remove 1 from the guest's "
        "vlans/native (or from allowed-vlans in [uplink eth1] of test.conf)")
    # Read from the bridge, never assumed: here it is 11, and 1 is fine.
    snap = adopted_trunk(True, pvid=11, eth1=PortVlans(untagged=frozenset({11}), pvid=11))
    assert "VLAN 11 is the VLAN uplink eth1" in refusal([trunk_native(5, native=11)], config, snap)
    assert plan([trunk(1, 5)], config, snap).simulate(snap).get("vnet0").vlans == tagged(1, 5)


def test_the_default_pvid_read_from_the_bridge_is_removed_from_the_tap(trunk_config):
    snap = adopted_trunk(True, pvid=11, eth1=PortVlans(untagged=frozenset({11}), pvid=11))
    assert plan([trunk(5)], trunk_config, snap).render() == (
        "ip link set dev vnet0 master br0",
        "bridge vlan del dev vnet0 vid 11",
        "bridge vlan add dev vnet0 vid 5",
        "bridge vlan add dev eth1 vid 5")


def test_adopted_filtering_bridge_only_gets_additions(trunk_config):
    # The admin's uplink carries 100-110 and br0 self has 300: never removed.
    snap = adopted_trunk(True, eth1=tagged(*range(100, 111), untagged={1}, pvid=1),
                         self_=tagged(300, untagged={1}, pvid=1))
    result = plan([trunk(5)], trunk_config, snap)
    assert not any(isinstance(a, (SetVlanFiltering,)) for a in result)
    assert [a for a in result if isinstance(a, DelBridgeVlan) and a.dev != "vnet0"] == []
    assert AddBridgeVlan("eth1", 5, 5) in result.actions
    snap = result.simulate(snap)
    assert plan_unplug("vnet0", trunk_config, snap).actions == (Release("vnet0"),)


def test_adopted_unfiltered_bridge_is_served_as_before_with_a_warning(trunk_config):
    snap = adopted_trunk(False)
    result = plan([trunk(5, 7)], trunk_config, snap)
    assert result.actions == (SetMaster("vnet0", "br0"),)
    assert result.warnings == (
        WHO + ": trunk bridge br0 does not filter VLANs (an adopted bridge): vnet0 sees and "
        "can send on every VLAN of eth1, not only 5,7; set trunk-filtering = yes in "
        "[uplink eth1] of test.conf to enforce the list",)
    assert plan([trunk(5, 7)], trunk_config, result.simulate(snap)).warnings == result.warnings


def test_trunk_filtering_yes_converts_an_adopted_bridge_last(make_config):
    config = make_config("""\
        [uplink eth1]
        wiring = trunk
        allowed-vlans = 5,7,100-110
        trunk-filtering = yes
        host-vlans = 10
        """)
    old_guest = replace(VNET1, master="br0", vlans=DEFAULT)
    access_guest = Link("vnet2", kind="tun", master="br05")
    feed = Link("br0.5", kind="vlan", parent="br0", vlan_id=5, master="br05", managed=True)
    snap = adopted_trunk(False, ports=(old_guest, access_guest, feed,
                                       Link("br05", kind="bridge", managed=True)))
    result = plan([trunk(7)], config, snap)
    assert result.actions[-1] == SetVlanFiltering("br0")
    done = result.simulate(snap)
    # The trunk guest started before filtering keeps every allowed VLAN.
    assert done.get("vnet1").vlans == tagged(5, 7, *range(100, 111), untagged={1}, pvid=1)
    assert result.warnings == (
        "br0: port vnet1 was on trunk bridge br0 before it filtered VLANs; it keeps every "
        "allowed VLAN of uplink eth1 (5,7,100-110): plug it again with its own list (or "
        "restart its guest) to narrow it",)
    assert done.get("vnet0").vlans == tagged(7)
    assert done.get("eth1").vlans == tagged(5, 7, 10, *range(100, 111), untagged={1}, pvid=1)
    # Self: the feed br0.5 and host VLAN br0.10, tagged; the untagged PVID stays.
    assert done.get("br0").vlans == tagged(5, 10, untagged={1}, pvid=1)
    assert not plan([trunk(7)], config, done)


def test_managed_unfiltered_bridge_is_converted_at_the_next_plug(trunk_config):
    snap = wired([trunk(5)], trunk_config, host(ETH1, VNET0, VNET1))
    old = snap.with_link(replace(snap.get("br0"), vlan_filtering=False)).with_link(
        replace(snap.get("vnet0"), vlans=DEFAULT)).with_link(
        replace(snap.get("eth1"), vlans=DEFAULT))
    result = plan([trunk(7, port="vnet1")], trunk_config, old)
    assert result.actions[-1] == SetVlanFiltering("br0")
    assert "port vnet0 was on trunk bridge br0" in result.warnings[0]
    assert result.simulate(old).get("vnet1").vlans == tagged(7)


def test_host_vlans_and_feeds_get_self_entries_and_shrink_with_their_last_user(mixed_config):
    snap = wired([access(5, uplink="eth1", port="vnet0"), trunk(7, port="vnet1")],
                 mixed_config, host(ETH0, ETH1, VNET0, VNET1))
    assert snap.get("br1").vlans == tagged(5, 10, untagged={1}, pvid=1)
    assert snap.get("eth1").vlans == tagged(5, 7, 10, untagged={1}, pvid=1)
    # The access guest stops: its bridge and feed go, and so do VLAN 5's entries.
    snap = plan_unplug("vnet0", mixed_config, snap).simulate(snap)
    assert snap.get("br1.5") is None
    assert snap.get("br1").vlans == tagged(10, untagged={1}, pvid=1)
    assert snap.get("eth1").vlans == tagged(7, 10, untagged={1}, pvid=1)
    # The trunk guest's tap vanishes with its guest: cleanup shrinks the uplink.
    gone = snap.without_link("vnet1")
    assert plan_cleanup(mixed_config, gone).actions == (DelBridgeVlan("eth1", 7, 7),)


def test_bridge_vlan_actions_render_as_bridge_commands():
    assert AddBridgeVlan("vnet0", 9, 9, pvid=True, untagged=True).render() == (
        "bridge vlan add dev vnet0 vid 9 pvid untagged",)
    assert AddBridgeVlan("br0", 10, 20, self_=True).render() == (
        "bridge vlan add dev br0 vid 10-20 self",)
    assert DelBridgeVlan("eth1", 2, 4094).render() == ("bridge vlan del dev eth1 vid 2-4094",)
    assert DelBridgeVlan("br0", 5, 5, self_=True).render() == (
        "bridge vlan del dev br0 vid 5 self",)
    assert SetVlanFiltering("br0").render() == (
        "ip link set dev br0 type bridge vlan_filtering 1",)


@pytest.mark.parametrize("action", [
    AddBridgeVlan("vnet0", 5, 9),
    AddBridgeVlan("vnet0", 1, 1),  # the PVID, re-added tagged: loses PVID and untagged
    AddBridgeVlan("vnet0", 9, 9, pvid=True, untagged=True),
    AddBridgeVlan("br0", 5, 5, self_=True),
    DelBridgeVlan("vnet0", 1, 7),
    DelBridgeVlan("br0", 1, 10, self_=True),
    SetVlanFiltering("br0"),
], ids=str)
def test_bridge_vlan_undo_restores_the_table(action):
    before = host(Link("br0", kind="bridge", vlans=tagged(3, untagged={1}, pvid=1)),
                  replace(VNET0, master="br0", vlans=tagged(5, 6, untagged={1, 7}, pvid=1)))
    after = action.simulate(before)
    for undo in action.undo(before):
        after = undo.simulate(after)
    assert after == before


# --- uplink mtu ----------------------------------------------------------------

def mtu_config(make_config, wiring="access", mtu=1496):
    return make_config("""\
        [uplink eth0]
        wiring = %s
        allowed-vlans = 5,7
        mtu = %d
        """ % (wiring, mtu))


def test_access_feed_bridge_and_tap_get_the_uplink_mtu(make_config):
    config = mtu_config(make_config)
    result = plan([access(5)], config, host(ETH0, VNET0))
    assert SetMtu("eth0.5", 1496) in result.actions
    assert CreateBridge("br05", 1496) in result.actions
    assert SetMtu("vnet0", 1496) in result.actions
    done = result.simulate(host(ETH0, VNET0))
    assert [done.get(n).mtu for n in ("eth0", "eth0.5", "br05", "vnet0")] == [1500, 1496, 1496,
                                                                            1496]
    assert not plan([access(5)], config, done)


def test_trunk_bridge_feed_and_tap_get_the_uplink_mtu(make_config):
    config = mtu_config(make_config, "trunk")
    snap = host(replace(ETH0, mtu=1500), VNET0, VNET1)
    result = plan([trunk(5, uplink="eth0"), access(7, port="vnet1")], config, snap)
    # The bridge is created with the NIC's MTU (enslaving it would raise it
    # again) and then set: an MTU set by hand sticks (BROPT_MTU_SET_BY_USER).
    assert result.actions.index(SetMtu("br0", 1496)) > result.actions.index(
        SetMaster("eth0", "br0"))
    done = result.simulate(snap)
    assert [done.get(n).mtu for n in ("eth0", "br0", "br0.7", "br07", "vnet0", "vnet1")] == [
        1500, 1496, 1496, 1496, 1496, 1496]
    assert not plan([trunk(5, uplink="eth0"), access(7, port="vnet1")], config, done)


def test_mtu_above_the_uplink_device_is_refused(make_config):
    config = mtu_config(make_config, mtu=9000)
    assert refusal([access(5)], config, host(ETH0, VNET0)) == (
        WHO + ": mtu = 9000 in [uplink eth0] of test.conf exceeds the MTU 1500 of uplink device "
        "eth0 (tagged frames must fit it); lower mtu there or raise eth0's MTU")


def test_adopted_bridge_with_another_mtu_is_refused_and_ours_is_corrected(make_config):
    config = mtu_config(make_config)
    feed = Link("eth0.5", kind="vlan", parent="eth0", vlan_id=5, master="br05", managed=True,
                mtu=1500)
    theirs = host(ETH0, feed, Link("br05", kind="bridge", mtu=1500), VNET0)
    assert refusal([access(5)], config, theirs) == (
        WHO + ": access bridge br05 has MTU 1500, but mtu = 1496 in [uplink eth0] of test.conf; "
        "virt-vlan does not change a device it did not create: set mtu = 1500 there or give "
        "br05 MTU 1496")
    ours = host(ETH0, feed, Link("br05", kind="bridge", mtu=1500, managed=True), VNET0)
    result = plan([access(5)], config, ours)
    assert SetMtu("eth0.5", 1496) in result.actions and SetMtu("br05", 1496) in result.actions


def test_adopted_filtering_bridge_keeps_the_admins_local_vlans_off_the_uplink(trunk_config):
    # The admin's veth9 carries VLAN 300 between local ports, not on the wire.
    local = Link("veth9", kind="veth", master="br0", vlans=tagged(300))
    snap = adopted_trunk(True, ports=(local,))
    result = plan([trunk(5)], trunk_config, snap)
    assert result.simulate(snap).get("eth1").vlans == tagged(5, untagged={1}, pvid=1)
    assert plan_cleanup(trunk_config, result.simulate(snap)).actions == ()
