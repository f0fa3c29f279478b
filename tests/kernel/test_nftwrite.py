"""nftwrite's real writes (root, a real kernel's nftables): in process
through libnftables, in a scratch namespace and in a process's own. Moved
here from tests/unit so that they run as root in the VM, never skipped;
the unit tests of the writer's logic stay in tests/unit/test_nftwrite.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from virtvlan.host import nftables, nftwrite
from virtvlan.model import PortFilter
from virtvlan.plan import actions as act

SRC = Path(__file__).resolve().parents[2] / "src"
MAC = "52:54:00:00:be:01"
FILTER = act.SetPortFilter("vnet0", ("stp", "mac=" + MAC))


def _script(action: act.SetPortFilter) -> str:
    return "\n".join(action.script()) + "\n"


# --- real writes, in scratch namespaces (root) ---------------------------------------

def _nft_json(netns: str) -> dict:
    out = subprocess.run(["ip", "netns", "exec", netns, "nft", "-j", "list", "table", "bridge",
                          "virt_vlan"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_in_process_write_in_a_named_namespace(netns):
    netns = netns.name
    if nftwrite.library() is None:
        pytest.fail("%s cannot be loaded: install nftables (tests/setup-host does; the "
                    "package depends on it)" % nftwrite.LIBRARY)
    assert nftwrite.run_script_in_process(_script(FILTER), netns) is None
    # The independent oracle: nft's own listing of the table.
    assert nftables.parse_table(_nft_json(netns)) == (PortFilter("vnet0", FILTER.rules),)
    assert nftables.read_filters_netlink(netns) == (PortFilter("vnet0", FILTER.rules),)
    # A refusal: nft's first error line, and nothing of the script applied.
    bad = _script(act.SetPortFilter("vnet1", ("stp",))).replace(
        "port-vnet1 ether daddr", "port-vnet1 ether saddr bogus ether daddr")
    refusal = nftwrite.run_script_in_process(bad, netns)
    assert refusal is not None and refusal.startswith("Error: "), refusal
    assert nftables.read_filters_netlink(netns) == (PortFilter("vnet0", FILTER.rules),)


def test_in_process_write_in_the_own_namespace_reuses_one_context():
    """In a child of `unshare -n` (a scratch namespace of its own): two
    writes through one context, then a forked child writes with its own."""
    code = r'''
import os, sys
from virtvlan.host import nftables, nftwrite
from virtvlan.plan import actions as act
if nftwrite.library() is None:
    print("skip"); sys.exit(0)
one = act.SetPortFilter("vnet0", ("stp",))
two = act.SetPortFilter("vnet1", ("stp", "mac=52:54:00:00:be:02"))
assert nftwrite.run_script("\n".join(one.script()) + "\n") is None
first = nftwrite._ctx
assert nftwrite.run_script("\n".join(two.script()) + "\n") is None
assert nftwrite._ctx == first, "a second context"
pid = os.fork()
if pid == 0:
    gone = act.SetPortFilter("vnet0", ())
    ok = nftwrite.run_script("\n".join(gone.script()) + "\n") is None
    os._exit(0 if ok and nftwrite._ctx != first else 1)
_, status = os.waitpid(pid, 0)
assert status == 0, status
print(repr(nftables.read_filters_netlink()))
'''
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert proc.returncode == 0, proc.stderr
    if proc.stdout.strip() == "skip":
        pytest.fail("%s cannot be loaded: install nftables (tests/setup-host does; the "
                    "package depends on it)" % nftwrite.LIBRARY)
    assert proc.stdout.strip() == repr(
        (PortFilter("vnet1", ("stp", "mac=52:54:00:00:be:02")),))
