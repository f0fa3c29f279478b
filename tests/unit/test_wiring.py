"""checks/wiring.py: one verdict on "is this NIC wired as it should be".

Each case (a host snapshot and one tagged NIC) goes to nic_wiring and to
everything that must agree with it: `show`/`list` (nic_statuses and its table
row), `check` (audit's PROBLEM findings), `explain` (the hops' states) and the
agent's reconcile (the wants it keeps on the host, then the planner), which
plans nothing exactly when nic_wiring finds nothing a plan can fix.
"""

from typing import NamedTuple, Optional, Tuple

import pytest

from conftest import ACCESS_CONF, TRUNK_CONF, parse_config
from virtvlan.agent import reconcile
from virtvlan.checks import wiring
from virtvlan.checks.audit import PROBLEM, audit
from virtvlan.checks.explain import paths
from virtvlan.cli import nics
from virtvlan.errors import InputError
from virtvlan.model import Link, PortVlans, Snapshot
from virtvlan.parse.metadata import Domain, Nic, VlanSpec, parse_domain
from virtvlan.plan.planner import plan
from virtvlan.plan.wiring import bridge_for

ACCESS = parse_config(ACCESS_CONF)  # eth0: eth0.V feeds br0V
TRUNK = parse_config(TRUNK_CONF)  # eth1 is a port of br0
ADMINS_TRUNK = parse_config(TRUNK_CONF.replace("wiring = trunk\n", "wiring = trunk\n"
                                               "trunk-filtering = no\n"))
MAC = "52:54:00:00:00:01"
TAP_MAC = "fe:54:00:00:00:01"  # what libvirt gives the guest's tap
UUID = "0f7e35a4-3f9b-4a8e-9a51-2b8c3a4d5e01"


def _vlans(tagged=(), untagged=(), pvid=None) -> PortVlans:
    return PortVlans(frozenset(tagged), frozenset(untagged), pvid)


# The trunk guest's own table: 5 and 7 tagged, 100 native (PVID, untagged).
GOOD_TRUNK_TAP = _vlans((5, 7), (100,), 100)


def _access_host(**tap) -> Snapshot:
    return Snapshot((
        Link("eth0"),
        Link("eth0.5", kind="vlan", parent="eth0", vlan_id=5, master="br05", managed=True),
        Link("br05", kind="bridge", managed=True),
        Link("br07", kind="bridge"),
        Link("vnet0", kind="tun", mac=TAP_MAC, **dict({"master": "br05"}, **tap)),
    ))


def _trunk_host(tap: Optional[PortVlans] = GOOD_TRUNK_TAP, filtering: bool = True,
                managed: bool = True, uplink_vlans: Tuple[int, ...] = (5, 7, 100)) -> Snapshot:
    return Snapshot((
        Link("eth1", master="br0", vlans=_vlans(uplink_vlans, (1,), 1)),
        Link("br0", kind="bridge", managed=managed, vlan_filtering=filtering,
             vlans=_vlans((), (1,), 1)),
        Link("vnet0", kind="tun", mac=TAP_MAC, master="br0", vlans=tap),
    ))


class Case(NamedTuple):
    config: object
    spec: VlanSpec
    snap: Snapshot
    problems: Tuple[str, ...]  # nic_wiring's, in order
    healable: bool  # the agent's reconcile plans something
    note: Optional[str] = None  # a word of nic_wiring's note


ACCESS5 = VlanSpec(MAC, "access", (5,))
TRUNK57 = VlanSpec(MAC, "trunk", (5, 7), native=100)

CASES = {
    "access wired": Case(ACCESS, ACCESS5, _access_host(), (), False),
    "access on the wrong bridge": Case(
        ACCESS, ACCESS5, _access_host(master="br07"),
        ("tap vnet0 is on br07, not on its bridge br05",), True),
    "tap missing": Case(
        ACCESS, ACCESS5, Snapshot(tuple(l for l in _access_host() if l.name != "vnet0")),
        ("tap vnet0 does not exist",), False),
    "uplink device down": Case(
        ACCESS, ACCESS5, _access_host().changed("eth0", up=False),
        ("uplink device eth0 is down",), False),
    "trunk wired": Case(TRUNK, TRUNK57, _trunk_host(), (), False),
    "trunk native VLAN wrong": Case(
        TRUNK, TRUNK57, _trunk_host(_vlans((5, 7), (1,), 1)),
        ("tap vnet0 does not have native VLAN 100 as its untagged PVID (PVID 1)",
         "tap vnet0 also carries VLAN 1 on br0"), True),
    "trunk native VLAN missing": Case(
        TRUNK, TRUNK57, _trunk_host(_vlans((5, 7))),
        ("tap vnet0 does not have native VLAN 100 as its untagged PVID (PVID none)",), True),
    "trunk VLAN table lacks a VLAN on a filtering bridge": Case(
        TRUNK, TRUNK57, _trunk_host(_vlans((5,), (100,), 100)),
        ("tap vnet0 does not carry VLAN 7 tagged on br0",), True),
    "trunk uplink port lacks a VLAN": Case(
        TRUNK, TRUNK57, _trunk_host(uplink_vlans=(5, 100)),
        ("uplink device eth1 does not carry VLAN 7 on br0",), True),
    "non-filtering bridge (the admin's)": Case(
        ADMINS_TRUNK, TRUNK57, _trunk_host(_vlans((), (1,), 1), filtering=False, managed=False),
        (), False, "does not filter VLANs"),
    "virt-vlan's bridge not filtering yet": Case(
        TRUNK, TRUNK57, _trunk_host(filtering=False),
        ("trunk bridge br0 does not filter VLANs yet",), True),
}


def _domain(case: Case) -> Domain:
    bridge = bridge_for(case.spec, case.config)
    return Domain("vm1", UUID, nics=(Nic(MAC, "bridge", target="vnet0", source_bridge=bridge),),
                  specs=(case.spec,))


def _live_xml(case: Case) -> bytes:
    """The running domain's live XML, as the agent reads it from libvirt."""
    spec = case.spec
    attrs = ("vlan='%d'" % spec.vlans[0] if spec.mode == "access" else
             "vlans='%s' native='%d'" % (",".join(map(str, spec.vlans)), spec.native))
    return ("<domain type='kvm' id='3'><name>vm1</name><uuid>%s</uuid><metadata>"
            "<vv:vlan xmlns:vv='urn:virt-vlan:1'><vv:interface mac='%s' mode='%s' %s/>"
            "</vv:vlan></metadata><devices><interface type='bridge'><mac address='%s'/>"
            "<source bridge='%s'/><target dev='vnet0'/><model type='virtio'/></interface>"
            "</devices></domain>" % (UUID, MAC, spec.mode, attrs, MAC,
                                     bridge_for(spec, case.config))).encode()


@pytest.fixture(params=sorted(CASES), ids=lambda name: name.replace(" ", "-"))
def case(request) -> Case:
    return CASES[request.param]


def test_nic_wiring_finds_what_differs(case):
    domain = _domain(case)
    found = wiring.nic_wiring(wiring.spec_want(domain, case.spec, case.config), case.config,
                              case.snap)
    assert tuple(p.what for p in found.problems) == case.problems
    assert found.ok == (not case.problems)
    assert found.healable == case.healable
    assert all(p.why for p in found.problems)
    assert all(p.fix for p in found.problems if not p.heal)  # the admin's step, when no plan
    if case.note:
        assert case.note in found.note
    else:
        assert found.note is None


def _verdict(case: Case) -> wiring.Wiring:
    domain = _domain(case)
    return wiring.nic_wiring(wiring.spec_want(domain, case.spec, case.config), case.config,
                             case.snap)


def test_show_renders_the_same_verdict(case):
    (status,) = wiring.nic_statuses(_domain(case), True, case.config, case.snap)
    found = _verdict(case)
    assert status.problems == tuple(p.what for p in found.problems)
    assert status.status == (wiring.WIRED if found.ok else wiring.DRIFT)
    assert status.note == found.note
    state = nics.row(status)[-1]
    assert state.startswith("wired" if found.ok else "drift: " + "; ".join(case.problems))
    assert ("note: " in state) == bool(case.note)


def test_check_renders_the_same_verdict(case):
    findings = audit(case.snap, case.config, [_domain(case)])
    found = _verdict(case)
    assert tuple(f.what for f in findings if f.severity == PROBLEM) == tuple(
        p.what for p in found.problems)
    for finding in findings:
        if finding.severity == PROBLEM:
            assert finding.where.startswith("domain vm1, interface %s, tap vnet0" % MAC)
            assert finding.fix.startswith("virt-vlan plug vnet0 --%s " % case.spec.mode
                                          if case.healable else ("virsh", "ip link"))


def test_explain_renders_the_same_verdict(case):
    (path,) = paths(_domain(case), case.config, case.snap)
    found = _verdict(case)
    assert path.ok == found.ok
    shown = "; ".join(h.state for h in path.hops if h.state != "ok")
    assert shown == "; ".join(p.what for p in found.problems)
    assert path.note == found.note


def test_reconcile_plans_nothing_exactly_when_nothing_to_heal(case):
    desired = reconcile.domain_desired(_live_xml(case), case.config)
    assert parse_domain(_live_xml(case)).specs == (case.spec,)
    kept = reconcile.present(desired, case.snap, frozenset(), case.config)
    planned = plan(kept, case.config, case.snap)
    assert bool(planned) == _verdict(case).healable == case.healable
    if planned:  # and what it plans leaves nothing to find
        after = planned.simulate(case.snap)
        assert _verdict(case._replace(snap=after)).ok


def test_bridge_for_is_the_access_bridge_or_the_trunk_bridge(mixed_config):
    from virtvlan.model import Want  # the agent and engine side

    assert bridge_for(VlanSpec(MAC, "access", (7,)), mixed_config) == "br07"
    assert bridge_for(Want("eth1", "access", (7,)), mixed_config) == "br17"
    assert bridge_for(Want("eth1", "trunk", (5, 7)), mixed_config) == "br1"
    with pytest.raises(InputError, match="vm9: unknown uplink 'eth9'"):
        bridge_for(VlanSpec(MAC, "access", (7,), uplink="eth9"), mixed_config, "vm9")


@pytest.mark.parametrize("nic, differs", [
    (Nic(MAC, "bridge", target="vnet0", source_bridge="br05"), False),
    (Nic(MAC, "bridge", target="vnet0", source_bridge="virbr0"), True),
    # A running type='network' NIC: libvirt shows its network's bridge.
    (Nic(MAC, "network", target="vnet0", source_network="lan", source_bridge="virbr0"), True),
    (Nic(MAC, "network", source_network="lan"), False),  # stopped: no bridge shown
])
def test_show_and_check_agree_on_the_source_bridge(nic, differs):
    domain = Domain("vm1", UUID, nics=(nic,), specs=(ACCESS5,))
    assert wiring.source_differs(nic, "br05") == differs
    (status,) = wiring.nic_statuses(domain, True, ACCESS, _access_host())
    assert any("<source bridge>" in p for p in status.problems) == differs
    warned = [f for f in audit(_access_host(), ACCESS, [domain]) if "<source bridge=" in f.what]
    assert bool(warned) == differs
