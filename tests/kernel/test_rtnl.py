"""rtnl (the stdlib dump reader) against a real kernel.

Two independent oracles: pyroute2 through pyroute2_oracle.read(), which rtnl must
equal exactly, and `ip -json` for the values themselves. The VLAN variants
take `vlan_support` and fail outside the test VM; the rest also run on a
kernel without 802.1Q.
"""

import json
import logging
import os
import subprocess
import threading

import pytest
from pyroute2_oracle import read as pyroute2_read

from virtvlan.apply import netlink
from virtvlan.host import rtnl
from virtvlan.errors import ApplyError
from virtvlan.model import MANAGED_ALIAS, Address, PortVlans, Route

H4, GW4 = "192.0.2.10", "192.0.2.1"
H6, GW6 = "2001:db8:1::10", "2001:db8:1::1"


def veth(ns, a: str = "u0", b: str = "u1") -> None:
    ns.ip("link", "add", a, "type", "veth", "peer", "name", b)


def pyroute2_snapshot(name=None):
    with netlink.open_socket(name) as ipr:
        return pyroute2_read(ipr)


def build(ns, peer, vlans: bool) -> None:
    """h0 (veth to `peer`, the gateway) with static, dynamic and broadcast
    addresses and routes of every kind; bridges br0 (managed mark, port u0)
    and br07; taps; with `vlans`: u1.5 on a veth, br0.7 on a bridge (port of
    br07) and p0.9, made on `peer`'s p0 and moved here (a lower device in
    another namespace)."""
    ns.ip("link", "add", "h0", "type", "veth", "peer", "name", "p0", "netns", peer.name)
    ns.ip("addr", "add", H4 + "/24", "broadcast", "192.0.2.255", "dev", "h0")
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "h0", "valid_lft", "3600",
          "preferred_lft", "3600")
    ns.ip("-6", "addr", "add", H6 + "/64", "dev", "h0", "nodad")
    ns.ip("-6", "addr", "add", "2001:db8:2::10/64", "dev", "h0", "nodad",
          "valid_lft", "3600", "preferred_lft", "3600")
    ns.ip("link", "set", "h0", "mtu", "1450", "up")
    peer.ip("addr", "add", GW4 + "/24", "dev", "p0")
    peer.ip("-6", "addr", "add", GW6 + "/64", "dev", "p0", "nodad")
    peer.ip("link", "set", "p0", "up")
    ns.ip("link", "add", "br0", "type", "bridge")
    ns.ip("link", "set", "br0", "alias", MANAGED_ALIAS)
    ns.ip("link", "add", "u0", "type", "veth", "peer", "name", "u1")
    ns.ip("link", "set", "u0", "master", "br0")
    ns.ip("link", "add", "br07", "type", "bridge")
    for name in ("u0", "u1", "br0"):
        ns.ip("link", "set", name, "up")
    ns.ip("addr", "add", "10.20.0.1/24", "dev", "br0")
    ns.ip("tuntap", "add", "mode", "tap", "tap0")
    ns.ip("tuntap", "add", "mode", "tun", "tun0")  # no hardware address at all
    ns.ip("route", "add", "default", "via", GW4, "dev", "h0", "metric", "50", "proto", "static")
    ns.ip("-6", "route", "add", "default", "via", GW6, "dev", "h0", "metric", "1024")
    ns.ip("route", "add", "203.0.113.0/24", "via", GW4, "table", "100")
    ns.ip("route", "add", "203.0.114.0/24", "via", GW4, "table", "1000", "proto", "boot")
    ns.ip("route", "add", "10.9.0.0/16", "dev", "h0", "scope", "link", "src", H4,
          "proto", "static")
    ns.ip("route", "add", "10.8.0.1/32", "dev", "h0", "proto", "static")
    ns.ip("-6", "route", "add", "2001:db8:9::/48", "via", GW6, "dev", "h0", "table", "7")
    # Absent from the snapshot: multipath, blackhole, IPv6 multicast.
    ns.ip("route", "add", "172.16.0.0/16", "nexthop", "via", GW4, "dev", "h0",
          "nexthop", "dev", "br0")
    ns.ip("route", "add", "blackhole", "172.17.0.0/16")
    ns.ip("-6", "route", "add", "ff00::/8", "dev", "h0", "table", "7")
    if vlans:
        ns.ip("link", "add", "link", "u1", "name", "u1.5", "type", "vlan", "id", "5")
        ns.ip("link", "add", "link", "br0", "name", "br0.7", "type", "vlan", "id", "7")
        ns.ip("link", "set", "br0.7", "master", "br07")
        ns.ip("addr", "add", "10.5.0.2/24", "dev", "u1.5")
        for name in ("u1.5", "br0.7", "br07"):
            ns.ip("link", "set", name, "up")
        ns.ip("route", "add", "10.55.0.0/16", "via", "10.5.0.1", "dev", "u1.5", "proto",
              "static")
        peer.ip("link", "add", "link", "p0", "name", "p0.9", "type", "vlan", "id", "9")
        peer.ip("link", "set", "p0.9", "netns", ns.name)


EXPECTED_ROUTES = {
    Route("inet", "default", "h0", gateway=GW4, metric=50, proto="static"),
    Route("inet6", "default", "h0", gateway=GW6, metric=1024, proto="boot"),
    Route("inet", "203.0.113.0/24", "h0", gateway=GW4, table=100, proto="boot"),
    Route("inet", "203.0.114.0/24", "h0", gateway=GW4, table=1000, proto="boot"),
    Route("inet", "10.9.0.0/16", "h0", proto="static", scope="link", prefsrc=H4),
    Route("inet", "10.8.0.1/32", "h0", proto="static", scope="link"),
    Route("inet6", "2001:db8:9::/48", "h0", gateway=GW6, metric=1024, table=7, proto="boot"),
}


def _check_against_ip(ns, snap) -> None:
    """Links and addresses as `ip -json` shows them."""
    shown = {l["ifname"]: l for l in ns.json("-d", "link", "show")}
    assert sorted(l.name for l in snap) == sorted(shown)
    for link in snap:
        ip = shown[link.name]
        info = ip.get("linkinfo", {})
        assert link.index == ip["ifindex"]
        assert link.mtu == ip["mtu"]
        assert link.mac == ip.get("address", "")
        assert link.master == ip.get("master")
        assert link.up == ("UP" in ip["flags"])
        assert link.managed == (ip.get("ifalias") == MANAGED_ALIAS)
        assert link.kind == info.get("info_kind", "device")
        assert link.vlan_id == (info["info_data"]["id"] if link.kind == "vlan" else None)
        if link.kind == "vlan" and "link_netnsid" not in ip:
            assert link.parent == ip["link"]
        else:
            assert link.parent is None
    for entry in ns.json("addr", "show"):
        want = {Address(a["family"], a["local"], a["prefixlen"], dynamic=bool(a.get("dynamic")),
                        scope=a["scope"], broadcast=a.get("broadcast"))
                for a in entry.get("addr_info", [])
                if not (a["family"] == "inet6" and a["scope"] == "link")}
        assert set(snap.get(entry["ifname"]).addresses) == want


@pytest.mark.parametrize("vlans", [False, True], ids=["plain", "vlans"])
def test_equals_pyroute2_and_ip(netns, netns2, vlans, request):
    if vlans:
        request.getfixturevalue("vlan_support")
    build(netns, netns2, vlans)
    snap = rtnl.read_snapshot(netns.name)
    assert snap == pyroute2_snapshot(netns.name)
    _check_against_ip(netns, snap)

    h0, br0, tun0 = snap.get("h0"), snap.get("br0"), snap.get("tun0")
    assert (h0.kind, h0.mtu, h0.parent, h0.up) == ("veth", 1450, None, True)
    assert br0.kind == "bridge" and br0.managed and not h0.managed
    assert snap.get("u0").master == "br0" and tun0.kind == "tun" and tun0.mac == ""
    assert set(h0.addresses) == {
        Address("inet", H4, 24, broadcast="192.0.2.255"),
        Address("inet", "198.51.100.7", 24, dynamic=True),
        Address("inet6", H6, 64), Address("inet6", "2001:db8:2::10", 64, dynamic=True)}
    assert set(snap.routes_via("h0")) == EXPECTED_ROUTES
    assert not snap.routes_via("br0")  # the multipath route and the connected one
    if vlans:
        assert (snap.get("u1.5").vlan_id, snap.get("u1.5").parent) == (5, "u1")
        b7 = snap.get("br0.7")
        assert (b7.vlan_id, b7.parent, b7.master) == (7, "br0", "br07")
        assert [v.name for v in snap.vlan_children("br0")] == ["br0.7"]
        assert netns.link("p0.9").get("link_netnsid") is not None
        assert (snap.get("p0.9").vlan_id, snap.get("p0.9").parent) == (9, None)
        assert snap.routes_via("u1.5") == (
            Route("inet", "10.55.0.0/16", "u1.5", gateway="10.5.0.1", proto="static"),)
        assert snap.get("u1.5").addresses == (Address("inet", "10.5.0.2", 24),)


def test_multipart_dump_of_many_links(netns, tmp_path):
    # ~1 KiB per link message: 150 pairs need several 32 KiB datagrams.
    batch = tmp_path / "batch"
    batch.write_text("".join("link add m%d type veth peer name n%d\n" % (i, i)
                             for i in range(150)))
    netns.ip("-batch", str(batch))
    snap = rtnl.read_snapshot(netns.name)
    assert len(snap.links) == 301
    assert snap == pyroute2_snapshot(netns.name)


def test_reads_stay_whole_while_links_change(netns, tmp_path, caplog):
    """Devices come and go during the dumps (NLM_F_DUMP_INTR, retries): every
    read still has the stable links, and every master it names exists."""
    stable = tmp_path / "stable"
    stable.write_text("".join("link add s%d type veth peer name t%d\nlink set s%d master brs\n"
                              % (i, i, i) for i in range(60)))
    netns.ip("link", "add", "brs", "type", "bridge")
    netns.ip("-batch", str(stable))
    churn = tmp_path / "churn"
    # Alias changes between add and del space the interruptions out: the
    # link dump is interrupted often, but not on every try.
    churn.write_text(("link add c0 type veth peer name c1\n" + "link set t0 alias x\n" * 10
                      + "link del c0\n") * 100)
    caplog.set_level(logging.DEBUG, logger=rtnl.__name__)
    proc = subprocess.Popen(["ip", "-n", netns.name, "-batch", str(churn)])
    try:
        reads = 0
        while proc.poll() is None or reads < 3:
            snap = rtnl.read_snapshot(netns.name)
            names = {l.name for l in snap}
            assert {"s%d" % i for i in range(60)} <= names
            assert all(l.master in names for l in snap if l.master)
            reads += 1
    finally:
        proc.wait()
    assert proc.returncode == 0
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    print("%d reads, %d retries during the churn" % (reads, len(retries)))


def test_own_namespace_equals_pyroute2():
    """netns=None reads the caller's namespace (only read: nothing changes);
    a few tries in case another program changes it between the two reads."""
    for _ in range(3):
        if rtnl.read_snapshot() == pyroute2_snapshot():
            return
    assert rtnl.read_snapshot() == pyroute2_snapshot()


def test_caller_stays_in_its_namespace(netns):
    """setns() happens in a helper thread: this thread never moves."""
    before = os.readlink("/proc/thread-self/ns/net")
    netns.ip("link", "add", "only-here", "type", "bridge")
    assert rtnl.read_snapshot(netns.name).get("only-here") is not None
    assert os.readlink("/proc/thread-self/ns/net") == before
    assert rtnl.read_snapshot().get("only-here") is None
    # The helper thread has ended (by name: a count of all threads also saw
    # other tests' threads ending late under a loaded CPU).
    assert not [t for t in threading.enumerate() if t.name == "virt-vlan-setns"]
    by_path = rtnl.read_snapshot("/run/netns/" + netns.name)
    assert by_path.get("only-here") is not None


def test_missing_netns_is_not_created():
    with pytest.raises(ApplyError, match=r"^network namespace vvt-none-such does not exist "
                                         r"\(see `ip netns list`\)$"):
        rtnl.read_snapshot("vvt-none-such")
    assert not os.path.exists("/run/netns/vvt-none-such")


def test_not_a_namespace_names_the_errno(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(ApplyError, match=r"cannot open a netlink socket in netns .*: EINVAL "):
        rtnl.read_snapshot(str(plain))


def bridge_vlan_show(ns) -> dict:
    """`bridge -json -compressvlans vlan show` as {ifname: (tagged, untagged, pvid)},
    ranges expanded: the independent oracle for the VLAN tables."""
    out = subprocess.run(["bridge", "-n", ns.name, "-json", "-c", "vlan", "show"], check=True,
                         capture_output=True, text=True).stdout
    tables = {}
    for entry in json.loads(out or "[]"):
        tagged, untagged, pvid = set(), set(), None
        for vlan in entry.get("vlans", []):
            vids = set(range(vlan["vlan"], vlan.get("vlanEnd", vlan["vlan"]) + 1))
            flags = vlan.get("flags", [])
            (untagged if "Egress Untagged" in flags else tagged).update(vids)
            if "PVID" in flags:
                pvid = vlan["vlan"]
        tables[entry["ifname"]] = (tagged, untagged, pvid)
    return tables


def test_bridge_vlan_tables_equal_pyroute2_and_bridge_json(netns, vlan_support):
    """A filtering bridge with a non-default default_pvid, a 10-4094 trunk
    range, an untagged range, a native VLAN and self entries: rtnl (compressed
    AF_BRIDGE dump) equals pyroute2 and `bridge -json vlan show`."""
    netns.ip("link", "add", "brf", "type", "bridge", "vlan_filtering", "1",
             "vlan_default_pvid", "3", "stp_state", "1")
    netns.ip("link", "add", "brg", "type", "bridge")  # unfiltered, default PVID 1
    veth(netns)
    netns.ip("tuntap", "add", "mode", "tap", "tap0")
    netns.ip("link", "set", "u0", "master", "brf")
    netns.ip("link", "set", "tap0", "master", "brf")
    netns.ip("link", "set", "u1", "master", "brg")
    netns.ip("link", "add", "link", "brf", "name", "brf.10", "type", "vlan", "id", "10")

    def bridge(*args: str) -> None:
        subprocess.run(["bridge", "-n", netns.name, "vlan"] + list(args), check=True)

    bridge("add", "dev", "u0", "vid", "10-4094")
    bridge("add", "dev", "tap0", "vid", "5", "pvid", "untagged")
    bridge("add", "dev", "tap0", "vid", "100-200", "untagged")
    bridge("add", "dev", "tap0", "vid", "7")
    bridge("del", "dev", "tap0", "vid", "3")
    bridge("add", "dev", "brf", "vid", "10", "self")
    bridge("add", "dev", "brf", "vid", "20-30", "self")

    snap = rtnl.read_snapshot(netns.name)
    assert snap == pyroute2_snapshot(netns.name)
    brf, brg = snap.get("brf"), snap.get("brg")
    assert (brf.vlan_filtering, brf.default_pvid, brf.stp) == (True, 3, True)
    assert (brg.vlan_filtering, brg.default_pvid, brg.stp) == (False, 1, False)
    assert snap.get("u0").vlans == PortVlans(frozenset(range(10, 4095)), frozenset({3}), 3)
    assert snap.get("tap0").vlans == PortVlans(frozenset({7}),
                                               frozenset({5} | set(range(100, 201))), 5)
    assert snap.get("brf").vlans == PortVlans(frozenset({10} | set(range(20, 31))),
                                              frozenset({3}), 3)
    assert snap.get("u1").vlans == PortVlans(frozenset(), frozenset({1}), 1)
    assert snap.get("brf.10").vlans is None and snap.get("u1").master == "brg"
    shown = bridge_vlan_show(netns)
    for name in ("brf", "brg", "u0", "u1", "tap0"):
        vlans = snap.get(name).vlans
        assert (set(vlans.tagged), set(vlans.untagged), vlans.pvid) == shown[name], name
