"""engine.unfinished: which leftover creation intents are finished (marked
as ours) and which are dropped with the device left alone."""

import logging

from virtvlan.plan.actions import MarkManaged
from virtvlan.apply.engine import unfinished
from virtvlan.model import MANAGED_ALIAS, Link, Snapshot


def test_created_but_unmarked_device_is_marked():
    snap = Snapshot((Link("eth0"), Link("eth0.5", kind="vlan", parent="eth0", vlan_id=5, up=False),
                     Link("br05", kind="bridge", up=False)))
    marks, drop = unfinished({"eth0.5": ("vlan", False), "br05": ("bridge", True)}, snap)
    assert marks == (MarkManaged("br05", True), MarkManaged("eth0.5", False))
    assert drop == ()


def test_gone_or_marked_devices_only_drop_the_intent():
    snap = Snapshot((Link("br05", kind="bridge", up=False, managed=True),))
    marks, drop = unfinished({"eth0.5": ("vlan", False), "br05": ("bridge", False)}, snap)
    assert marks == ()
    assert drop == ("br05", "eth0.5")


def test_device_that_does_not_fit_is_left_alone(caplog):
    # Up (apply.py ups a device only after marking it) or of another kind:
    # not the device the killed run made, so not ours to mark.
    snap = Snapshot((Link("br05", kind="bridge", up=True), Link("br07", kind="dummy", up=False)))
    with caplog.at_level(logging.WARNING):
        marks, drop = unfinished({"br05": ("bridge", False), "br07": ("bridge", False)}, snap)
    assert marks == ()
    assert drop == ("br05", "br07")
    assert "br05: an interrupted virt-vlan run meant to create it, but it is up" in caplog.text
    assert "br07" in caplog.text and "a dummy device" in caplog.text


def test_mark_renders_and_simulates():
    snap = Snapshot((Link("br05", kind="bridge", up=False),))
    assert MarkManaged("br05", True).render() == (
        "ip link set dev br05 alias %s" % MANAGED_ALIAS,)
    assert len(MarkManaged("br05").render()) == 2  # plus addrgen off
    assert MarkManaged("br05").simulate(snap).get("br05").managed


def test_a_plan_to_apply_waits_for_the_executor_module_by_its_real_name(monkeypatch):
    # The engine lets go of the lock to import the executor (pyroute2) when a
    # run has work and it is not loaded yet; the name it looks for in
    # sys.modules must be the executor's own, or every run imports under the lock.
    import importlib
    import sys

    from virtvlan.apply import engine
    from virtvlan.plan.actions import Plan

    work = Plan((MarkManaged("br05", True),))
    assert importlib.util.find_spec(engine.EXECUTOR) is not None
    monkeypatch.delitem(sys.modules, engine.EXECUTOR, raising=False)
    assert engine._must_import_first(work, dry_run=False)
    assert not engine._must_import_first(work, dry_run=True)
    assert not engine._must_import_first(Plan(()), dry_run=False)
    monkeypatch.setitem(sys.modules, engine.EXECUTOR, object())
    assert not engine._must_import_first(work, dry_run=False)


def test_importing_the_executor_registers_it_even_over_a_stale_attribute(monkeypatch):
    # A package attribute left from an unloaded executor satisfies a plain
    # `from virtvlan.apply import executor`, without a sys.modules entry:
    # the engine would then find it "not loaded" and plan again forever.
    import sys

    import virtvlan.apply as package
    from virtvlan.apply import engine

    engine._import_apply()
    monkeypatch.delitem(sys.modules, engine.EXECUTOR)
    assert hasattr(package, "executor")
    engine._import_apply()
    assert engine.EXECUTOR in sys.modules


def test_a_process_with_a_live_model_plans_from_it_and_reads_nothing(monkeypatch):
    """The agent's served calls: engine.use_live(model) makes every later
    snapshot the model's, and use_live(None) gives reading back."""
    from virtvlan.apply import engine
    from virtvlan.host import rtnl

    reads = []
    host = Snapshot((Link("eth0"),))
    monkeypatch.setattr(rtnl, "read_snapshot", lambda netns=None: reads.append(1) or host)

    class Model:
        def snapshot(self) -> Snapshot:
            return Snapshot((Link("eth0"), Link("br05", kind="bridge")))

    engine.use_live(Model())  # type: ignore[arg-type]
    try:
        assert engine.host().get("br05") is not None
        assert reads == []
    finally:
        engine.use_live(None)
    assert engine.host() == host and reads == [1]
