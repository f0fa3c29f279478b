"""Reservations under /run/virt-vlan (here: a temp dir)."""

from virtvlan.host import state


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


def test_intents_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv(state.ENV_DIR, str(tmp_path))
    assert state.intents() == {}  # no folder yet: the common case
    state.intend("eth0.5", "vlan", False)
    state.intend("br05", "bridge", True)
    assert state.intents() == {"eth0.5": ("vlan", False), "br05": ("bridge", True)}
    state.intended("eth0.5")
    state.intended("eth0.5")  # idempotent
    assert state.intents() == {"br05": ("bridge", True)}
    assert not list((tmp_path / "creating").glob("*.tmp"))


def test_torn_intent_is_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv(state.ENV_DIR, str(tmp_path))
    state.intend("br07", "bridge", False)
    (tmp_path / "creating" / "br07").write_text("bri")  # a write cut short
    (tmp_path / "creating" / "br09.tmp").write_text("bridge 0\n")  # never renamed
    assert state.intents() == {}
    assert not (tmp_path / "creating" / "br07").exists()


def test_domain_key_prefers_the_uuid_and_falls_back_to_the_name():
    uuid = "6f3c1f7e-0d7a-4b8e-9a51-2f0c3e1d4a5b"
    assert state.domain_key(uuid, "vm1") == "domain-" + uuid
    assert state.domain_key(None, "vm1") == "domain-vm1"
    assert state.domain_key("", "vm1") == "domain-vm1"


def test_network_keys_are_told_from_domain_keys():
    assert state.network_key("lan") == "network-lan"
    assert state.is_network_key(state.network_key("lan"))
    assert not state.is_network_key(state.domain_key(None, "network-lan"))


def test_one_reservation_per_key_whoever_builds_it(tmp_path, monkeypatch):
    monkeypatch.setenv(state.ENV_DIR, str(tmp_path))
    state.reserve(state.domain_key("u-1", "vm/1"), ["br05"])
    state.reserve(state.domain_key("u-1", "renamed"), ["br07"])  # the same guest
    assert state.reserved() == {"br07"}
    state.unreserve(state.domain_key("u-1", "vm/1"))
    assert state.reserved() == frozenset()
