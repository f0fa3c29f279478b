"""Port security for the ports of virt-vlan networks, on data: the
<vv:network> attributes (the <vv:interface> parser), the exceptions check
at network start, the port wants of a guest's network NICs, the plan for
them, the hooks' records and calls, and the drop-in's pre-filter."""

import pytest

from virtvlan import hook
from virtvlan.apply import engine
from virtvlan.errors import InputError
from virtvlan.host import netports
from virtvlan.model import Link, PortFilter, Protection, Snapshot
from virtvlan.parse import config
from virtvlan.parse.metadata import (Security, network_port_wants, network_want, parse_domain,
                                     parse_network)
from virtvlan.plan.actions import SetIsolated, SetPortFilter
from virtvlan.plan.planner import filter_rules, plan

MAC = "52:54:00:00:08:01"
SECURE = "[uplink eth0]\nallowed-vlans = 5,7\nport-security = yes\n"


def conf(text=SECURE):
    return config.parse(text, "test.conf")


def network_xml(attrs="", name="vlan5", bridge="br05"):
    return ("<hookData><network><name>%s</name><forward mode='bridge'/><bridge name='%s'/>"
            "<metadata><vv:vlan xmlns:vv='urn:virt-vlan:1'><vv:network vlan='5' %s/>"
            "</vv:vlan></metadata></network></hookData>" % (name, bridge, attrs)).encode()


def domain_xml(tap="vnet7", network="vlan5", tagged=False):
    meta = ("<metadata><vv:vlan xmlns:vv='urn:virt-vlan:1'><vv:interface mac='52:54:00:00:08:02'"
            " mode='access' vlan='7'/></vv:vlan></metadata>" if tagged else "")
    second = ("<interface type='bridge'><mac address='52:54:00:00:08:02'/><target dev='vnet8'/>"
              "</interface>" if tagged else "")
    # As libvirt's live XML has it: a port of a bridge-forward network is
    # type='bridge' there, its source naming the network and its bridge.
    return ("<domain><name>g1</name><uuid>u1</uuid><devices><interface type='bridge'>"
            "<mac address='%s'/><source network='%s' portid='p1' bridge='br05'/>%s"
            "</interface>%s</devices>%s</domain>"
            % (MAC, network, "<target dev='%s'/>" % tap if tap else "", second, meta)).encode()


# --- parsing: the same parser as <vv:interface> ---------------------------------------

def test_network_takes_the_interface_attributes():
    net = parse_network(network_xml("allow='router' isolated='yes' ips='10.0.5.10'"))
    assert net.security == Security(allow=frozenset({"router"}), isolated=True,
                                    ips=("10.0.5.10",))
    assert parse_network(network_xml()).security == Security()


@pytest.mark.parametrize("attrs, message", [
    ("allow='arp'", "network vlan5: allow='arp': "),
    ("isolated='maybe'", "network vlan5: isolated='maybe'; write isolated='yes' or leave it "
                         "out"),
    ("ips='10.0.5.300'", "network vlan5: ips='10.0.5.300': '10.0.5.300' is not an IP address"),
    ("guard='router' allow='router'", "network vlan5: guard='router' and allow='router' "
                                      "contradict each other; keep one"),
])
def test_bad_values_are_refused_like_an_interface_s(attrs, message):
    with pytest.raises(InputError) as info:
        parse_network(network_xml(attrs))
    assert str(info.value).startswith(message)


def test_network_start_refuses_an_exception_the_uplink_does_not_allow():
    net = parse_network(network_xml("allow='stp'"))
    with pytest.raises(InputError) as info:
        network_want(net, conf(SECURE + "allowed-exceptions = router\n"))
    assert str(info.value) == (
        "network vlan5: allow='stp' is not permitted on uplink eth0 (allowed-exceptions = "
        "router in [uplink eth0] of test.conf); remove it from allow= or ask the host admin "
        "to add it there")
    # Without port security nothing is filtered, so nothing is refused.
    assert network_want(net, conf("[uplink eth0]\nallowed-vlans = 5\n")).vlans == (5,)


# --- the wants of a guest's network ports -----------------------------------------------

def test_port_of_a_protected_network_gets_the_network_s_protection():
    net = parse_network(network_xml("allow='router' isolated='yes'"))
    (want,) = network_port_wants(parse_domain(domain_xml()), {"vlan5": net}, conf())
    assert (want.uplink, want.mode, want.vlans, want.port) == ("eth0", "access", (5,), "vnet7")
    assert want.protection == Protection(mac=MAC, allow=frozenset({"router"}), isolated=True)
    assert want.who == "domain g1, interface %s (network vlan5)" % MAC


def test_ports_that_get_nothing():
    net = parse_network(network_xml())
    dom = parse_domain(domain_xml())
    assert network_port_wants(dom, {}, conf()) == ()  # not a recorded network
    assert network_port_wants(dom, {"vlan5": net},
                              conf("[uplink eth0]\nallowed-vlans = 5\n"
                                   "port-security = no\n")) == ()  # off
    assert network_port_wants(parse_domain(domain_xml(tap=None)), {"vlan5": net}, conf()) == ()
    assert network_port_wants(parse_domain(domain_xml(network="other")), {"vlan5": net},
                              conf()) == ()


def test_port_refused_when_the_uplink_narrowed_its_exceptions_since():
    net = parse_network(network_xml("allow='mac-spoof'"))
    with pytest.raises(InputError, match=r"^domain g1, interface %s \(network vlan5\): "
                                         r"allow='mac-spoof' is not permitted" % MAC):
        network_port_wants(parse_domain(domain_xml()), {"vlan5": net},
                           conf(SECURE + "allowed-exceptions = router\n"))


def test_plan_for_a_port_libvirt_attached_adds_only_its_filter_and_flag():
    net = parse_network(network_xml("isolated='yes'"))
    (want,) = network_port_wants(parse_domain(domain_xml()), {"vlan5": net}, conf())
    snap = Snapshot((Link("eth0", index=2),
                     Link("eth0.5", kind="vlan", vlan_id=5, parent="eth0", master="br05",
                          managed=True),
                     Link("br05", kind="bridge", managed=True),
                     Link("vnet7", kind="tun", master="br05", isolated=False)), filters=())
    rules = filter_rules("access", want.protection)
    assert plan([want], conf(), snap).actions == (SetPortFilter("vnet7", rules),
                                                  SetIsolated("vnet7", True))
    done = snap.with_filter("vnet7", rules).changed("vnet7", isolated=True)
    assert plan([want], conf(), done).actions == ()


# --- the hooks ----------------------------------------------------------------------------

@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRT_VLAN_RUN_DIR", str(tmp_path / "run"))
    path = tmp_path / "vv.conf"
    path.write_text(SECURE)
    calls = []
    monkeypatch.setattr(engine, "wire", lambda wants, config, why, **k: calls.append(
        ("wire", tuple(wants), k.get("reserve_key"))))
    monkeypatch.setattr(engine, "release", lambda config, why, **k: calls.append(
        ("release", k.get("reserve_key"))))
    return str(path), calls


def test_network_hooks_record_and_forget_the_network(run_dir):
    path, calls = run_dir
    xml = network_xml("isolated='yes'")
    assert hook.serve("network", ["vlan5", "start", "begin", "-"], xml, path) == (0, "")
    assert netports.recorded() == {"vlan5": xml}
    assert hook.serve("network", ["vlan5", "port-deleted", "begin", "-"], xml, path) == (0, "")
    assert calls[-1] == ("release", None)
    assert hook.serve("network", ["vlan5", "stopped", "end", "-"], xml, path) == (0, "")
    assert netports.recorded() == {}


def test_network_without_port_security_is_not_recorded(run_dir, tmp_path):
    path, _ = run_dir
    off = tmp_path / "off.conf"
    off.write_text("[uplink eth0]\nallowed-vlans = 5\nport-security = no\n")
    assert hook.serve("network", ["vlan5", "start", "begin", "-"], network_xml(),
                      str(off)) == (0, "")
    assert netports.recorded() == {}


def test_network_start_refused_for_an_exception_not_allowed(run_dir, tmp_path):
    _, calls = run_dir
    narrow = tmp_path / "narrow.conf"
    narrow.write_text(SECURE + "allowed-exceptions =\n")
    code, err = hook.serve("network", ["vlan5", "start", "begin", "-"],
                           network_xml("allow='router'"), str(narrow))
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("virt-vlan: network vlan5: allow='router' is not permitted on "
                          "uplink eth0 (allowed-exceptions = none")
    assert calls == [] and netports.recorded() == {}


def test_qemu_start_protects_an_untagged_guest_s_network_port(run_dir):
    path, calls = run_dir
    netports.record("vlan5", network_xml("allow='router'"))
    assert hook.serve("qemu", ["g1", "prepare", "begin", "-"], domain_xml(), path) == (0, "")
    assert calls == []  # no tap yet
    assert hook.serve("qemu", ["g1", "start", "begin", "-"], domain_xml(), path) == (0, "")
    ((what, wants, key),) = calls
    assert (what, key) == ("wire", None)  # its network holds the bridge
    assert [(w.port, w.protection.allow) for w in wants] == [("vnet7", frozenset({"router"}))]
    assert hook.serve("qemu", ["g1", "release", "end", "-"], domain_xml(), path) == (0, "")
    assert calls[-1] == ("release", None)


def test_qemu_start_of_a_tagged_guest_adds_its_network_ports(run_dir):
    path, calls = run_dir
    netports.record("vlan5", network_xml())
    assert hook.serve("qemu", ["g1", "start", "begin", "-"], domain_xml(tagged=True),
                      path) == (0, "")
    ((_, wants, key),) = calls
    assert [w.port for w in wants] == ["vnet8", "vnet7"] and key == "domain-u1"


def test_qemu_start_of_a_guest_on_an_unrecorded_network_does_nothing(run_dir):
    path, calls = run_dir
    assert hook.serve("qemu", ["g1", "start", "begin", "-"], domain_xml(), path) == (0, "")
    assert calls == []


def test_record_names_round_trip(run_dir):
    for name in ("vlan5", "my net/x", "réseau", ".hidden"):
        netports.record(name, b"<x/>")
    assert set(netports.recorded()) == {"vlan5", "my net/x", "réseau", ".hidden"}
    netports.forget("my net/x")
    assert "my net/x" not in netports.recorded()


# --- the drop-in's pre-filter for untagged guests -----------------------------------------

def test_dropin_passes_an_untagged_guest_only_on_a_recorded_network(run_dir):
    from test_hook_dropin import _load_dropin

    on_our_network = _load_dropin()["on_our_network"]
    xml = domain_xml()
    assert not on_our_network(xml)  # no record
    netports.record("vlan55", b"<x/>")
    assert not on_our_network(xml)  # another network's name is not a prefix match
    netports.record("vlan5", b"<x/>")
    assert on_our_network(xml)
    assert not on_our_network(xml.replace(b"<source network='vlan5' portid='p1' ", b"<source "))


# --- the agent (hot-plug, reconcile) ------------------------------------------------------

def test_agent_adds_network_ports_to_what_it_keeps_wired(run_dir):
    from virtvlan.agent.network_ports import with_network_ports
    from virtvlan.agent.reconcile import domain_desired, present

    cfg = conf()
    xml = domain_xml()
    assert with_network_ports(domain_desired(xml, cfg), xml, cfg) is None  # no record
    netports.record("vlan5", network_xml())
    desired = with_network_ports(domain_desired(xml, cfg), xml, cfg)
    assert (desired.key, desired.macs, [w.port for w in desired.wants]) == (
        "domain-u1", (MAC,), ["vnet7"])
    # Wired only while its tap carries the guest's MAC (libvirt: first byte 0xfe).
    tap = Link("vnet7", kind="tun", mac="fe" + MAC[2:], master="br05")
    assert present(desired, Snapshot((tap,)), config=cfg) == desired.wants
    assert present(desired, Snapshot((Link("vnet7", kind="tun", mac="fe:00:00:00:00:01"),)),
                   config=cfg) == ()
    tagged = domain_xml(tagged=True)
    both = with_network_ports(domain_desired(tagged, cfg), tagged, cfg)
    assert [w.port for w in both.wants] == ["vnet8", "vnet7"]
    narrow = conf(SECURE + "allowed-exceptions =\n")
    netports.record("vlan5", network_xml("allow='router'"))
    assert "is not permitted" in with_network_ports(None, xml, narrow).error
