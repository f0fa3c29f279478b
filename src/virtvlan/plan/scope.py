"""What of the host a plan needs: the scope of a hook's read.

Pure. `scope_for` says which links, port sets, VLAN sub-interfaces and
routes plan() looks at for some wants; `restrict` cuts exactly that out of a
full snapshot, so that plan(wants, config, restrict(snap, scope_for(wants,
config))) == plan(wants, config, snap) can be tested without a kernel
(tests/unit/test_scope.py), and a scoped read (host/scoped.py read_scoped)
can be compared with a full one on a real kernel (tests/kernel/test_scope.py).

Cleanup and unplug (plan_cleanup, plan_unplug) look at every bridge of the
config and every filter, so they keep the full read (docs/performance.md,
"What a hook call reads").
"""

from dataclasses import replace
from typing import List, Sequence, Set

from virtvlan.errors import InputError
from virtvlan.model import ACCESS, TRUNK, Link, Scope, Snapshot, Want
from virtvlan.parse.config import Config
from virtvlan.plan import wiring

__all__ = ["FULL", "Scope", "first_read", "named", "refine", "restrict", "scope_for"]

FULL = Scope(full=True)


def named(scope: Scope) -> Set[str]:
    """Every name a scoped read looks up one by one: the named links, and
    the bridges, VLAN parents and route devices the other fields name."""
    return set(scope.names | scope.port_sets | scope.vlan_parents | scope.routes_of)


def scope_for(wants: Sequence[Want], config: Config) -> Scope:
    """The part of the host plan(wants, config, ...) reads (planner.py):

    per want, the uplink device (its MTU; on a trunk uplink its addresses and
    routes, which move with it into the trunk bridge), the trunk bridge with
    its ports (sync_trunk: their VLAN tables) and its host VLAN devices, the
    access bridge with its ports (a second feed is refused) and its feed,
    the guest port and the bridge it joins; the VLAN sub-interfaces of every
    device that may be made a bridge port or get a VLAN device (the
    never-mixed rule, one VLAN device per VID). A want naming an unknown
    uplink gets the full scope: plan() refuses it, and which refusal comes
    first depends on the wants before it.
    """
    names: Set[str] = set()
    ports: Set[str] = set()
    parents: Set[str] = set()
    routes: Set[str] = set()
    for want in wants:
        who = want.who or (want.port or "request")
        try:
            uplink = config.uplink(want.uplink, who)
        except InputError:
            return FULL
        names.add(uplink.device)
        parents.add(uplink.device)
        if uplink.wiring == TRUNK:
            bridge = uplink.trunk_bridge
            names.add(bridge)
            ports.add(bridge)
            parents.add(bridge)
            routes.add(uplink.device)
            names.update(uplink.trunk_vlan(vid) for vid in uplink.host_vlans)
        if want.mode == ACCESS and want.vlans:
            vid = want.vlans[0]
            feed, parent = uplink.feed(vid), uplink.feed_parent()
            names.update((uplink.access_bridge(vid), feed, parent))
            ports.add(uplink.access_bridge(vid))
            parents.update((feed, parent))
        if want.port is not None and want.vlans:
            names.add(want.port)
            parents.add(want.port)
            names.add(wiring.uplink_bridge(uplink, want.mode, want.vlans))
    return Scope(names=frozenset(names), port_sets=frozenset(ports),
                 vlan_parents=frozenset(parents), routes_of=frozenset(routes),
                 filters=any(u.port_security for u in config.uplinks))


def first_read(scope: Scope) -> Scope:
    """The part of `scope` (scope_for's) that refine judges from: its named
    links, without any link dump."""
    return replace(scope, port_sets=frozenset(), vlan_parents=frozenset())


def refine(scope: Scope, wants: Sequence[Want], config: Config, first: Snapshot) -> Scope:
    """`scope` (scope_for's for `wants`) without the port sets and VLAN
    parents plan() cannot look at, judged from `first`: the scope's named
    links (first_read; every bridge of a port set and every VLAN parent is
    a named link).

    The ports of a trunk bridge are looked at only when it filters VLANs or
    is owned (sync_trunk); those of an access bridge when it exists (a
    second feed is refused). The VLAN devices of a device are looked at only
    when it is made a bridge port (the uplink, a feed, a tap not yet on the
    bridge it joins), when a VLAN device is created on it (a feed or host
    VLAN device that does not exist yet), and on a trunk bridge that filters
    or is owned (the VIDs of its VLAN devices). So a warm call on an admin's
    trunk bridge dumps no link at all. Judged from the snapshot, before the
    plan's own actions, which only ever add what they make (a device the
    plan creates has no ports or VLAN devices but the ones it gives it)."""
    if scope.full:
        return scope
    parents: Set[str] = set()
    ports: Set[str] = set()
    for want in wants:
        uplink = config.uplink(want.uplink, want.who or (want.port or "request"))
        if uplink.wiring == TRUNK:
            bridge, nic = first.get(uplink.trunk_bridge), first.get(uplink.device)
            if (nic is None or nic.master != uplink.trunk_bridge
                    or any(first.get(uplink.trunk_vlan(vid)) is None
                           for vid in uplink.host_vlans)):
                parents.update((uplink.device, uplink.trunk_bridge))
            if bridge is not None and (bridge.vlan_filtering or wiring.owns_vlans(bridge, uplink)):
                parents.add(uplink.trunk_bridge)
                ports.add(uplink.trunk_bridge)
        if want.mode == ACCESS and want.vlans:
            vid = want.vlans[0]
            feed = first.get(uplink.feed(vid))
            if feed is None:
                parents.add(uplink.feed_parent())
            elif feed.master != uplink.access_bridge(vid):
                parents.add(feed.name)
            if first.get(uplink.access_bridge(vid)) is not None:
                ports.add(uplink.access_bridge(vid))
        if want.port is not None and want.vlans:
            tap = first.get(want.port)
            if tap is not None and tap.master != wiring.uplink_bridge(uplink, want.mode,
                                                                      want.vlans):
                parents.add(want.port)
    return replace(scope, port_sets=scope.port_sets & frozenset(ports),
                   vlan_parents=scope.vlan_parents & frozenset(parents))


def restrict(snap: Snapshot, scope: Scope) -> Snapshot:
    """What a scoped read of the host `snap` shows returns (model.Scope):
    the named links and their masters, the ports of the port sets (all with
    their VLAN tables), the VLAN sub-interfaces of the VLAN parents (without
    theirs), addresses only on the route devices, the routes via those; in
    snapshot order. `filters` is kept as it is: nft, not rtnetlink, reads it.
    The full scope returns `snap` itself."""
    if scope.full:
        return snap
    lookup = named(scope)
    tables: Set[str] = set()
    for name in lookup:
        link = snap.get(name)
        if link is not None:
            tables.add(name)
            if link.master is not None and snap.get(link.master) is not None:
                tables.add(link.master)
    links: List[Link] = []
    for link in snap.links:
        if link.name in tables or link.master in scope.port_sets:
            pass
        elif link.kind == "vlan" and link.parent in scope.vlan_parents:
            link = replace(link, vlans=None)
        else:
            continue
        if link.name not in scope.routes_of and link.addresses:
            link = replace(link, addresses=())
        links.append(link)
    return replace(snap, links=tuple(links),
                   routes=tuple(r for r in snap.routes if r.dev in scope.routes_of))
