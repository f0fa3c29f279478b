"""Smoke test of the real-kernel test VM (tests/vm/run).

If this fails, every other real-kernel test would fail for reasons that have
nothing to do with virt-vlan: the kernel lacks 802.1Q, veth or bridges, or
network namespaces do not work. It uses `ip` (the test oracle elsewhere too)
rather than pyroute2 so it checks the kernel, not our own netlink layer.
"""

import json
import os
import subprocess
import uuid

import pytest

RUN_IN_VM = (
    "real-kernel tests need a kernel with 802.1Q and root: run them via "
    "`make test` or `tests/vm/run .venv/bin/python -m pytest tests/kernel`"
)


def ip(*args, ns=None):
    cmd = ["ip"] + (["-n", ns] if ns else []) + [str(a) for a in args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")
    return res.stdout


def links(ns):
    return {l["ifname"]: l for l in json.loads(ip("-json", "-d", "link", "show", ns=ns))}


def fresh_netns(request):
    """A new namespace, deleted by a finalizer: it keeps the VM's root
    namespace clean, and deleting it removes everything created inside."""
    in_vm = bool(os.environ.get("VIRT_VLAN_IN_VM"))
    # Checked in the test body, not a fixture, so that running in the wrong
    # place shows as a failed test rather than a setup error.
    if not in_vm and os.geteuid() != 0:
        pytest.fail(RUN_IN_VM)
    name = f"vvsmoke-{uuid.uuid4().hex[:8]}"
    try:
        ip("netns", "add", name)
    except RuntimeError as e:
        pytest.fail(str(e) if in_vm else f"{e}; {RUN_IN_VM}")
    request.addfinalizer(lambda: subprocess.run(["ip", "netns", "del", name], check=False))
    return name


def test_vlan_on_veth_under_bridge(request):
    netns = fresh_netns(request)
    tag = uuid.uuid4().hex[:4]
    a, b, br = f"va{tag}", f"vb{tag}", f"br{tag}"
    vlan = f"{a}.5"
    ip("link", "add", "name", a, "type", "veth", "peer", "name", b, ns=netns)
    try:
        ip("link", "add", "link", a, "name", vlan, "type", "vlan", "id", 5, ns=netns)
    except RuntimeError as e:
        # Outside the VM, a missing 802.1Q means "wrong place to run", which
        # must fail loudly rather than skip: the suite exists to test it.
        if not os.environ.get("VIRT_VLAN_IN_VM"):
            pytest.fail(f"{e}; {RUN_IN_VM}")
        raise
    ip("link", "add", "name", br, "type", "bridge", ns=netns)
    ip("link", "set", vlan, "master", br, ns=netns)

    got = links(netns)
    assert got[a]["linkinfo"]["info_kind"] == "veth"
    assert got[b]["link"] == a

    v = got[vlan]
    assert v["linkinfo"]["info_kind"] == "vlan"
    assert v["linkinfo"]["info_data"]["id"] == 5
    assert v["linkinfo"]["info_data"]["protocol"] == "802.1Q"
    assert v["link"] == a
    assert v["master"] == br
    assert v["linkinfo"]["info_slave_kind"] == "bridge"

    assert got[br]["linkinfo"]["info_kind"] == "bridge"
