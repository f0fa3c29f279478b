"""End-to-end scenarios on a real kernel: switch, host and guests in namespaces.

Each test builds its own topology (tests/kernel/topology.py), runs virt-vlan
in the host namespace and judges it by two independent oracles: the kernel's
own view (`ip -d -json link`, addresses, routes) and traffic between the
guests and the switch, including traffic that must NOT get through (a guest
that also has an address in the wrong VLAN's subnet must not reach it).

They need the test VM (802.1Q, bonding): outside it they fail, pointing at
`make test`.
"""

import json
import os
import time
from typing import Dict, Tuple

import pytest

try:
    from .topology import (HOST_IP, SW5, SW7, SW_UNTAGGED, Lab, LinkMonitor, Pinger,
                           assert_access_wired, ip, ip_batch, ip_json, kind, managed, ports,
                           reachable, run, state_diff, unreachable, vlan_of)
except ImportError:  # tests/kernel is no package: pytest put this folder on sys.path
    from topology import (HOST_IP, SW5, SW7, SW_UNTAGGED, Lab,  # type: ignore[no-redef]
                          LinkMonitor, Pinger, assert_access_wired, ip, ip_batch, ip_json,
                          kind, managed, ports, reachable, run, state_diff, unreachable,
                          vlan_of)


def format_vlan_list(vids) -> str:
    """'1,5-7': the oracle's own spelling of VID ranges (not virt-vlan's code)."""
    out, run_start, last = [], None, None
    for vid in sorted(vids) + [None]:
        if run_start is not None and vid == last + 1:
            last = vid
            continue
        if run_start is not None:
            out.append(str(run_start) if run_start == last else "%d-%d" % (run_start, last))
        run_start = last = vid
    return ",".join(out)


@pytest.fixture(scope="module", autouse=True)
def _preload():
    """Import what forked virt-vlan runs need once, before the first test, so
    its cost (a minute or more on the VM's 9p root) is not billed to a test.
    Outside the VM this does nothing: each test then fails in Lab.build."""
    if os.environ.get("VIRT_VLAN_IN_VM") == "1":
        import virtvlan.apply.executor  # noqa: F401
        import virtvlan.cli.commands  # noqa: F401
        import virtvlan.apply.engine  # noqa: F401


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def vlan_links(links: Dict[str, dict], parent: str = None) -> Dict[str, Tuple[str, int]]:
    """name -> (parent, VLAN id) of every VLAN device (on `parent` if given)."""
    found = {name: vlan_of(link) for name, link in links.items() if kind(link) == "vlan"}
    return {n: pv for n, pv in found.items() if parent is None or pv[0] == parent}


def one_line_error(result, *needles: str) -> None:
    assert result.rc == 1, result
    assert result.out == "", result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result
    for needle in needles:
        assert needle in lines[0], "%r not in %r" % (needle, lines[0])


# 1 ---------------------------------------------------------------------------

def test_access_guest_reaches_only_its_vlan_and_last_unplug_restores_host(lab):
    lab.build()
    # Each guest also has an address in the other VLAN's subnet: wired to the
    # wrong VLAN (or to both) it would reach the other switch address too.
    g1 = lab.guest("g1", "vnet1", untagged=["10.5.0.10/24", "10.7.0.10/24"])
    g2 = lab.guest("g2", "vnet2", untagged=["10.5.0.11/24", "10.7.0.11/24"])
    before = lab.state()

    lab.plug("vnet1", access=5)
    links = lab.links()
    assert_access_wired(links, "eth0", 5, "br05", "eth0.5", ["vnet1"])
    assert vlan_links(links) == {"eth0.5": ("eth0", 5)}
    assert reachable(g1, SW5), "access guest on VLAN 5 cannot reach the switch's VLAN 5"
    assert unreachable(g1, SW7), "access guest on VLAN 5 reaches VLAN 7"

    # The control: the same oracle on a guest put on VLAN 7 says the opposite.
    lab.plug("vnet2", access=7)
    assert_access_wired(lab.links(), "eth0", 7, "br07", "eth0.7", ["vnet2"])
    assert reachable(g2, SW7), "access guest on VLAN 7 cannot reach the switch's VLAN 7"
    assert unreachable(g2, SW5), "access guest on VLAN 7 reaches VLAN 5"
    assert reachable(g1, SW5), "adding VLAN 7 broke VLAN 5"

    # The last guest of VLAN 5 leaves: its bridge and feed go, VLAN 7 stays.
    lab.unplug("vnet1")
    links = lab.links()
    assert "br05" not in links and "eth0.5" not in links, sorted(links)
    assert links["vnet1"].get("master") is None, links["vnet1"]
    assert_access_wired(links, "eth0", 7, "br07", "eth0.7", ["vnet2"])
    assert reachable(g2, SW7)

    lab.unplug("vnet2")
    diff = state_diff(before, lab.state())
    assert diff == "", "host differs from before the first plug:\n" + diff


# 2 ---------------------------------------------------------------------------

def test_trunk_guest_reaches_vlans_5_and_7_tagged(lab):
    lab.build(wiring="trunk")
    g1 = lab.guest("g1", "vnet1", tagged={5: "10.5.0.20/24", 7: "10.7.0.20/24"})
    mac = lab.links()["eth0"]["address"]

    lab.plug("vnet1", trunk="5,7")
    links = lab.links()
    assert kind(links["br0"]) == "bridge" and managed(links["br0"]), links["br0"]
    assert ports(links, "br0") == ["eth0", "vnet1"]
    assert links["br0"]["address"] == mac, "trunk bridge did not take the uplink's MAC"
    assert vlan_links(links) == {}, "trunk wiring must not put VLAN devices anywhere here"
    # The guest's addresses live on its own eth0.5 / eth0.7 and the switch's
    # on its eth0.5 / eth0.7: replies prove the frames crossed tagged.
    assert reachable(g1, SW5), "trunk guest cannot reach VLAN 5"
    assert reachable(g1, SW7), "trunk guest cannot reach VLAN 7"


# 3 ---------------------------------------------------------------------------

def test_trunk_wiring_access_and_trunk_guest_share_vlan_5(lab):
    lab.build(wiring="trunk")
    ga = lab.guest("ga", "vnet1", untagged=["10.5.0.10/24", "10.7.0.10/24"])
    gt = lab.guest("gt", "vnet2", tagged={5: "10.5.0.20/24", 7: "10.7.0.20/24"})

    lab.plug("vnet2", trunk="5,7")
    lab.plug("vnet1", access=5)
    links = lab.links()
    assert ports(links, "br0") == ["eth0", "vnet2"]
    assert_access_wired(links, "br0", 5, "br05", "br0.5", ["vnet1"])
    assert vlan_links(links, parent="eth0") == {}, "VLAN device on a trunk bridge port"

    assert reachable(ga, "10.5.0.20"), "access guest cannot reach the trunk guest on VLAN 5"
    assert reachable(gt, "10.5.0.10"), "trunk guest cannot reach the access guest on VLAN 5"
    assert reachable(ga, SW5), "access guest on a trunk-wired uplink cannot reach the switch"
    assert reachable(gt, SW5) and reachable(gt, SW7), "trunk guest lost the switch"
    assert unreachable(ga, SW7), "access guest on VLAN 5 reaches VLAN 7"
    assert unreachable(ga, "10.7.0.20"), "access guest on VLAN 5 reaches the trunk guest's VLAN 7"

    # `virt-vlan status` (read through rtnl) against `ip -d -json link` and,
    # for the trunk bridge (it carries br0.5), `bridge -json vlan show`.
    tables = {entry["ifname"]: entry.get("vlans", []) for entry in json.loads(
        run("ip", "netns", "exec", lab.host, "bridge", "-json", "vlan", "show").stdout or "[]")}

    def vlan_words(name):
        members, untagged, pvid = set(), set(), None
        for entry in tables.get(name, []):
            vids = set(range(entry["vlan"], entry.get("vlanEnd", entry["vlan"]) + 1))
            members |= vids
            flags = entry.get("flags", [])
            if "Egress Untagged" in flags:
                untagged |= vids
            if "PVID" in flags:
                pvid = entry["vlan"]
        words = "pvid %s, vlans %s" % ("none" if pvid is None else pvid,
                                       format_vlan_list(members) or "none")
        return words + (", untagged %s" % format_vlan_list(untagged) if untagged else "")

    expected = []
    for name, link in links.items():
        members = [port for port in links.values() if port.get("master") == name]
        if kind(link) != "bridge" or not (managed(link) or any(map(managed, members))):
            continue
        mark = "managed" if managed(link) else "adopted"
        trunk = any(kind(l) == "vlan" and vlan_of(l)[0] == name for l in links.values())
        if trunk:
            data = link["linkinfo"]["info_data"]
            expected.append("%s (%s, mtu %d, trunk, vlan_filtering %d, default_pvid %d)"
                            % (name, mark, link["mtu"], data["vlan_filtering"],
                               data["vlan_default_pvid"]))
        else:
            expected.append("%s (%s, mtu %d)" % (name, mark, link["mtu"]))
        for port in members:
            parent, vid = vlan_of(port)
            what = "VLAN %d on %s" % (vid, parent) if kind(port) == "vlan" else kind(port)
            line = "  %-15s %s%s" % (port["ifname"], what or "device",
                                     ", managed" if managed(port) else "")
            expected.append(line + (", " + vlan_words(port["ifname"]) if trunk else ""))
        if trunk:
            expected.append("  %-15s %s" % ("%s (self)" % name, vlan_words(name)))
    assert [line.split(" (")[0] for line in expected if line[0] != " "] == ["br0", "br05"]
    assert expected[0].endswith("trunk, vlan_filtering 1, default_pvid 1)"), expected
    assert lab.ok("status").out.splitlines() == expected


# 4 ---------------------------------------------------------------------------

def test_vlan_device_on_a_bridge_port_is_refused_and_nothing_changes(lab):
    lab.build()  # wiring = access, but the admin made eth0 a bridge port
    ip_batch(lab.host, ["link add adm0 type bridge forward_delay 0",
                        "link set eth0 master adm0", "link set adm0 up"])
    lab.guest("g1", "vnet1", untagged=["10.5.0.10/24"])
    before = lab.state()

    # The real command, as an admin would type it (fresh process, ip netns exec).
    result = lab.vv("plug", "vnet1", "--access", "5", exec_cli=True)
    one_line_error(result, "virt-vlan: ", "refusing to create eth0.5 on eth0",
                   "eth0 is a port of bridge adm0",
                   "would take VLAN 5's tagged frames before adm0 sees them",
                   "wiring = trunk")
    diff = state_diff(before, lab.state())
    assert diff == "", "a refused plug changed the host:\n" + diff


# 5 ---------------------------------------------------------------------------

def test_new_vlan_while_guests_run_loses_nothing(lab):
    lab.build()
    g1 = lab.guest("g1", "vnet1", untagged=["10.5.0.10/24"])
    g2 = lab.guest("g2", "vnet2", untagged=["10.7.0.10/24"])
    lab.plug("vnet1", access=5)
    assert reachable(g1, SW5)
    first = lab.links()

    pinger = Pinger(g1, SW5)
    lab.children.append(pinger)
    time.sleep(1)
    lab.plug("vnet2", access=7)
    assert pinger.running(), "ping stopped during the plug"
    sent, lost, summary = pinger.result()
    assert sent >= 15 and not lost, "VLAN 5 lost packets while VLAN 7 was added: " + summary

    assert reachable(g2, SW7), "the new VLAN 7 guest cannot reach the switch"
    links = lab.links()
    for name in ("eth0", "eth0.5", "br05", "vnet1"):
        assert links[name]["ifindex"] == first[name]["ifindex"], "%s was recreated" % name
    assert_access_wired(links, "eth0", 5, "br05", "eth0.5", ["vnet1"])
    assert_access_wired(links, "eth0", 7, "br07", "eth0.7", ["vnet2"])


# 6 ---------------------------------------------------------------------------

def test_trunk_wiring_an_addressed_uplink_keeps_the_host_reachable(lab):
    lab.build(wiring="trunk", host_ip=True)
    g1 = lab.guest("g1", "vnet1", tagged={5: "10.5.0.20/24"})
    mac = lab.links()["eth0"]["address"]
    assert reachable(lab.sw, HOST_IP), "setup: switch cannot reach the host"

    pinger = Pinger(lab.sw, HOST_IP)
    lab.children.append(pinger)
    time.sleep(1)
    started = time.monotonic()
    lab.plug("vnet1", trunk="5,7")
    took = time.monotonic() - started
    assert pinger.running(), "ping stopped during the plug"
    sent, lost, summary = pinger.result()
    assert sent >= 15 and len(lost) <= 1, (
        "host unreachable during a %.2f s plug: %s" % (took, summary))

    links = lab.links()
    assert ports(links, "br0") == ["eth0", "vnet1"]
    assert links["br0"]["address"] == mac
    routes = ip_json(lab.host, "-4", "route", "show", "default")
    assert [(r.get("gateway"), r.get("dev")) for r in routes] == [(SW_UNTAGGED, "br0")], routes
    addrs = {e["ifname"]: [(a["local"], a["prefixlen"]) for a in e.get("addr_info", [])]
             for e in ip_json(lab.host, "-4", "addr", "show")}
    assert addrs.get("br0") == [(HOST_IP, 24)], addrs
    assert not addrs.get("eth0"), addrs
    assert reachable(lab.host, SW_UNTAGGED), "host cannot reach its gateway after the move"
    assert reachable(lab.sw, HOST_IP)
    assert reachable(g1, SW5)


# 7 ---------------------------------------------------------------------------

@pytest.mark.parametrize("wiring", ["access", "trunk"])
def test_failure_in_the_middle_leaves_nothing_behind(lab, wiring):
    if wiring == "access":
        lab.build()
    else:  # the biggest plan: trunk bridge, address move, feed, access bridge
        lab.build(wiring="trunk", host_ip=True)
    g1 = lab.guest("g1", "vnet1", untagged=["10.5.0.10/24"])
    before = lab.state()
    length = lab.plan_length("vnet1", "access", (5,))
    assert length >= (5 if wiring == "access" else 8), length

    for at in range(length):
        result = lab.vv("plug", "vnet1", "--access", "5", env={"VIRT_VLAN_FAIL_AT": str(at)})
        one_line_error(result, "injected failure before action %d" % at, "rolled back")
        diff = state_diff(before, lab.state())
        assert diff == "", "failure before action %d of %d left changes:\n%s" % (
            at, length, diff)

    # The same plan without the injected failure works.
    lab.plug("vnet1", access=5)
    assert reachable(g1, SW5)


@pytest.mark.parametrize("killed_at", [1, 2])
def test_run_killed_between_create_and_mark_is_finished_by_the_next(lab, monkeypatch, killed_at):
    """The kernel takes our mark (the alias) only in a request after the one
    that creates a device. A run SIGKILLed in between leaves an unmarked
    device; the next run must mark it and treat it as ours, so that the
    last unplug removes it again."""
    import signal

    from virtvlan.apply import executor as apply

    lab.build()
    g1 = lab.guest("g1", "vnet1", untagged=["10.5.0.10/24"])
    before = lab.state()
    real_mark = apply._Executor._mark
    calls = []

    def mark_then_die(self, name, addrgen):  # runs in the forked virt-vlan child
        calls.append(name)
        if len(calls) == killed_at:
            os.kill(os.getpid(), signal.SIGKILL)
        real_mark(self, name, addrgen)

    monkeypatch.setattr(apply._Executor, "_mark", mark_then_die)
    result = lab.vv("plug", "vnet1", "--access", "5")
    monkeypatch.undo()
    assert result.rc == -signal.SIGKILL, result
    links = lab.links()
    unmarked = sorted(name for name in ("eth0.5", "br05")
                      if name in links and not managed(links[name]))
    assert len(unmarked) == 1, {name: links.get(name) for name in ("eth0.5", "br05")}
    creating = lab.workdir / "run" / "creating"
    assert sorted(os.listdir(creating)) == unmarked

    result = lab.vv("plug", "vnet1", "--access", "5")
    assert result.rc == 0, result
    assert result.err == ("virt-vlan: %s: created by an interrupted virt-vlan run; "
                          "marking it as virt-vlan's\n" % unmarked[0]), result
    assert_access_wired(lab.links(), "eth0", 5, "br05", "eth0.5", ["vnet1"])
    assert reachable(g1, SW5)
    assert os.listdir(creating) == []

    lab.unplug("vnet1")
    diff = state_diff(before, lab.state())
    assert diff == "", "the half-made device outlived the last unplug:\n" + diff


# 8 ---------------------------------------------------------------------------

def _fingerprint(ns: str) -> Dict[str, Tuple[int, int, Tuple[str, ...]]]:
    """name -> (ifindex, carrier changes, flags) for every link."""
    out = {}
    for link in ip_json(ns, "-s", "-s", "link", "show"):
        changes = link.get("stats64", {}).get("tx", {}).get("carrier_changes")
        out[link["ifname"]] = (link["ifindex"], changes, tuple(sorted(link["flags"])))
    return out


def _settle(ns: str, timeout: float = 30) -> None:
    """Wait until no link's operstate lags behind its carrier.

    Kernel fact: carrier (LOWER_UP, carrier_changes) changes at once, but
    IFF_RUNNING (shown as NO-CARRIER when missing on an UP link) follows
    from the operstate, which linkwatch updates up to a second later. Such
    a late flag is the kernel catching up, not a change made by a plug.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lagging = [link["ifname"] for link in ip_json(ns, "link", "show")
                   if "UP" in link["flags"]
                   and ("LOWER_UP" in link["flags"]) == ("NO-CARRIER" in link["flags"])]
        if not lagging:
            return
        time.sleep(0.1)
    pytest.fail("operstate of %s never caught up with the carrier in %g s" % (lagging, timeout))


@pytest.mark.parametrize("wiring", ["access", "trunk"])
def test_applying_twice_changes_nothing(lab, wiring):
    if wiring == "access":
        lab.build()
    else:
        lab.build(wiring="trunk", host_ip=True)
    g1 = lab.guest("g1", "vnet1", untagged=["10.5.0.10/24"])
    lab.plug("vnet1", access=5)
    if wiring == "trunk":
        lab.guest("g2", "vnet2", tagged={7: "10.7.0.20/24"})
        lab.plug("vnet2", trunk="5,7")
    assert reachable(g1, SW5)
    _settle(lab.host)
    first, state = _fingerprint(lab.host), lab.state()

    monitor = LinkMonitor(lab.host)
    lab.children.append(monitor)
    start = monitor.mark()
    lab.plug("vnet1", access=5)
    if wiring == "trunk":
        lab.plug("vnet2", trunk="5,7")
    end = monitor.mark()
    assert monitor.between(start, end) == [], "the second run touched links"
    assert _fingerprint(lab.host) == first, "ifindex, carrier or flags changed"
    diff = state_diff(state, lab.state())
    assert diff == "", diff

    dry = lab.ok("plug", "vnet1", "--access", "5", "--dry-run")
    assert dry.out.strip() == "# nothing to change", dry
    if wiring == "trunk":
        dry = lab.ok("plug", "vnet2", "--trunk", "5,7", "--dry-run")
        assert dry.out.strip() == "# nothing to change", dry


# 9 ---------------------------------------------------------------------------

def test_concurrent_plugs_and_unplugs_end_in_the_expected_topology(lab):
    vlans = (5, 7, 100, 101, 102)
    lab.build()
    peers = lab.netns("peers")  # far ends of the taps; no traffic needed here
    lab.taps([("vnet%d" % n, peers, "p%d" % n) for n in range(22)])
    want: Dict[str, int] = {}

    # Round 1: 15 plugs at once, three guests per VLAN.
    first = {"vnet%d" % n: vlans[n % 5] for n in range(15)}
    runs = [lab.vv_start("plug", tap, "--access", str(vid)) for tap, vid in first.items()]
    for child in runs:
        result = child.wait()
        assert result.rc == 0 and result.err == "", result
    want.update(first)
    _assert_topology(lab, want)

    # Round 2: 15 more at once. VLAN 101 loses all its guests and gains one,
    # VLAN 102 loses all, VLAN 5 loses two, 103 and 104 are new.
    gone = ["vnet3", "vnet8", "vnet13", "vnet4", "vnet9", "vnet14", "vnet0", "vnet5"]
    new = {"vnet15": 103, "vnet16": 104, "vnet17": 103, "vnet18": 7, "vnet19": 5,
           "vnet20": 101, "vnet21": 100}
    runs = [lab.vv_start("unplug", tap) for tap in gone]
    runs += [lab.vv_start("plug", tap, "--access", str(vid)) for tap, vid in new.items()]
    assert len(runs) == 15
    for child in runs:
        result = child.wait()
        assert result.rc == 0 and result.err == "", result
    for tap in gone:
        del want[tap]
    want.update(new)
    _assert_topology(lab, want)
    links = lab.links()
    for tap in gone:
        assert links[tap].get("master") is None, links[tap]


def _assert_topology(lab: Lab, want: Dict[str, int]) -> None:
    links = lab.links()
    guests: Dict[int, list] = {}
    for tap, vid in want.items():
        guests.setdefault(vid, []).append(tap)
    bridges = {name for name, link in links.items() if kind(link) == "bridge"}
    assert bridges == {"br0%d" % vid for vid in guests}, "bridges: leaked or missing"
    assert vlan_links(links) == {"eth0.%d" % vid: ("eth0", vid) for vid in guests}, \
        "VLAN devices: leaked or missing"
    for vid, taps in guests.items():
        assert_access_wired(links, "eth0", vid, "br0%d" % vid, "eth0.%d" % vid, taps)


# 10 --------------------------------------------------------------------------

def test_admin_made_feed_and_bridge_are_adopted_and_kept(lab):
    lab.build()
    ip_batch(lab.host, ["link add link eth0 name eth0.5 type vlan id 5",
                        "link add br05 type bridge forward_delay 0",
                        "link set eth0.5 master br05",
                        "link set eth0.5 up", "link set br05 up"])
    g1 = lab.guest("g1", "vnet1", untagged=["10.5.0.10/24", "10.7.0.10/24"])
    first = lab.links()

    lab.plug("vnet1", access=5)
    links = lab.links()
    assert_access_wired(links, "eth0", 5, "br05", "eth0.5", ["vnet1"], ours=False)
    for name in ("eth0.5", "br05"):
        assert links[name]["ifindex"] == first[name]["ifindex"], "%s was replaced" % name
    assert vlan_links(links) == {"eth0.5": ("eth0", 5)}
    assert reachable(g1, SW5) and unreachable(g1, SW7)

    lab.unplug("vnet1")
    links = lab.links()
    assert links["vnet1"].get("master") is None
    assert_access_wired(links, "eth0", 5, "br05", "eth0.5", [], ours=False)
    for name in ("eth0.5", "br05"):
        assert links[name]["ifindex"] == first[name]["ifindex"], "%s was touched" % name


@pytest.mark.parametrize("impostor", ["vlan6", "other-parent"])
def test_admin_made_feed_of_the_wrong_kind_is_refused(lab, impostor):
    lab.build()
    if impostor == "vlan6":
        ip(lab.host, "link", "add", "link", "eth0", "name", "eth0.5", "type", "vlan", "id", "6")
        expect = "eth0.5 exists but is VLAN 6 on eth0, not VLAN 5 on eth0"
    else:
        other = lab.netns("other")
        lab.tap("eth1", other)
        ip(lab.host, "link", "add", "link", "eth1", "name", "eth0.5", "type", "vlan", "id", "5")
        expect = "eth0.5 exists but is VLAN 5 on eth1, not VLAN 5 on eth0"
    lab.guest("g1", "vnet1", untagged=["10.5.0.10/24"])
    before = lab.state()

    result = lab.vv("plug", "vnet1", "--access", "5")
    one_line_error(result, expect, "delete or rename it")
    diff = state_diff(before, lab.state())
    assert diff == "", "a refused plug changed the host:\n" + diff


# 11 --------------------------------------------------------------------------

def test_bond_uplink_access_guest(lab):
    lab.build(bond=True)
    g1 = lab.guest("g1", "vnet1", untagged=["10.5.0.10/24", "10.7.0.10/24"])
    links = lab.links()
    assert kind(links["bond0"]) == "bond" and links["eth0"].get("master") == "bond0"

    lab.plug("vnet1", access=5)
    links = lab.links()
    assert_access_wired(links, "bond0", 5, "br05", "bond0.5", ["vnet1"])
    assert vlan_links(links) == {"bond0.5": ("bond0", 5)}
    assert reachable(g1, SW5), "access guest behind a bond cannot reach VLAN 5"
    assert unreachable(g1, SW7)

    lab.unplug("vnet1")
    links = lab.links()
    assert "bond0.5" not in links and "br05" not in links
    assert links["eth0"].get("master") == "bond0"
