"""make bench's breakdown of a hook call (host/phases.py): the engine's,
the hook server's and the drop-in's time points, and that an untimed call
records none."""

import os
import subprocess
import threading
from pathlib import Path

import pytest

from test_agent_serve import REFUSED, conf, installed, server, sock_path  # noqa: F401
from test_hook_dropin import TAGGED, _load_dropin
from virtvlan.apply import engine
from virtvlan.host import phases
from virtvlan.model import Snapshot
from virtvlan.parse import config as config_mod


def names(marks):
    return [name for name, _ in marks]


def in_order(marks) -> bool:
    times = [when for _, when in marks]
    return times == sorted(times)


def test_an_untimed_thread_records_nothing_and_a_timed_one_only_its_own():
    phases.mark("lost")
    assert phases.stop() == []
    phases.start()
    other = threading.Thread(target=phases.mark, args=("other thread",))
    other.start()
    other.join()
    phases.mark("one")
    phases.mark("two")
    marks = phases.stop()
    assert names(marks) == ["one", "two"] and in_order(marks)
    phases.mark("after stop")
    assert phases.stop() == []
    assert phases.encode([("a", 1.5), ("b", 2.0)]) == "a=1.500000 b=2.000000"


@pytest.fixture
def nothing_to_do(tmp_path, monkeypatch):
    """An engine run on an empty host that plans nothing (no want)."""
    monkeypatch.setenv("VIRT_VLAN_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("VIRT_VLAN_LOCK", str(tmp_path / "run" / "lock"))
    monkeypatch.setattr(engine, "_snapshot", lambda config=None, scope=None, wants=(): Snapshot())
    return config_mod.parse("[uplink eth0]\nallowed-vlans = 5\n", str(tmp_path / "vv.conf"))


def test_the_engine_marks_lock_read_plan_and_apply_of_a_timed_run(nothing_to_do):
    phases.start()
    try:
        engine.wire([], nothing_to_do, "test")
        engine.release(nothing_to_do, "test")
    finally:
        marks = phases.stop()
    steps = ["lock", "locked", "read", "planned", "applied"]
    assert names(marks) == steps + steps and in_order(marks)
    engine.wire([], nothing_to_do, "untimed")
    assert phases.stop() == []


def test_a_served_call_asked_for_times_gets_the_agents_points(conf, server):  # noqa: F811
    dropin = _load_dropin()
    marks = [("main", 0.0)]
    code, err = dropin["ask_agent"]("qemu", REFUSED, TAGGED, marks)
    assert code == 1 and "\0" not in err and "VLAN 5 not allowed" in err
    assert names(marks) == ["main", "connected", "received", "dequeued", "done", "replied"]
    assert in_order(marks)
    # Not asked: no points in the reply, the same answer.
    assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) == (code, err)


def test_the_dropin_writes_one_line_per_call_served_or_not(conf, server, installed,  # noqa: F811
                                                           tmp_path):
    times = tmp_path / "times"
    env = dict(os.environ, VIRT_VLAN_BENCH_TIMES=str(times))
    for extra in ({}, {"VIRT_VLAN_NO_AGENT": "1"}):
        done = subprocess.run([installed] + REFUSED, input=TAGGED, capture_output=True,
                              env=dict(env, **extra), timeout=60)
        assert done.returncode == 1 and b"\0" not in done.stderr, done.stderr
    served, alone = Path(times).read_text().splitlines()
    pid, op, *points = served.split()
    assert op == "prepare" and int(pid) > 0
    marks = [(n, float(w)) for n, _, w in (p.partition("=") for p in points)]
    assert names(marks) == ["main", "connected", "received", "dequeued", "done", "replied"]
    assert in_order(marks)
    marks = [(n, float(w)) for n, _, w in (p.partition("=") for p in alone.split()[2:])]
    assert names(marks) == ["main", "loaded", "done"] and in_order(marks)
    assert server.served == 1
