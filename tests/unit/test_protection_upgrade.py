"""Port security across an upgrade (docs/port-security.md, "Upgrade notes"
and "Healing"), on data: a pass of the agent adds no filter to a NIC that
was never wired with one (its guest keeps its traffic until its next start),
but rebuilds a filter virt-vlan installed and lost (`nft flush ruleset`);
starts, plugs, re-tags and hot-plugs always protect. The record of
protected ports (host/state.py), the engine writing it, the agent's
choice of the ports an event hot-plugged or re-tagged."""

from dataclasses import replace

import pytest

from virtvlan.agent import reconcile, service
from virtvlan.agent.reconcile import Desired
from virtvlan.apply import engine
from virtvlan.checks.audit import WARNING, audit
from virtvlan.host import state
from virtvlan.model import Link, PortFilter, Snapshot
from virtvlan.parse import config
from virtvlan.parse.metadata import Domain, Nic, VlanSpec, parse_domain, wants
from virtvlan.plan.actions import Plan, SetIsolated, SetMaster, SetPortFilter
from virtvlan.plan.planner import kept_protection, plan

MAC = "52:54:00:11:22:33"
WHO = "domain vm1, interface %s" % MAC
CONF = config.parse("[uplink eth0]\nallowed-vlans = 5,7\n", "test.conf")  # the default: on
RULES = ("stp", "mac=" + MAC, "arp=" + MAC, "nd=" + MAC, "ra", "dhcp", "dhcp6", "tagged",
         "qinq")
ETH0 = Link("eth0", index=2, mac="52:54:00:aa:00:00")


def domain_xml(attrs=""):
    return ("<domain><name>vm1</name><uuid>u-1</uuid><metadata>"
            "<vv:vlan xmlns:vv='urn:virt-vlan:1'><vv:interface mac='%s' mode='access' "
            "vlan='5' %s/></vv:vlan></metadata><devices><interface type='bridge'>"
            "<mac address='%s'/><source bridge='br05'/><target dev='vnet0'/></interface>"
            "</devices></domain>" % (MAC, attrs, MAC)).encode()


def the_want(attrs=""):
    return wants(parse_domain(domain_xml(attrs)), CONF)[0]


def wired(filters=(), index=20, isolated=False):
    """The guest wired as 0.1.0 left it (or as this version did, with
    `filters`): eth0.5 feeding br05, tap vnet0 (ifindex `index`) on br05."""
    return Snapshot(links=(
        ETH0,
        Link("eth0.5", kind="vlan", vlan_id=5, parent="eth0", master="br05", managed=True),
        Link("br05", kind="bridge", managed=True),
        Link("vnet0", kind="tun", index=index, master="br05", isolated=isolated,
             mac="fe" + MAC[2:])), filters=filters)


# --- the planner's rule -----------------------------------------------------------------


def test_the_default_protects_a_start():
    # port-security is on by default: a start (protected None) protects.
    assert plan([the_want()], CONF, wired()).actions == (SetPortFilter("vnet0", RULES),)


def test_a_pass_adds_no_protection_to_a_nic_never_wired_with_it():
    # A guest running across the upgrade from 0.1.0: no filter, no record.
    for protected in ({}, {"vnet1": 20}):
        assert not plan([the_want("isolated='yes'")], CONF, wired(), protected)


def test_a_pass_rebuilds_a_filter_virt_vlan_installed_and_lost():
    flushed = wired(isolated=True)  # `nft flush ruleset`: the chain is gone, the flag stays
    result = plan([the_want("isolated='yes'")], CONF, flushed, {"vnet0": 20})
    assert result.actions == (SetPortFilter("vnet0", RULES),)
    assert not plan([the_want("isolated='yes'")], CONF, result.simulate(flushed), {"vnet0": 20})
    # The flag cleared by hand too.
    cleared = wired(isolated=False)
    assert plan([the_want("isolated='yes'")], CONF, cleared, {"vnet0": 20}).actions == (
        SetPortFilter("vnet0", RULES), SetIsolated("vnet0", True))


def test_a_record_of_another_tap_of_that_name_does_not_count():
    # The recorded vnet0 was another tap (its guest stopped after a flush, so
    # no removal dropped the record); the vnet0 there now (another ifindex)
    # was never protected.
    assert not plan([the_want()], CONF, wired(index=31), {"vnet0": 20})


def test_a_pass_keeps_and_corrects_a_filter_that_is_there():
    # Not recorded (a run killed after the nft transaction), but filtered:
    # protected before, so kept and corrected, never removed.
    stale = wired(filters=(PortFilter("vnet0", ("stp",)),))
    assert plan([the_want()], CONF, stale, {}).actions == (SetPortFilter("vnet0", RULES),)
    right = wired(filters=(PortFilter("vnet0", RULES),))
    assert not plan([the_want()], CONF, right, {})


def test_a_hot_plugged_or_re_tagged_port_is_protected_by_a_pass():
    assert plan([the_want()], CONF, wired(), {}, frozenset({"vnet0"})).actions == (
        SetPortFilter("vnet0", RULES),)


def test_a_pass_without_nft_does_not_refuse_an_unprotected_guest():
    bare = replace(wired(), filters=None)
    assert not plan([the_want()], CONF, bare, {})
    with pytest.raises(Exception, match="needs nft"):
        plan([the_want()], CONF, bare)


def test_kept_protection_is_the_want_or_the_want_without_protection():
    want = the_want()
    assert kept_protection(want, wired(), None) is want
    assert kept_protection(want, wired(), {}).protection is None
    assert kept_protection(want, wired(), {"vnet0": 20}) is want
    assert kept_protection(want, wired(), {}, frozenset({"vnet0"})) is want


def test_a_fresh_tap_a_pass_enslaves_is_not_protected_either():
    # The tap is on no bridge (its bridge was deleted and rebuilt): the pass
    # puts it back, and still adds no filter it never had.
    loose = wired()
    loose = loose.changed("vnet0", master=None)
    result = plan([the_want()], CONF, loose, {})
    assert SetMaster("vnet0", "br05") in result.actions
    assert not any(isinstance(a, SetPortFilter) for a in result.actions)


# --- the record (host/state.py) and the engine writing it ----------------------------------


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(state.ENV_DIR, str(tmp_path))
    return tmp_path


def test_the_record_round_trips_and_ignores_what_it_did_not_write(run_dir):
    assert state.protected() == {}
    state.protect("vnet0", 20)
    state.protect("vnet1", 21)
    state.protect("vnet0", 22)
    assert state.protected() == {"vnet0": 22, "vnet1": 21}
    (run_dir / "protected" / "junk").write_text("not a number\n")
    (run_dir / "protected" / "vnet2.tmp").write_text("5\n")
    (run_dir / "protected" / "sub").mkdir()
    assert state.protected() == {"vnet0": 22, "vnet1": 21}
    state.unprotect("vnet1")
    state.unprotect("vnet9")  # not there: nothing to do
    assert state.protected() == {"vnet0": 22}


def test_the_engine_records_installs_and_forgets_removals(run_dir):
    after = wired(index=42)
    engine._record_filters(Plan((SetPortFilter("vnet0", RULES),)), after)
    assert state.protected() == {"vnet0": 42}
    engine._record_filters(Plan((SetPortFilter("vnet0", ()),)), after)
    assert state.protected() == {}
    # The filter of a tap that is gone (cleanup after its guest stopped).
    state.protect("vnet7", 7)
    engine._record_filters(Plan((SetPortFilter("vnet7", ()),)), after)
    assert state.protected() == {}


def test_release_forgets_the_records_of_taps_that_are_gone(run_dir):
    state.protect("vnet0", 20)
    state.protect("vnet1", 21)  # its guest stopped after a flush: no removal recorded it
    state.protect("vnet2", 5)  # the name lives on in another tap
    engine._forget_gone(replace(wired(), links=wired().links + (Link("vnet2", index=6),)))
    assert state.protected() == {"vnet0": 20}


def test_an_unwritable_record_is_logged_not_raised(run_dir, caplog):
    (run_dir / "protected").write_text("a file where the folder goes")
    engine._record_filters(Plan((SetPortFilter("vnet0", RULES),)), wired())
    assert "vnet0: cannot record its port security" in caplog.text


# --- the agent: which events protect --------------------------------------------------------


def test_new_ports_are_the_nics_an_event_added_or_changed():
    old = Desired("domain-u-1", "domain vm1", wants=(the_want(),), macs=(MAC,))
    assert reconcile.new_ports(old, old) == frozenset()
    retagged = replace(old.wants[0], vlans=(7,))
    plugged = replace(old.wants[0], port="vnet1")
    grown = replace(old, wants=(old.wants[0], plugged))
    assert reconcile.new_ports(old, grown) == frozenset({"vnet1"})
    assert reconcile.new_ports(old, replace(old, wants=(retagged,))) == frozenset({"vnet0"})
    assert reconcile.new_ports(None, old) == frozenset({"vnet0"})


class _Watch:
    connection = None


_WATCH = _Watch()


class _Agent(service.Agent):
    """The agent without libvirt: sync_domain reads `xml`, wire is recorded."""

    def __init__(self, xml, cached=None):
        super().__init__("test:///default", "/nonexistent.conf", heal=False, serve_hooks=False)
        self.xml = xml
        if cached is not None:
            self.domains[cached.key] = cached

    def _config(self):
        return CONF

    def _connection(self):
        return _WATCH


@pytest.mark.parametrize("kind, fresh", [
    ("lifecycle", frozenset()),  # started, resumed: the hook protected a start already
    ("device-added", frozenset({"vnet0"})),  # virsh attach-interface
    ("metadata", frozenset({"vnet0"})),  # a re-tag by hand
])
def test_only_hot_plug_and_re_tag_events_protect(monkeypatch, kind, fresh):
    calls = []
    monkeypatch.setattr(service.virt, "running_domain_xml", lambda conn, uuid: agent.xml)
    monkeypatch.setattr(reconcile, "wire", lambda desired, config, why, held, **kw:
                        calls.append(kw.get("fresh")) or True)
    monkeypatch.setattr(reconcile, "cleanup", lambda config, why: True)
    agent = _Agent(domain_xml())
    agent.handle([("libvirt", service.virt.Event(kind, uuid="u-1", name="vm1"))])
    assert calls == [fresh]


def test_a_hot_plug_leaves_the_guests_other_nics_as_they_are(monkeypatch):
    calls = []
    before = reconcile.domain_desired(domain_xml(), CONF)
    monkeypatch.setattr(service.virt, "running_domain_xml", lambda conn, uuid: domain_xml())
    monkeypatch.setattr(reconcile, "wire", lambda desired, config, why, held, **kw:
                        calls.append(kw.get("fresh")) or True)
    monkeypatch.setattr(reconcile, "cleanup", lambda config, why: True)
    agent = _Agent(domain_xml(), cached=replace(before, key="domain-u-1"))
    agent.handle([("libvirt", service.virt.Event("device-added", uuid="u-1", name="vm1"))])
    assert calls == [frozenset()]  # vnet0 did not change: not a new port


def test_the_engine_plans_an_agent_pass_against_the_record(run_dir, monkeypatch):
    # engine.wire with new_ports (the agent) reads the record under the lock;
    # without (a start, a plug), it protects.
    seen = []
    monkeypatch.setenv("VIRT_VLAN_LOCK", str(run_dir / "lock"))
    monkeypatch.setattr(engine, "_read", lambda dry_run, config=None, scope=None, wants=(): wired(index=20))
    monkeypatch.setattr(engine, "plan", lambda *args: seen.append(args[3:]) or Plan(()))
    engine.wire([the_want()], CONF, "test", dry_run=True)
    state.protect("vnet0", 20)
    engine.wire([the_want()], CONF, "test", dry_run=True, new_ports=frozenset({"vnet1"}))
    assert seen == [(), ({"vnet0": 20}, frozenset({"vnet1"}))]


# --- check lists the unprotected NIC ---------------------------------------------------------


def test_check_lists_a_running_nic_without_its_filter_as_unprotected():
    dom = Domain("vm1", "u-1", nics=(Nic(MAC, "bridge", target="vnet0", source_bridge="br05"),),
                 specs=(VlanSpec(MAC, "access", (5,)),))
    (found,) = [f for f in audit(wired(), CONF, [dom]) if "port security" in f.what]
    assert found.severity == WARNING
    assert found.what == "tap vnet0 has no port security"
    assert "restart the guest" in found.fix and "allow=" in found.fix
    assert not [f for f in audit(wired(filters=(PortFilter("vnet0", RULES),)), CONF, [dom])
                if "port security" in f.what]


# --- a tap filtered before libvirt creates it (virt-vlan attach --live) ---------------------


def test_prefilter_plans_the_filter_of_a_tap_that_does_not_exist_yet():
    from virtvlan.plan.planner import plan_prefilter

    want = replace(the_want(), port="vv525400112233")
    assert plan_prefilter(want, CONF, wired()).actions == (
        SetPortFilter("vv525400112233", RULES),)
    there = wired(filters=(PortFilter("vv525400112233", RULES),))
    assert not plan_prefilter(want, CONF, there)
    assert not plan_prefilter(replace(want, protection=None), CONF, wired())


def test_a_prefiltered_tap_is_recorded_and_counts_as_protected(run_dir):
    # Recorded with ifindex 0 (no tap yet); the tap libvirt then creates under
    # that name is the protected one: a pass rebuilds its filter after a
    # flush, and a release keeps the record while the tap exists.
    engine._record_filters(Plan((SetPortFilter("vnet0", RULES),)), Snapshot(links=(ETH0,)))
    assert state.protected() == {"vnet0": 0}
    assert plan([the_want()], CONF, wired(index=44), state.protected()).actions == (
        SetPortFilter("vnet0", RULES),)
    engine._forget_gone(wired(index=44))
    assert state.protected() == {"vnet0": 0}
    engine._forget_gone(Snapshot(links=(ETH0,)))  # the attach failed: no such tap
    assert state.protected() == {}
