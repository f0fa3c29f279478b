"""Properties of the planner on random configs, hosts and wants (hypothesis).

Hosts are built around the config: uplink NICs (some with host addresses,
some missing or in an admin bridge), guest taps, and, per allowed VLAN, maybe
devices an admin or an earlier virt-vlan run left: a feed, a bridge, both, a
foreign VLAN device, a device of the wrong kind. Many such hosts are refused;
the properties are about the plans that are not.
"""

from dataclasses import replace
from typing import List

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from virtvlan.parse import config as config_mod
from virtvlan.plan.actions import CreateVlan, DeleteLink, Plan, SetMaster
from virtvlan.parse.config import Config, Uplink
from virtvlan.errors import Refused
from virtvlan.model import Address, Link, Route, Snapshot, Want
from virtvlan.plan.planner import plan, plan_cleanup, plan_unplug
from virtvlan.parse.vlans import format_vlan_list

VLAN_POOL = (5, 7, 100)
HOST_VLAN = 10  # outside VLAN_POOL: the config refuses a host VLAN that is a guest VLAN
TAPS = ("vnet0", "vnet1", "vnet2", "vnet3")
MTUS = (1500, 9000)

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# --- strategies ---------------------------------------------------------------


@st.composite
def configs(draw, wirings=("access", "trunk"), keep_empty=True) -> Config:
    sections = []
    for n in range(draw(st.integers(1, 2))):
        wiring = draw(st.sampled_from(wirings))
        allowed = draw(st.sets(st.sampled_from(VLAN_POOL), min_size=1))
        lines = ["[uplink eth%d]" % n, "wiring = " + wiring,
                 "allowed-vlans = " + format_vlan_list(allowed)]
        if wiring == "trunk" and draw(st.booleans()):
            lines.append("host-vlans = %d" % HOST_VLAN)
        if keep_empty and rarely(draw):
            lines.append("keep-empty-bridges = yes")
        sections.append("\n".join(lines))
    return config_mod.parse("\n\n".join(sections) + "\n", "prop.conf")


def rarely(draw) -> bool:
    """True about one time in eight (not biased the way integer bounds are)."""
    return draw(st.sampled_from((False,) * 7 + (True,)))


def vlan_link(name, parent, vid, **kw):
    return Link(name, kind="vlan", parent=parent, vlan_id=vid, **kw)


# What may already exist for one (uplink, VLAN) before virt-vlan runs.
ADMIN_STATES = ("none", "none", "none", "feed", "bridge", "both", "leftover", "foreign-vlan",
                "wrong-kind")
# The subset after which unplug + cleanup must restore the host exactly:
# admin devices virt-vlan adopts (it deletes only what it added to them).
RESTORABLE_STATES = ("none", "none", "feed", "bridge", "both")


def admin_links(uplink: Uplink, vid: int, state: str, mtu: int) -> List[Link]:
    feed, bridge, parent = uplink.feed(vid), uplink.access_bridge(vid), uplink.feed_parent()
    if state == "feed":
        return [vlan_link(feed, parent, vid, mtu=mtu)]
    if state == "bridge":
        return [Link(bridge, kind="bridge", mtu=mtu)]
    if state == "both":
        return [Link(bridge, kind="bridge", mtu=mtu), vlan_link(feed, parent, vid, mtu=mtu,
                                                               master=bridge)]
    if state == "leftover":
        return [Link(bridge, kind="bridge", mtu=mtu, managed=True),
                vlan_link(feed, parent, vid, mtu=mtu, master=bridge, managed=True)]
    if state == "foreign-vlan":
        return [vlan_link("vl%d-%s" % (vid, parent), parent, vid, mtu=mtu)]
    if state == "wrong-kind":
        return [Link(feed, kind="dummy", mtu=mtu)]
    return []


@st.composite
def hosts(draw, config: Config, states=ADMIN_STATES, restorable=False) -> Snapshot:
    links: List[Link] = []
    routes: List[Route] = []
    for uplink in config.uplinks:
        mtu = 1500 if restorable else draw(st.sampled_from(MTUS))
        if not restorable and rarely(draw):
            continue  # the uplink NIC is missing
        nic = Link(uplink.device, mac="52:54:00:aa:00:%02x" % uplink.position, mtu=mtu,
                   index=2 + uplink.position)
        master = None
        if uplink.wiring == "trunk" and not restorable:
            # none / admin trunk bridge / our trunk bridge / NIC in a foreign bridge
            trunk_state = draw(st.sampled_from(("none", "none", "admin", "ours", "foreign")))
            if trunk_state in ("admin", "ours"):
                links.append(Link(uplink.trunk_bridge, kind="bridge", mtu=mtu,
                                  managed=trunk_state == "ours"))
                master = uplink.trunk_bridge
            elif trunk_state == "foreign":
                links.append(Link("brx%d" % uplink.position, kind="bridge", mtu=mtu))
                master = "brx%d" % uplink.position
        if not restorable and draw(st.booleans()):
            dynamic = rarely(draw)
            addr = Address("inet", "192.0.2.%d" % (10 + uplink.position), 24, dynamic=dynamic)
            holder = master if master == uplink.trunk_bridge else uplink.device
            if holder == uplink.trunk_bridge:
                links[-1] = replace(links[-1], addresses=(addr,))
            else:
                nic = replace(nic, addresses=(addr,))
            if draw(st.booleans()):
                routes.append(Route("inet", "default", holder, gateway="192.0.2.1"))
        if not restorable and uplink.wiring == "trunk" and rarely(draw):
            links.append(vlan_link("%s.300" % uplink.device, uplink.device, 300, mtu=mtu))
        links.append(replace(nic, master=master))
        trunk_exists = uplink.wiring != "trunk" or master == uplink.trunk_bridge
        for vid in sorted(uplink.allowed_vlans):
            state = draw(st.sampled_from(states))
            if trunk_exists:
                links += admin_links(uplink, vid, state, mtu)
    for index, tap in enumerate(TAPS):
        if restorable:
            links.append(Link(tap, kind="tun", index=30 + index))
        else:
            links.append(Link(tap, kind=draw(st.sampled_from(("tun", "veth"))),
                              mtu=draw(st.sampled_from(MTUS)), up=draw(st.booleans()),
                              index=30 + index))
    # Deduplicate by name (two states may name the same device); first wins.
    seen, unique = set(), []
    for link in links:
        if link.name not in seen:
            seen.add(link.name)
            unique.append(link)
    return Snapshot(links=tuple(unique), routes=tuple(routes))


@st.composite
def want_lists(draw, config: Config, modes=("access", "trunk")) -> List[Want]:
    free = list(TAPS)
    wants = []
    for _ in range(draw(st.integers(1, 4))):
        uplink = draw(st.sampled_from(config.uplinks))
        # Trunk guests on access wiring are refused; keep them rare.
        if "trunk" in modes and (uplink.wiring == "trunk" or rarely(draw)):
            mode = draw(st.sampled_from(modes))
        else:
            mode = "access"
        allowed = sorted(uplink.allowed_vlans)
        if mode == "access":
            vlans = (draw(st.sampled_from(allowed)),)
        else:
            vlans = tuple(sorted(draw(st.sets(st.sampled_from(allowed), min_size=1))))
        port = None
        if free and draw(st.integers(0, 3)):
            port = free.pop(draw(st.integers(0, len(free) - 1)))
        wants.append(Want(uplink=uplink.name, mode=mode, vlans=vlans, port=port,
                          who="domain vm, port %s" % port))
    return wants


@st.composite
def scenarios(draw):
    config = draw(configs())
    return config, draw(hosts(config)), draw(want_lists(config))


@st.composite
def access_scenarios(draw):
    config = draw(configs(wirings=("access",), keep_empty=False))
    snap = draw(hosts(config, states=RESTORABLE_STATES, restorable=True))
    return config, snap, draw(want_lists(config, modes=("access",)))


def plan_or_none(wants, config, snap):
    try:
        return plan(wants, config, snap)
    except Refused:
        return None


# --- properties of plan() -----------------------------------------------------


@SETTINGS
@given(scenarios())
def test_plan_is_idempotent(scenario):
    config, snap, wants = scenario
    first = plan_or_none(wants, config, snap)
    assume(first is not None)
    assert plan(wants, config, first.simulate(snap)).actions == ()


@SETTINGS
@given(scenarios())
def test_plan_never_deletes(scenario):
    config, snap, wants = scenario
    result = plan_or_none(wants, config, snap)
    assume(result is not None)
    assert not any(isinstance(action, DeleteLink) for action in result)


@SETTINGS
@given(scenarios())
def test_plan_never_creates_a_vlan_device_on_a_bridge_port(scenario):
    config, snap, wants = scenario
    result = plan_or_none(wants, config, snap)
    assume(result is not None)
    model = snap
    for action in result:  # in apply order
        if isinstance(action, CreateVlan):
            assert model.get(action.parent).master is None, action
        model = action.simulate(model)


@SETTINGS
@given(scenarios())
def test_plan_never_enslaves_a_device_with_vlan_children(scenario):
    config, snap, wants = scenario
    result = plan_or_none(wants, config, snap)
    assume(result is not None)
    model = snap
    for action in result:
        if isinstance(action, SetMaster):
            assert model.vlan_children(action.port) == (), action
        model = action.simulate(model)


@SETTINGS
@given(scenarios())
def test_plan_enslaves_only_wanted_ports_feeds_and_trunk_uplinks(scenario):
    # A domain XML must not be able to make us enslave an arbitrary device.
    config, snap, wants = scenario
    result = plan_or_none(wants, config, snap)
    assume(result is not None)
    allowed = {w.port for w in wants if w.port}
    for uplink in config.uplinks:
        allowed |= {uplink.feed(v) for v in uplink.allowed_vlans}
        if uplink.wiring == "trunk":
            allowed.add(uplink.device)
    assert {a.port for a in result if isinstance(a, SetMaster)} <= allowed


@SETTINGS
@given(scenarios(), st.data())
def test_undoing_any_prefix_of_a_plan_restores_the_host(scenario, data):
    # The executor's rollback: after k actions ran, their undo() (each taken
    # on the snapshot before it ran), in reverse order, gives the host back.
    config, snap, wants = scenario
    result = plan_or_none(wants, config, snap)
    assume(result is not None and result)
    ran = data.draw(st.integers(1, len(result)), label="actions run")
    state, undo_log = snap, []
    for action in result.actions[:ran]:
        undo_log.append(action.undo(state))
        state = action.simulate(state)
    for undo in reversed(undo_log):
        state = Plan(undo).simulate(state)
    assert state == snap


# --- properties of unplug and cleanup -----------------------------------------


def check_deletions(config: Config, snap: Snapshot, actions, in_use=frozenset()) -> None:
    """Every DeleteLink is ours, unused, and not a trunk bridge or host VLAN."""
    keep = {u.trunk_bridge for u in config.uplinks if u.wiring == "trunk"}
    keep |= {u.trunk_vlan(v) for u in config.uplinks for v in u.host_vlans}
    deleted = [a.name for a in actions if isinstance(a, DeleteLink)]
    for name in deleted:
        link = snap.get(name)
        assert link is not None and link.managed, name
        assert name not in keep and name not in in_use, name
        if link.kind == "bridge":
            feeds = {u.feed(v) for u in config.uplinks for v in u.allowed_vlans}
            assert {p.name for p in snap.ports(name)} <= feeds, name


@SETTINGS
@given(scenarios(), st.sets(st.sampled_from(("br05", "br07", "br15", "br1100"))))
def test_cleanup_deletes_only_our_unused_devices(scenario, in_use):
    config, snap, wants = scenario
    check_deletions(config, snap, plan_cleanup(config, snap, frozenset(in_use)), in_use)
    result = plan_or_none(wants, config, snap)
    if result is not None:
        wired = result.simulate(snap)
        check_deletions(config, wired, plan_cleanup(config, wired, frozenset(in_use)), in_use)


@SETTINGS
@given(scenarios())
def test_unplug_deletes_only_our_unused_devices(scenario):
    config, snap, wants = scenario
    result = plan_or_none(wants, config, snap)
    assume(result is not None)
    wired = result.simulate(snap)
    for want in wants:
        if want.port is None:
            continue
        unplug = plan_unplug(want.port, config, wired)
        # Deletions are judged on the host as it is once the port is out.
        check_deletions(config, unplug.actions[0].simulate(wired), unplug.actions[1:])


@SETTINGS
@given(access_scenarios())
def test_unplug_all_and_cleanup_restores_an_access_wired_host(scenario):
    config, snap, wants = scenario
    result = plan_or_none(wants, config, snap)
    assume(result is not None)
    state = result.simulate(snap)
    for want in wants:
        if want.port is not None:
            state = plan_unplug(want.port, config, state).simulate(state)
    state = plan_cleanup(config, state).simulate(state)
    assert state == snap


@SETTINGS
@given(access_scenarios())
def test_access_scenarios_are_mostly_plannable(scenario):
    # Guards the generator: the round-trip property above must not pass by
    # refusing everything. Restorable hosts have no conflicting devices.
    config, snap, wants = scenario
    assert plan_or_none(wants, config, snap) is not None


# --- bridge VLAN tables -----------------------------------------------------------

VIDS = st.integers(1, 12)


@st.composite
def port_vlans(draw):
    from virtvlan.model import PortVlans

    members = draw(st.sets(VIDS, max_size=8))
    untagged = draw(st.sets(st.sampled_from(sorted(members)), max_size=3)) if members else set()
    pvid = draw(st.sampled_from(sorted(members))) if members and draw(st.booleans()) else None
    return PortVlans(frozenset(members - untagged), frozenset(untagged), pvid)


@st.composite
def vlan_actions(draw):
    from virtvlan.plan.actions import AddBridgeVlan, DelBridgeVlan

    first = draw(VIDS)
    last = draw(st.integers(first, 12))
    if draw(st.booleans()):
        return DelBridgeVlan("vnet0", first, last)
    pvid = first == last and draw(st.booleans())
    return AddBridgeVlan("vnet0", first, last, pvid=pvid, untagged=draw(st.booleans()))


@SETTINGS
@given(port_vlans(), st.lists(vlan_actions(), min_size=1, max_size=5))
def test_undoing_bridge_vlan_changes_restores_the_table(vlans, steps):
    before = Snapshot(links=(Link("br0", "bridge"), Link("vnet0", "tun", master="br0",
                                                         vlans=vlans)))
    state, undo = before, []
    for action in steps:
        undo = list(action.undo(state)) + undo
        state = action.simulate(state)
    for action in undo:
        state = action.simulate(state)
    assert state.get("vnet0").vlans == vlans


@SETTINGS
@given(port_vlans(), st.sets(st.sampled_from((2, 3, 5, 7, 8, 9, 10)), min_size=1),
       st.sampled_from((None, 4, 11)))
def test_a_trunk_port_gets_exactly_its_list_in_one_plan(vlans, wanted, native):
    """Whatever a tap carried before, one plan gives it exactly `wanted`
    tagged and `native` as PVID untagged, and a second plan is empty."""
    from virtvlan.model import PortVlans

    config = config_mod.parse("[uplink eth0]\nwiring = trunk\nallowed-vlans = 1-12\n", "p.conf")
    default = PortVlans(untagged=frozenset({1}), pvid=1)
    snap = Snapshot(links=(Link("br0", "bridge", managed=True, vlan_filtering=True,
                                vlans=default),
                           Link("eth0", master="br0", vlans=default),
                           Link("vnet0", "tun", master="br0", vlans=vlans)))
    want = Want(uplink="eth0", mode="trunk", vlans=tuple(sorted(wanted)), port="vnet0",
                native=native)
    done = plan([want], config, snap).simulate(snap)
    assert done.get("vnet0").vlans == PortVlans(
        frozenset(wanted), frozenset({native} - {None}), native)
    assert done.get("eth0").vlans.tagged == frozenset(wanted | {native} - {None})
    assert not plan([want], config, done)


def with_tables(snap: Snapshot, filtering: bool) -> Snapshot:
    """`snap` as rtnl reads it: every bridge and bridge port with the kernel's
    default entry (PVID 1 untagged); trunk bridges filter when `filtering`."""
    from virtvlan.model import PortVlans

    default = PortVlans(untagged=frozenset({1}), pvid=1)
    bridges = {l.name for l in snap if l.kind == "bridge"}
    links = []
    for link in snap:
        if link.kind == "bridge":
            link = replace(link, vlans=default, vlan_filtering=filtering and link.name
                           .startswith("br") and len(link.name) == 3)  # br0, br1: trunk bridges
        elif link.master in bridges:
            link = replace(link, vlans=default)
        links.append(link)
    return replace(snap, links=tuple(links))


@SETTINGS
@given(scenarios(), st.booleans(), st.data())
def test_with_vlan_tables_plans_are_idempotent_and_undoable(scenario, filtering, data):
    """The properties above on hosts whose VLAN tables were read (so trunk
    bridges are programmed, converted or served additively)."""
    config, snap, wants = scenario
    snap = with_tables(snap, filtering)
    result = plan_or_none(wants, config, snap)
    assume(result is not None and result)
    event("vlan actions: %s" % any(type(a).__name__.endswith("BridgeVlan") for a in result))
    assert plan(wants, config, result.simulate(snap)).actions == ()
    ran = data.draw(st.integers(1, len(result)), label="actions run")
    state, undo_log = snap, []
    for action in result.actions[:ran]:
        undo_log.append(action.undo(state))
        state = action.simulate(state)
    for undo in reversed(undo_log):
        state = Plan(undo).simulate(state)
    assert state == snap
