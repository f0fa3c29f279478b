"""Reservations under /run/virt-vlan (here: a temp dir)."""

from virtvlan import state


def test_reserve_unreserve(tmp_path, monkeypatch):
    monkeypatch.setenv(state.ENV_DIR, str(tmp_path))
    assert state.reserved() == frozenset()
    state.reserve("domain-1234", ["br05", "br07"])
    state.reserve("network-vlan 5/x", ["br05"])
    assert state.reserved() == {"br05", "br07"}
    state.reserve("domain-1234", ["br07"])  # replaces, does not add
    state.unreserve("network-vlan 5/x")
    assert state.reserved() == {"br07"}
    state.unreserve("domain-1234")
    state.unreserve("domain-1234")  # idempotent
    assert state.reserved() == frozenset()
    assert not list((tmp_path / "reserved").glob("*.tmp"))
