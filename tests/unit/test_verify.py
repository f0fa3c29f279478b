"""Verification after apply (apply/verify.py), on hand-written snapshots.

The executor compares the links it read back with the plan's simulation;
these tests feed that comparison a desired and a found Snapshot directly,
no kernel involved: every mismatch is collected and logged, one line each,
and the error names the first ones and the total.
"""

import logging
from dataclasses import replace

import pytest

from virtvlan.apply.verify import mismatches, touched, verify
from virtvlan.errors import ApplyError, VerifyFailed
from virtvlan.model import Address, Link, PortVlans, Snapshot
from virtvlan.plan import actions as act

U0 = Link("u0", kind="veth")
HOST4 = Address("inet", "192.0.2.10", 24)
HOST6 = Address("inet6", "2001:db8::10", 64)

# Build br1 and plug u0 into it, filtering VLAN 5 on the port.
PLAN = act.Plan((act.CreateBridge("br1", 1400), act.SetMaster("u0", "br1"),
                 act.AddBridgeVlan("u0", 5, 5, pvid=True, untagged=True),
                 act.SetVlanFiltering("br1"), act.SetUp("br1")))
BEFORE = Snapshot((U0,))


def _found(**changes: object) -> Snapshot:
    """The desired state of PLAN with br1 changed by `changes`."""
    desired = PLAN.simulate(BEFORE)
    return Snapshot(tuple(replace(link, **changes) if link.name == "br1" else link
                          for link in desired.links))


def test_a_result_equal_to_the_plan_has_no_mismatch(caplog):
    desired = PLAN.simulate(BEFORE)
    assert mismatches(PLAN, desired, desired) == []
    with caplog.at_level(logging.ERROR):
        verify(PLAN, desired, desired)
    assert caplog.records == []


def test_every_mismatch_is_collected_not_only_the_first():
    desired = PLAN.simulate(BEFORE)
    found = Snapshot((replace(desired.get("br1"), mtu=1500, up=False, vlan_filtering=False,
                              managed=False),
                      replace(desired.get("u0"), master=None, vlans=None)))
    assert mismatches(PLAN, desired, found) == [
        "br1 has mtu=1500, expected 1400",
        "br1 has up=False, expected True",
        "br1 has managed=False, expected True",
        "u0 has master=None, expected 'br1'",
        "u0 has vlans=None, expected tagged none, untagged 1,5, pvid 5",
        "br1 has vlan_filtering=False, expected True",
    ]


def test_verify_logs_the_whole_difference_and_raises_a_one_line_error(caplog):
    desired = PLAN.simulate(BEFORE)
    found = Snapshot((replace(desired.get("br1"), mtu=1500, up=False, vlan_filtering=False),
                      replace(desired.get("u0"), master=None, mtu=9000)))
    expected = mismatches(PLAN, desired, found)
    assert len(expected) == 5
    with caplog.at_level(logging.ERROR, logger="virtvlan.apply.verify"):
        with pytest.raises(VerifyFailed) as info:
            verify(PLAN, desired, found)
    # The journal gets a header and then every mismatch on its own line.
    logged = [record.getMessage() for record in caplog.records]
    assert len(logged) == 1 + len(expected)
    assert "5 mismatch(es)" in logged[0]
    for number, line in enumerate(expected, 1):
        assert logged[number] == "verification mismatch %d/5: %s" % (number, line)
    err = info.value
    assert isinstance(err, ApplyError)  # callers catching ApplyError still see it
    assert err.mismatches == tuple(expected)
    message = str(err)
    assert "\n" not in message
    assert message.startswith("verification after apply failed: %s; %s; %s (and 2 more); "
                              % tuple(expected[:3]))
    assert expected[3] not in message and expected[4] not in message
    assert "5 mismatches in all, each logged to the journal" in message


def test_a_single_mismatch_reads_as_before():
    # The kernel suite matches this wording (tests/kernel/test_apply.py).
    desired = PLAN.simulate(BEFORE)
    with pytest.raises(VerifyFailed) as info:
        verify(PLAN, desired, _found(mtu=1500))
    info.value.note_rollback("rolled back 2 change(s)")
    assert str(info.value).startswith("verification after apply failed: br1 has mtu=1500, "
                                      "expected 1400; rolled back 2 change(s); 1 mismatch in "
                                      "all")


def test_missing_and_leftover_devices():
    plan = act.Plan((act.CreateBridge("br1", 1500), act.DeleteLink("br9")))
    before = Snapshot((Link("br9", kind="bridge", managed=True),))
    desired = plan.simulate(before)
    assert mismatches(plan, desired, before) == ["br1 is missing", "br9 still exists"]


def test_an_adopted_device_keeps_its_own_alias():
    plan = act.Plan((act.CreateVlan("u0.5", "u0", 5), act.SetUp("u0.5")))
    desired = plan.simulate(BEFORE)
    theirs = Snapshot((U0, replace(desired.get("u0.5"), managed=False)))
    assert mismatches(plan, desired, theirs) == ["u0.5 has managed=False, expected True"]
    assert mismatches(plan, desired, theirs, adopted={"u0.5"}) == []


def test_a_vlan_table_changed_by_several_actions_is_reported_once():
    plan = act.Plan((act.AddBridgeVlan("u0", 5, 5), act.AddBridgeVlan("u0", 7, 9)))
    before = Snapshot((replace(U0, master="br1", vlans=PortVlans()),
                       Link("br1", kind="bridge", vlans=PortVlans())))
    desired = plan.simulate(before)
    assert mismatches(plan, desired, before) == [
        "u0 has vlans=tagged none, untagged none, pvid none, "
        "expected tagged 5,7-9, untagged none, pvid none"]


def test_moved_addresses_are_compared_on_both_ends():
    h0 = Link("h0", addresses=(HOST4, HOST6))
    plan = act.Plan((act.CreateBridge("br0", 1500), act.MoveAddresses("h0", "br0", (HOST4, HOST6))))
    before = Snapshot((h0,))
    desired = plan.simulate(before)
    # Half done: the IPv6 address never reached br0 and is still on h0.
    found = Snapshot((replace(h0, addresses=(HOST6,)),
                      replace(desired.get("br0"), addresses=(HOST4,))))
    assert mismatches(plan, desired, found) == [
        "h0 has addresses 2001:db8::10/64, expected none",
        "br0 has addresses 192.0.2.10/24, expected 192.0.2.10/24 2001:db8::10/64",
    ]


def test_touched_lists_each_changed_device_once_in_plan_order():
    assert touched(PLAN) == ["br1", "u0"]
