"""Port security (docs/port-security.md) on data: metadata and config
parsing, the filter rules per mode, the planner's actions, removal on
unplug and after the guest stopped, idempotence, and the nft reader."""

from dataclasses import replace

import pytest

from virtvlan.errors import InputError
from virtvlan.host import nftables
from virtvlan.model import Link, PortFilter, Protection, Snapshot, Want
from virtvlan.parse import config
from virtvlan.parse.metadata import parse_domain, wants
from virtvlan.plan.actions import Release, SetIsolated, SetMaster, SetPortFilter
from virtvlan.plan.planner import filter_rules, plan, plan_cleanup, plan_unplug

MAC = "52:54:00:00:00:01"
WHO = "domain vm1, interface " + MAC
ETH0 = Link("eth0", index=2, mac="52:54:00:aa:00:00")
ETH1 = Link("eth1", index=3, mac="52:54:00:aa:00:01")
VNET0 = Link("vnet0", kind="tun", index=20)

ACCESS_RULES = ("stp", "mac=" + MAC, "arp=" + MAC, "nd=" + MAC, "ra", "dhcp", "dhcp6",
                "tagged", "qinq")


def secure(text, **extra):
    """The config `text` with port security on for every uplink."""
    lines = []
    for line in text.strip().splitlines():
        lines.append(line)
        if line.startswith("[uplink"):
            lines.append("port-security = yes")
            lines += ["%s = %s" % (k.replace("_", "-"), v) for k, v in extra.items()]
    return config.parse("\n".join(lines) + "\n", "test.conf")


ACCESS_CONF = "[uplink eth0]\nallowed-vlans = 5,7\n"
TRUNK_CONF = "[uplink eth1]\nwiring = trunk\nallowed-vlans = 5,7\n"


def domain(attrs="", mode="access", vlan="vlan='5'"):
    return ("<domain><name>vm1</name><uuid>u1</uuid><devices><interface type='bridge'>"
            "<mac address='%s'/><target dev='vnet0'/></interface></devices><metadata>"
            "<vv:vlan xmlns:vv='urn:virt-vlan:1'><vv:interface mac='%s' mode='%s' %s %s/>"
            "</vv:vlan></metadata></domain>" % (MAC, MAC, mode, vlan, attrs)).encode()


def want_of(attrs="", conf=ACCESS_CONF, mode="access", vlan="vlan='5'", **extra):
    cfg = secure(conf, **extra)
    return wants(parse_domain(domain(attrs, mode, vlan)), cfg)[0], cfg


def snap(*links, filters=()):
    return Snapshot(links=links, filters=filters)


# --- metadata and config -------------------------------------------------------


def test_access_nic_gets_all_but_isolation():
    want, _ = want_of()
    assert want.protection == Protection(mac=MAC)
    assert filter_rules("access", want.protection) == ACCESS_RULES


def test_trunk_nic_gets_control_frames_mac_and_qinq_only():
    want, _ = want_of(conf=TRUNK_CONF, mode="trunk", vlan="vlans='5,7'")
    assert filter_rules("trunk", want.protection) == ("stp", "mac=" + MAC, "qinq")


def test_trunk_guard_router_adds_the_rogue_server_guard():
    want, _ = want_of("guard='router'", conf=TRUNK_CONF, mode="trunk", vlan="vlans='5,7'")
    assert filter_rules("trunk", want.protection) == (
        "stp", "mac=" + MAC, "ra", "dhcp", "dhcp6", "qinq")


@pytest.mark.parametrize("allow, gone", [
    ("mac-spoof", {"mac=" + MAC, "arp=" + MAC, "nd=" + MAC}),
    ("router", {"ra", "dhcp", "dhcp6"}),
    ("stp", {"stp"}),
    ("stp,router", {"stp", "ra", "dhcp", "dhcp6"}),
])
def test_each_exception_takes_out_its_group_only(allow, gone):
    want, _ = want_of("allow='%s'" % allow)
    assert filter_rules("access", want.protection) == tuple(
        r for r in ACCESS_RULES if r not in gone)


def test_ips_restrict_arp_and_neighbour_advertisements():
    want, _ = want_of("ips='10.0.5.10, 2001:DB8::10'")
    rules = filter_rules("access", want.protection)
    assert "arp-ip=10.0.5.10" in rules and "nd-ip=2001:db8::10" in rules


def test_isolated_yes_sets_the_port_flag_after_enslaving():
    want, cfg = want_of("isolated='yes'")
    result = plan([want], cfg, snap(ETH0, VNET0))
    kinds = [type(a) for a in result]
    assert kinds.index(SetPortFilter) < kinds.index(SetMaster) < kinds.index(SetIsolated)
    assert SetIsolated("vnet0", True) in result.actions


def test_an_exception_the_host_does_not_allow_is_refused_with_one_line():
    with pytest.raises(InputError) as info:
        want_of("allow='mac-spoof,router'", allowed_exceptions="router")
    assert str(info.value) == (
        WHO + ": allow='mac-spoof' is not permitted on uplink eth0 (allowed-exceptions = "
        "router in [uplink eth0] of test.conf); remove it from allow= or ask the host admin "
        "to add it there")


@pytest.mark.parametrize("attrs, says", [
    ("allow='everything'", "allow='everything': unknown exception 'everything'"),
    ("guard='dhcp'", "guard='dhcp'; the only guard is guard='router'"),
    ("isolated='true'", "isolated='true'; write isolated='yes'"),
    ("ips='10.0.5.300'", "'10.0.5.300' is not an IP address"),
])
def test_bad_security_attributes_are_refused(attrs, says):
    with pytest.raises(InputError) as info:
        want_of(attrs)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_port_security_is_on_by_default():
    cfg = config.parse(ACCESS_CONF, "test.conf")
    assert cfg.uplinks[0].port_security
    assert wants(parse_domain(domain()), cfg)[0].protection == Protection(mac=MAC)


def test_port_security_off_means_no_protection():
    cfg = config.parse(ACCESS_CONF + "port-security = no\n", "test.conf")
    assert not cfg.uplinks[0].port_security
    assert wants(parse_domain(domain()), cfg)[0].protection is None


def test_allowed_exceptions_are_checked_in_the_config():
    with pytest.raises(InputError) as info:
        secure(ACCESS_CONF, allowed_exceptions="router,arp")
    assert "allowed-exceptions in [uplink eth0]: unknown exception 'arp'" in str(info.value)


# --- planning ------------------------------------------------------------------


def test_the_filter_goes_in_before_the_port_joins_its_bridge():
    want, cfg = want_of()
    result = plan([want], cfg, snap(ETH0, VNET0))
    assert (result.actions.index(SetPortFilter("vnet0", ACCESS_RULES))
            < result.actions.index(SetMaster("vnet0", "br05")))
    assert any(line.startswith("nft add rule bridge virt_vlan port-vnet0 ether saddr != "
                               + MAC + " drop") for line in result.render())


def test_second_plan_is_empty():
    want, cfg = want_of("isolated='yes' ips='10.0.5.10'")
    first = snap(ETH0, VNET0)
    after = plan([want], cfg, first).simulate(first)
    assert not plan([want], cfg, after)


def test_a_changed_or_emptied_chain_is_rewritten():
    want, cfg = want_of()
    after = plan([want], cfg, snap(ETH0, VNET0)).simulate(snap(ETH0, VNET0))
    flushed = after.with_filter("vnet0", (nftables.UNHOOKED,) + ACCESS_RULES)
    assert plan([want], cfg, flushed).actions == (SetPortFilter("vnet0", ACCESS_RULES),)
    cleared = after.changed("vnet0", isolated=True)
    assert plan([want], cfg, cleared).actions == (SetIsolated("vnet0", False),)


def test_without_nft_port_security_is_refused():
    want, cfg = want_of()
    message = pytest.raises(Exception, plan, [want], cfg, Snapshot(links=(ETH0, VNET0))).value
    assert "needs nft (package nftables), which is not installed" in str(message)


def test_unprotected_want_removes_a_stale_chain():
    cfg = config.parse(ACCESS_CONF + "port-security = no\n", "test.conf")
    want = Want(uplink="eth0", mode="access", vlans=(5,), port="vnet0", who=WHO)
    result = plan([want], cfg, snap(ETH0, VNET0, filters=(PortFilter("vnet0", ("stp",)),)))
    assert SetPortFilter("vnet0", ()) in result.actions


def test_unplug_removes_the_filter():
    want, cfg = want_of()
    after = plan([want], cfg, snap(ETH0, VNET0)).simulate(snap(ETH0, VNET0))
    result = plan_unplug("vnet0", cfg, after)
    assert result.actions[:2] == (Release("vnet0"), SetPortFilter("vnet0", ()))
    assert result.simulate(after).filters == ()


def test_cleanup_removes_filters_of_ports_that_are_gone():
    want, cfg = want_of()
    after = plan([want], cfg, snap(ETH0, VNET0)).simulate(snap(ETH0, VNET0))
    stopped = after.without_link("vnet0")
    result = plan_cleanup(cfg, stopped)
    assert SetPortFilter("vnet0", ()) in result.actions
    assert not plan_cleanup(cfg, result.simulate(stopped))


def test_undo_of_a_filter_restores_the_old_one():
    before = snap(filters=(PortFilter("vnet0", ("stp",)),))
    assert SetPortFilter("vnet0", ACCESS_RULES).undo(before) == (SetPortFilter("vnet0", ("stp",)),)
    assert SetPortFilter("vnet0", ()).undo(snap()) == ()


# --- the nft reader --------------------------------------------------------------


def _doc(hooked=True):
    items = [{"table": {"family": "bridge", "name": "virt_vlan"}},
             {"map": {"name": "ports", "elem": [["vnet0", {"jump": {"target": "port-vnet0"}}]]}},
             {"chain": {"name": "prerouting"}}, {"chain": {"name": "port-vnet0"}},
             {"rule": {"chain": "port-vnet0", "comment": "stp", "expr": []}},
             {"rule": {"chain": "port-vnet0", "expr": []}}]
    if hooked:
        items.append({"rule": {"chain": "prerouting", "expr": [{"vmap": {}}]}})
    return {"nftables": items}


def test_reader_returns_rule_comments_in_order():
    assert nftables.parse_table(_doc()) == (PortFilter("vnet0", ("stp", nftables.FOREIGN)),)


def test_reader_marks_ports_whose_dispatch_rule_is_gone():
    assert nftables.parse_table(_doc(hooked=False))[0].rules[0] == nftables.UNHOOKED


# --- the agent's monitor: filters that vanish are reported by port -------------------


def test_monitor_reports_ports_whose_filter_vanished(monkeypatch):
    import socket

    from virtvlan.agent.monitor import LinkMonitor

    monitor = LinkMonitor(lambda changes: None)
    monitor._filters = {"vnet1": ("stp",), "vnet2": ("stp",)}
    reads = iter([(PortFilter("vnet2", ("stp",)),), ()])
    monkeypatch.setattr(nftables, "read_filters", lambda netns=None: next(reads))
    left, right = socket.socketpair()
    try:
        right.send(b"x")
        assert monitor._filter_changes(left) == {"vnet1"}
        assert monitor._filter_changes(left) == {"vnet2"}  # `nft flush ruleset`
    finally:
        left.close()
        right.close()



# --- check -----------------------------------------------------------------------------


def test_check_warns_about_a_tap_without_its_filter_and_lists_exceptions():
    from virtvlan.checks.audit import _protection

    cfg = secure(ACCESS_CONF)
    dom = parse_domain(domain("allow='router'"))
    bare = Snapshot(links=(ETH0, replace(VNET0, master="br05")), filters=())
    found = [f.what for f in _protection(bare, cfg, [dom])]
    assert found == [WHO + " has port-security exceptions: router",
                     "tap vnet0 has no port security"]
    guarded = bare.with_filter("vnet0", ("stp",))
    assert [f.what for f in _protection(guarded, cfg, [dom])] == found[:1]
