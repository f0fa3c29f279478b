"""Verification after apply: the links read back against the plan's simulation.

Pure (no kernel, no pyroute2): `mismatches` compares two Snapshots and
lists every difference; `verify` logs all of them to the journal, one line
each (the whole desired-vs-found difference, as nmstate does), and raises
VerifyFailed, whose one-line message names the first few.
"""

import logging
from typing import AbstractSet, List, Optional, Set, Tuple

from virtvlan.errors import VerifyFailed
from virtvlan.model import Link, PortVlans, Snapshot
from virtvlan.parse.vlans import format_vlan_list
from virtvlan.plan import actions as act

log = logging.getLogger(__name__)

# Action fields naming the devices an action changes.
CHANGED_FIELDS = ("name", "port", "dev", "src", "dst")
# Link fields compared on every touched link ("managed" not on adopted ones).
_LINK_FIELDS = ("kind", "master", "vlan_id", "parent", "mtu", "up")


def touched(plan: act.Plan) -> List[str]:
    """The devices `plan` changes, in plan order, each once."""
    names: List[str] = []
    for action in plan:
        for field in CHANGED_FIELDS:
            value = getattr(action, field, None)
            if isinstance(value, str) and value not in names:
                names.append(value)
    return names


def compared(plan: act.Plan) -> List[str]:
    """The devices whose state `mismatches` compares after `plan`: the
    touched ones, and the bridges whose VLAN filtering it switches (the
    read-back after apply needs these, and only these)."""
    names = touched(plan)
    for action in plan:
        if isinstance(action, act.SetVlanFiltering) and action.bridge not in names:
            names.append(action.bridge)
    return names


def _addr_keys(link: Optional[Link]) -> Set[Tuple[str, str, int]]:
    return {(a.family, a.local, a.prefixlen) for a in link.addresses} if link else set()


def _cidrs(keys: Set[Tuple[str, str, int]]) -> str:
    return " ".join(sorted("%s/%d" % (key[1], key[2]) for key in keys)) or "none"


def _show(value: object) -> str:
    """VLAN tables as `bridge vlan` words, anything else as repr."""
    if isinstance(value, PortVlans):
        return "tagged %s, untagged %s, pvid %s" % (
            format_vlan_list(value.tagged) or "none", format_vlan_list(value.untagged) or "none",
            value.pvid if value.pvid is not None else "none")
    return repr(value)


def mismatches(plan: act.Plan, expected: Snapshot, actual: Snapshot,
               adopted: AbstractSet[str] = frozenset()) -> List[str]:
    """Every way the links `plan` touched differ in `actual` (read back)
    from `expected` (the plan's simulation), each as one phrase such as
    "br1 has mtu=1500, expected 1400"; empty when they match.

    Compared: the link fields of each touched device (`managed` not on
    `adopted` devices, which another process made and which keep their own
    alias), the VLAN tables and the filtering switch the plan changed, and
    the addresses it moved."""
    found: List[str] = []
    for name in touched(plan):
        want, got = expected.get(name), actual.get(name)
        if want is None or got is None:
            if want is not got:
                found.append("%s %s" % (name, "is missing" if got is None else "still exists"))
            continue
        fields = _LINK_FIELDS if name in adopted else _LINK_FIELDS + ("managed",)
        for field in fields:
            if getattr(want, field) != getattr(got, field):
                found.append("%s has %s=%r, expected %r" % (
                    name, field, getattr(got, field), getattr(want, field)))
    seen: Set[Tuple[str, str]] = set()
    for action in plan:
        # Bridge VLAN tables of the ports (and bridges) whose entries changed,
        # and the filtering switch: compared as `bridge vlan show` lists them.
        if isinstance(action, (act.AddBridgeVlan, act.DelBridgeVlan)):
            name, field = action.dev, "vlans"
        elif isinstance(action, act.SetIsolated):
            name, field = action.port, "isolated"
        elif isinstance(action, act.SetVlanFiltering):
            name, field = action.bridge, "vlan_filtering"
        else:
            continue
        if (name, field) in seen:
            continue
        seen.add((name, field))
        want, got = expected.get(name), actual.get(name)
        if want is not None and got is not None and getattr(want, field) != getattr(got, field):
            found.append("%s has %s=%s, expected %s" % (
                name, field, _show(getattr(got, field)), _show(getattr(want, field))))
    for port in {a.port for a in plan if isinstance(a, act.SetPortFilter)}:
        want_rules, got_rules = expected.port_filter(port), actual.port_filter(port)
        if want_rules != got_rules:
            found.append("%s has filter rules %s, expected %s" % (
                port, ",".join(got_rules) or "none", ",".join(want_rules) or "none"))
    for action in plan:
        if not isinstance(action, act.MoveAddresses):
            continue
        moved = {(a.family, a.local, a.prefixlen) for a in action.addresses}
        for name in (action.src, action.dst):
            wanted = _addr_keys(expected.get(name)) & moved
            there = _addr_keys(actual.get(name)) & moved
            if wanted != there:
                found.append("%s has addresses %s, expected %s" % (
                    name, _cidrs(there), _cidrs(wanted)))
    return found


def verify(plan: act.Plan, expected: Snapshot, actual: Snapshot,
           adopted: AbstractSet[str] = frozenset()) -> None:
    """Raise VerifyFailed unless `actual` matches `expected` (see
    mismatches), after logging every mismatch as an error of its own."""
    found = mismatches(plan, expected, actual, adopted)
    if not found:
        return
    log.error("verification after apply failed: %d mismatch(es) between the planned and "
              "the found state of %s", len(found), ", ".join(touched(plan)))
    for number, line in enumerate(found, 1):
        log.error("verification mismatch %d/%d: %s", number, len(found), line)
    raise VerifyFailed(found)
