"""Fixtures for tests against a real kernel (run them in the VM: tests/vm/run).

`ip -json` is the independent oracle: what virt-vlan did is always checked
with iproute2, never with our own snapshot reader alone. Every test works in
network namespaces it creates, so the host running the tests is never touched.
"""

import itertools
import json
import os
import subprocess
from typing import Any, Callable, Iterator, List

import pytest

_counter = itertools.count()


def ip(netns: str, *args: str) -> str:
    """Run `ip -n NETNS ARGS...`; fail the test with ip's message on error."""
    proc = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail("`ip -n %s %s` failed: %s" % (netns, " ".join(args), proc.stderr.strip()))
    return proc.stdout


def ip_json(netns: str, *args: str) -> Any:
    """`ip -n NETNS -json ARGS...`, parsed (an empty answer is [])."""
    out = ip(netns, "-json", *args).strip()
    return json.loads(out) if out else []


def link_names(netns: str) -> List[str]:
    return sorted(link["ifname"] for link in ip_json(netns, "link", "show"))


def link_info(netns: str, name: str) -> Any:
    """`ip -d -json link show NAME`: the one link, with its linkinfo."""
    (link,) = ip_json(netns, "-d", "link", "show", "dev", name)
    return link


class Netns:
    """A namespace the test owns: `.name` for virt-vlan, helpers for checks."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return "Netns(%r)" % self.name

    def ip(self, *args: str) -> str:
        return ip(self.name, *args)

    def json(self, *args: str) -> Any:
        return ip_json(self.name, *args)

    def link(self, name: str) -> Any:
        return link_info(self.name, name)

    def names(self) -> List[str]:
        return link_names(self.name)


@pytest.fixture(name="ip_json")
def _ip_json_fixture() -> Callable[..., Any]:
    """The `ip_json(netns, *args)` helper, for tests that prefer a fixture."""
    return ip_json


def _new_netns() -> str:
    name = "vvt%d-%d" % (os.getpid(), next(_counter))
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return name


def _del_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="session", autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.fail("tests/kernel need root and a real kernel: run them with "
                    "`tests/vm/run .venv/bin/python -m pytest tests/kernel`")


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A fresh, uniquely named network namespace (lo up), deleted afterwards."""
    name = _new_netns()
    try:
        yield Netns(name)
    finally:
        _del_netns(name)


@pytest.fixture
def netns2() -> Iterator[Netns]:
    """A second namespace, e.g. the far end ("switch", "gateway") of a veth."""
    name = _new_netns()
    try:
        yield Netns(name)
    finally:
        _del_netns(name)


@pytest.fixture(scope="session")
def vlan_support() -> None:
    """Fail (never skip) when this kernel cannot make 802.1Q devices.

    A skipped VLAN test would look like a pass; the machine's own kernel has
    no CONFIG_VLAN_8021Q, so these tests only mean something in the VM.
    """
    name = _new_netns()
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "t0", "type", "veth", "peer",
                        "name", "t1"], check=True)
        proc = subprocess.run(["ip", "-n", name, "link", "add", "link", "t0", "name", "t0.5",
                               "type", "vlan", "id", "5"], capture_output=True, text=True)
    finally:
        _del_netns(name)
    if proc.returncode != 0:
        pytest.fail("this kernel cannot create 802.1Q VLAN devices (%s): run the real-kernel "
                    "tests in the test VM, `tests/vm/run .venv/bin/python -m pytest "
                    "tests/kernel`" % proc.stderr.strip())
