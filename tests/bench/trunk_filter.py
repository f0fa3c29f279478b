#!/usr/bin/env python3
"""Warm trunk plug benchmark: prints medians, asserts nothing (`make bench`).

Issue 7, scenario 7: a warm `virt-vlan plug` (everything already in place,
so the plan is empty and the run is mostly reading the host, bridge VLAN
tables included) of a guest with a 1-4094 trunk should cost less than 2x
the same plug of a guest with a 2-VLAN trunk: the tables are read with the
kernel's compressed VLAN dump (a few ranges, not 4094 entries) and written
as ranges.

Run as root on a kernel with 802.1Q and bridge VLAN filtering (`make bench`
runs it in the test VM). Everything happens in a scratch network namespace:
a veth as the uplink, port of an admin-made trunk bridge br0 that
virt-vlan adopts with `trunk-filtering = yes`; veths as taps. br0 is made
with `vlan_default_pvid 0` (no untagged VLAN on the uplink), since a list
containing the bridge's default PVID is refused (double-tag hop); if the
1-4094 plug is refused anyway, the figure falls back to 2-4094 and says so.
Each figure is one fresh `virt-vlan plug` process per call, as a hook is.
The two trunks are measured one after the other, each alone on br0.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

NS = "vvtfbench"
UPLINK, BRIDGE, TAP = "vvtfup0", "br0", "vvtftap0"
VV_BIN = os.path.join(os.path.dirname(sys.executable), "virt-vlan")


def sh(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def plug(conf: str, env: Dict[str, str], vlans: str, check: bool = True) -> float:
    """One `virt-vlan plug TAP --trunk VLANS` process; its wall time in s."""
    argv = [VV_BIN, "--config", conf, "plug", TAP, "--trunk", vlans]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        if not check:
            return -1.0
        raise SystemExit("bench: %s failed (%d): %s" % (" ".join(argv), done.returncode,
                                                        done.stderr.strip()))
    return elapsed


def unplug(conf: str, env: Dict[str, str]) -> None:
    subprocess.run([VV_BIN, "--config", conf, "unplug", TAP], env=env, check=True,
                   capture_output=True)


def enter_namespace() -> None:
    """Move this process (and so every child) into a fresh scratch netns."""
    subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
    sh("ip", "netns", "add", NS)
    from pyroute2 import netns  # bench only; the product's import is in apply.py

    netns.setns(NS)
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", UPLINK + "p")
    sh("ip", "link", "add", TAP, "type", "veth", "peer", "name", TAP + "p")
    sh("ip", "link", "add", BRIDGE, "type", "bridge", "forward_delay", "0",
       "vlan_default_pvid", "0")
    sh("ip", "link", "set", UPLINK, "master", BRIDGE)
    for dev in (UPLINK, UPLINK + "p", TAP, BRIDGE):
        sh("ip", "link", "set", dev, "up")


def warm_median(label: str, runs: int, conf: str, env: Dict[str, str], vlans: str) -> float:
    plug(conf, env, vlans)  # cold: programs the entries (and converts br0 the first time)
    samples: List[float] = [plug(conf, env, vlans) for _ in range(runs)]
    value = statistics.median(samples) * 1000
    print("bench: %-28s %8.1f ms" % (label, value), file=sys.stderr, flush=True)
    unplug(conf, env)
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root, 802.1Q and VLAN filtering (run it with "
                         "`make bench`)")
    work = tempfile.mkdtemp(prefix="vv-trunk-bench-")
    try:
        enter_namespace()
        conf = os.path.join(work, "virt-vlan.conf")
        with open(conf, "w") as handle:
            handle.write("[global]\nlock-timeout = 600\n\n[uplink %s]\nwiring = trunk\n"
                         "trunk-bridge = %s\nallowed-vlans = 1-4094\ntrunk-filtering = yes\n"
                         % (UPLINK, BRIDGE))
        env = dict(os.environ, VIRT_VLAN_RUN_DIR=os.path.join(work, "run"),
                   VIRT_VLAN_LOCK=os.path.join(work, "run", "lock"))
        small = warm_median("warm plug, trunk 5,7", args.runs, conf, env, "5,7")
        full = "1-4094"
        if plug(conf, env, full, check=False) < 0:
            full = "2-4094"
            print("bench: `plug --trunk 1-4094` refused on br0 (vlan_default_pvid 0); "
                  "measuring 2-4094", file=sys.stderr)
        else:
            unplug(conf, env)
        large = warm_median("warm plug, trunk " + full, args.runs, conf, env, full)
    finally:
        subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)

    ratio = large / small
    print("warm trunk plug, medians of %d runs (ms); kernel %s, Python %s, %s"
          % (args.runs, os.uname().release, sys.version.split()[0],
             "inside the test VM" if os.environ.get("VIRT_VLAN_IN_VM") == "1" else "on the host"))
    print("  %-38s %8.1f" % ("warm plug, 2-VLAN trunk (5,7)", small))
    print("  %-38s %8.1f" % ("warm plug, %s trunk" % full, large))
    print("%s / 2-VLAN = %.2fx (target < 2x: %s)"
          % (full, ratio, "met" if ratio < 2 else "MISSED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
