"""agent/reconcile.py: the agent's decisions, on data (no libvirt, no kernel).

What running guests want (from their live XML), which of those wants may be
wired on a given host snapshot, which cached entries a netlink change
concerns, and what the planner then does with them.
"""

from virtvlan.apply import engine
from virtvlan.agent import reconcile
from virtvlan.agent.reconcile import Desired
from virtvlan.model import Link, Snapshot, Want
from virtvlan.plan.planner import plan, plan_cleanup

UUID = "0f7e35a4-3f9b-4a8e-9a51-2b8c3a4d5e01"
MAC1, MAC2, MAC3 = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"
TAP1_MAC, TAP2_MAC = "fe:54:00:00:00:01", "fe:54:00:00:00:02"


def live_xml(entries, nics=((MAC1, "vnet0", "lan"),), name="vm1"):
    """A running domain's live XML: each NIC with its tap (<target dev>)."""
    ifaces = "".join(
        "<interface type='bridge'><mac address='%s'/><source bridge='%s'/>%s"
        "<model type='virtio'/></interface>"
        % (mac, bridge, "<target dev='%s'/>" % tap if tap else "") for mac, tap, bridge in nics)
    meta = ("<metadata><vv:vlan xmlns:vv='urn:virt-vlan:1'>%s</vv:vlan></metadata>"
            % "".join(entries) if entries else "")
    return ("<domain type='kvm' id='3'><name>%s</name><uuid>%s</uuid>%s<devices>%s</devices>"
            "</domain>" % (name, UUID, meta, ifaces)).encode()


def access(mac, vlan):
    return "<vv:interface mac='%s' mode='access' vlan='%d'/>" % (mac, vlan)


def trunk(mac, vlans, uplink="eth1"):
    return "<vv:interface mac='%s' mode='trunk' vlans='%s' uplink='%s'/>" % (mac, vlans, uplink)


def network_xml(vlan="5", bridge="br05", name="vlan5"):
    return ("<network><name>%s</name><forward mode='bridge'/><bridge name='%s'/><metadata>"
            "<vv:vlan xmlns:vv='urn:virt-vlan:1'><vv:network vlan='%s'/></vv:vlan></metadata>"
            "</network>" % (name, bridge, vlan)).encode()


def host(*links):
    return Snapshot(links=(Link("eth0", mac="52:54:00:aa:00:00"),
                           Link("eth1", mac="52:54:00:aa:00:01")) + links)


# --- what a running guest wants --------------------------------------------------------


def test_live_xml_gives_wants_with_taps_and_guest_macs(mixed_config):
    desired = reconcile.domain_desired(live_xml([access(MAC1, 5)]), mixed_config)
    assert desired.key == "domain-" + UUID and desired.who == "domain vm1"
    assert [(w.port, w.mode, w.vlans, w.uplink) for w in desired.wants] == [
        ("vnet0", "access", (5,), "eth0")]
    assert desired.macs == (MAC1,) and desired.error is None


def test_untagged_guest_wants_nothing(mixed_config):
    assert reconcile.domain_desired(live_xml([]), mixed_config) is None


def test_metadata_for_a_nic_not_plugged_yet_waits(mixed_config):
    # `virsh metadata` first, `virsh attach-interface` later: not an error.
    desired = reconcile.domain_desired(live_xml([access(MAC1, 5), access(MAC2, 7)]),
                                       mixed_config)
    assert [w.port for w in desired.wants] == ["vnet0"]
    assert desired.pending == (MAC2,) and desired.error is None


def test_only_pending_entries_still_cached_with_no_wants(mixed_config):
    desired = reconcile.domain_desired(live_xml([access(MAC2, 7)]), mixed_config)
    assert desired.wants == () and desired.pending == (MAC2,)


def test_hot_plugged_nic_appears_in_the_wants(mixed_config):
    xml = live_xml([access(MAC1, 5), access(MAC2, 7)],
                   nics=((MAC1, "vnet0", "br05"), (MAC2, "vnet7", "lan")))
    desired = reconcile.domain_desired(xml, mixed_config)
    assert [(w.port, w.vlans) for w in desired.wants] == [("vnet0", (5,)), ("vnet7", (7,))]
    assert desired.macs == (MAC1, MAC2) and desired.pending == ()


def test_nic_without_a_tap_yet_is_left_out(mixed_config):
    desired = reconcile.domain_desired(live_xml([access(MAC1, 5)], nics=((MAC1, None, "lan"),)),
                                       mixed_config)
    assert desired.wants == ()


def test_refused_metadata_is_an_error_not_an_exception(mixed_config):
    desired = reconcile.domain_desired(live_xml([access(MAC1, 100)]), mixed_config)
    assert desired.wants == ()
    assert desired.error.startswith("domain vm1, interface %s: VLAN 100 not allowed on uplink "
                                    "eth0" % MAC1)


def test_unparsable_xml_is_an_error(mixed_config):
    desired = reconcile.domain_desired(b"<domain><name>x", mixed_config)
    assert desired.error and "not well-formed" in desired.error


def test_network_wants_its_bridge_and_feed(mixed_config):
    desired = reconcile.network_desired(network_xml(), mixed_config)
    assert desired.key == "network-vlan5" and desired.is_network
    assert [(w.mode, w.vlans, w.port) for w in desired.wants] == [("access", (5,), None)]


def test_untagged_network_is_not_ours(mixed_config):
    xml = b"<network><name>default</name><forward mode='nat'/><bridge name='virbr0'/></network>"
    assert reconcile.network_desired(xml, mixed_config) is None


def test_network_with_the_wrong_bridge_is_an_error(mixed_config):
    desired = reconcile.network_desired(network_xml(bridge="br5"), mixed_config)
    assert "set <bridge name='br05'/>" in desired.error


# --- which wants may be wired on this host now --------------------------------------------


def _desired(mixed_config):
    xml = live_xml([access(MAC1, 5), access(MAC2, 7)],
                   nics=((MAC1, "vnet0", "lan"), (MAC2, "vnet1", "lan")))
    return reconcile.domain_desired(xml, mixed_config)


def test_taps_with_the_guests_mac_are_wired(mixed_config):
    snap = host(Link("vnet0", kind="tun", mac=TAP1_MAC), Link("vnet1", kind="tun", mac=TAP2_MAC))
    assert [w.port for w in reconcile.present(_desired(mixed_config), snap)] == ["vnet0",
                                                                                 "vnet1"]


def test_a_tap_that_is_gone_is_skipped(mixed_config):
    snap = host(Link("vnet1", kind="tun", mac=TAP2_MAC))
    assert [w.port for w in reconcile.present(_desired(mixed_config), snap)] == ["vnet1"]


def test_a_tap_name_reused_by_another_guest_is_never_rewired(mixed_config):
    # vm1 stopped, another guest got vnet0: the cache must not move its tap.
    snap = host(Link("vnet0", kind="tun", mac="fe:54:00:99:99:99"),
                Link("vnet1", kind="tun", mac=TAP2_MAC))
    assert [w.port for w in reconcile.present(_desired(mixed_config), snap)] == ["vnet1"]


def test_a_tap_carrying_the_guest_mac_itself_counts(mixed_config):
    snap = host(Link("vnet0", kind="tun", mac=MAC1))
    assert [w.port for w in reconcile.present(_desired(mixed_config), snap)] == ["vnet0"]


RANDOM_MAC = "96:36:2f:69:9e:d3"  # what udev gave a tap once in the e2e VM


def test_a_tap_with_a_foreign_mac_on_its_access_bridge_is_still_healed(mixed_config):
    # udev may re-address a tap after libvirt set fe:<guest MAC>: the tap's
    # place (a port of the want's own access bridge) identifies it then.
    snap = host(Link("br05", kind="bridge"), Link("br07", kind="bridge"),
                Link("vnet0", kind="tun", mac=RANDOM_MAC, master="br05"),
                Link("vnet1", kind="tun", mac=RANDOM_MAC, master="br05"))
    wired = reconcile.present(_desired(mixed_config), snap, frozenset(), mixed_config)
    assert [w.port for w in wired] == ["vnet0"]  # vnet1 wants br07: not its place


def test_a_foreign_mac_off_the_bridge_or_without_config_is_skipped(mixed_config):
    snap = host(Link("br05", kind="bridge"), Link("vnet0", kind="tun", mac=RANDOM_MAC))
    assert reconcile.present(_desired(mixed_config), snap, frozenset(), mixed_config) == ()
    on_bridge = host(Link("br05", kind="bridge"),
                     Link("vnet0", kind="tun", mac=RANDOM_MAC, master="br05"))
    assert reconcile.present(_desired(mixed_config), on_bridge) == ()


def test_a_trunk_tap_with_a_foreign_mac_is_skipped_even_on_its_bridge(mixed_config):
    # One trunk bridge serves guests with different VLAN lists: its place
    # does not say whose tap it is.
    xml = live_xml([trunk(MAC1, "5,7")], nics=((MAC1, "vnet0", "br1"),))
    desired = reconcile.domain_desired(xml, mixed_config)
    bridge = engine.target_bridges(desired.wants, mixed_config)
    assert len(bridge) == 1
    snap = host(Link(min(bridge), kind="bridge"),
                Link("vnet0", kind="tun", mac=RANDOM_MAC, master=min(bridge)))
    assert reconcile.present(desired, snap, frozenset(), mixed_config) == ()
    tap = Link("vnet0", kind="tun", mac=TAP1_MAC, master=min(bridge))
    assert reconcile.present(desired, host(Link(min(bridge), kind="bridge"), tap),
                             frozenset(), mixed_config) == desired.wants


def test_the_heal_path_moves_no_tap_off_another_bridge(mixed_config):
    # `virt-vlan set --live` has libvirt move vnet0 to br07 before the agent
    # sees the new metadata: a heal from the cache (VLAN 5) must not pull
    # it back. A tap on no bridge (its bridge deleted) is still healed.
    snap = host(Link("br05", kind="bridge"), Link("br07", kind="bridge"),
                Link("vnet0", kind="tun", mac=TAP1_MAC, master="br07"),
                Link("vnet1", kind="tun", mac=TAP2_MAC))
    desired = _desired(mixed_config)
    healed = reconcile.present(desired, snap, frozenset(), mixed_config, move_taps=False)
    assert [w.port for w in healed] == ["vnet1"]
    # A full reconcile (libvirt re-read) moves it.
    assert [w.port for w in reconcile.present(desired, snap, frozenset(), mixed_config)] == [
        "vnet0", "vnet1"]
    # On its own bridge already: healed as usual.
    home = host(Link("br05", kind="bridge"),
                Link("vnet0", kind="tun", mac=TAP1_MAC, master="br05"))
    assert [w.port for w in reconcile.present(desired, home, frozenset(), mixed_config,
                                              move_taps=False)] == ["vnet0"]


def test_a_tap_with_udevs_mac_is_wired_when_its_own_guest_holds_it(mixed_config):
    # udev re-addressed the hot-plugged tap, which is still on the NIC's
    # source bridge: only the kernel's answer (the guest's QEMU holds the
    # tap) identifies it; a tap another guest holds under the name is not.
    snap = host(Link("lan", kind="bridge"),
                Link("vnet0", kind="tun", mac=RANDOM_MAC, master="lan"),
                Link("vnet1", kind="tun", mac=RANDOM_MAC, master="lan"))
    desired = _desired(mixed_config)
    assert desired.name == "vm1"
    asked = []

    def holds(domain, tap):
        asked.append((domain, tap))
        return tap == "vnet1"
    wired = reconcile.present(desired, snap, frozenset(), mixed_config, holds=holds)
    assert [w.port for w in wired] == ["vnet1"]
    assert asked == [("vm1", "vnet0"), ("vm1", "vnet1")]
    # A tap with the guest's MAC needs no proof.
    marked = host(Link("vnet0", kind="tun", mac=TAP1_MAC))
    assert [w.port for w in reconcile.present(desired, marked, holds=holds)] == ["vnet0"]
    assert len(asked) == 2


def test_where_the_kernel_cannot_tell_a_just_read_name_decides_and_a_cached_one_does_not(
        mixed_config):
    # The packaged agent cannot read another user's /proc/PID/fdinfo: holds
    # says None. Right after a libvirt read (move_taps) the name is libvirt's
    # own; the heal path's cache (no move_taps) may be older: not trusted.
    snap = host(Link("vnet0", kind="tun", mac=RANDOM_MAC))
    desired = _desired(mixed_config)
    unknown = lambda domain, tap: None  # noqa: E731
    assert [w.port for w in reconcile.present(desired, snap, frozenset(), mixed_config,
                                              holds=unknown)] == ["vnet0"]
    assert reconcile.present(desired, snap, frozenset(), mixed_config, move_taps=False,
                             holds=unknown) == ()
    # A kernel answer of "another process holds it" wins over the name.
    assert reconcile.present(desired, snap, frozenset(), mixed_config,
                             holds=lambda domain, tap: False) == ()


def test_an_entry_with_an_error_wires_nothing(mixed_config):
    snap = host(Link("vnet0", kind="tun", mac=TAP1_MAC))
    broken = Desired(key="domain-x", who="domain x", wants=_desired(mixed_config).wants,
                     macs=(MAC1, MAC2), error="refused")
    assert reconcile.present(broken, snap) == ()


def test_network_is_wired_only_while_its_bridge_is_reserved(mixed_config):
    desired = reconcile.network_desired(network_xml(), mixed_config)
    snap = host()
    assert reconcile.present(desired, snap, frozenset({"br05"}), mixed_config) == desired.wants
    # After the network's `stopped` hook dropped the reservation: nothing.
    assert reconcile.present(desired, snap, frozenset(), mixed_config) == ()


# --- what the planner makes of it ------------------------------------------------------------


def test_drifted_tap_on_source_bridge_is_moved_and_a_second_pass_plans_nothing(mixed_config):
    lan = Link("lan", kind="bridge")
    tap = Link("vnet0", kind="tun", mac=TAP1_MAC, master="lan")
    snap = host(lan, tap)
    desired = reconcile.domain_desired(live_xml([access(MAC1, 5)]), mixed_config)
    result = plan(reconcile.present(desired, snap), mixed_config, snap)
    after = result.simulate(snap)
    assert after.get("vnet0").master == "br05"
    assert after.get("eth0.5").parent == "eth0" and after.get("eth0.5").master == "br05"
    assert "ip link set dev vnet0 master br05" in result.render()
    assert not plan(reconcile.present(desired, after), mixed_config, after)


def test_stale_cache_entry_plans_nothing_for_a_reused_tap(mixed_config):
    snap = host(Link("lan", kind="bridge"),
                Link("vnet0", kind="tun", mac="fe:54:00:99:99:99", master="lan"))
    desired = reconcile.domain_desired(live_xml([access(MAC1, 5)]), mixed_config)
    assert not plan(reconcile.present(desired, snap), mixed_config, snap)


def test_bridge_of_an_unplugged_nic_is_cleaned_up(mixed_config):
    # After DEVICE_REMOVED the tap is gone; the managed br07 and its feed
    # serve nobody and are not reserved.
    snap = host(Link("br07", kind="bridge", managed=True),
                Link("eth0.7", kind="vlan", parent="eth0", vlan_id=7, master="br07",
                     managed=True))
    actions = plan_cleanup(mixed_config, snap, frozenset()).render()
    assert any("ip link del" in a and "br07" in a for a in actions)
    assert plan_cleanup(mixed_config, snap, frozenset({"br07"})).render() == ()


# --- netlink changes: which cached entries to re-wire ------------------------------------------


def test_needed_names_of_access_and_trunk_wants(mixed_config):
    access_want = Want(uplink="eth0", mode="access", vlans=(5,), port="vnet0", who="a")
    trunk_want = Want(uplink="eth1", mode="trunk", vlans=(5, 7), port="vnet1", who="t")
    assert reconcile.needed_names(access_want, mixed_config) == {"eth0", "eth0.5", "br05",
                                                                 "vnet0"}
    assert reconcile.needed_names(trunk_want, mixed_config) == {"eth1", "br1", "vnet1"}


def test_a_deleted_feed_concerns_only_the_guests_on_its_vlan(mixed_config):
    vlan5 = reconcile.domain_desired(live_xml([access(MAC1, 5)], name="a"), mixed_config)
    vlan7 = reconcile.domain_desired(
        live_xml([access(MAC3, 7)], nics=((MAC3, "vnet3", "lan"),), name="b"), mixed_config)
    assert reconcile.affected([vlan5, vlan7], frozenset({"eth0.5"}), mixed_config) == [vlan5]
    assert reconcile.affected([vlan5, vlan7], frozenset({"eth0"}), mixed_config) == [vlan5,
                                                                                    vlan7]
    assert reconcile.affected([vlan5, vlan7], frozenset({"virbr0"}), mixed_config) == []


def test_held_devices_keep_their_wants_out(mixed_config):
    desired = _desired(mixed_config)
    kept = reconcile.not_held(desired.wants, frozenset({"eth0.5"}), mixed_config)
    assert [w.vlans for w in kept] == [(7,)]
    assert reconcile.not_held(desired.wants, frozenset(), mixed_config) == desired.wants


def test_changes_name_what_a_reread_changed(mixed_config):
    old = {"domain-" + UUID: reconcile.domain_desired(live_xml([access(MAC1, 5)]), mixed_config)}
    new = {"domain-" + UUID: reconcile.domain_desired(
        live_xml([access(MAC1, 7)]), mixed_config)}
    assert reconcile.changes(old, new) == ["domain vm1: wants vnet0 access 7"]
    assert reconcile.changes(old, old) == []
    assert reconcile.changes(old, {}) == ["domain vm1: no longer running (or no longer tagged)"]
