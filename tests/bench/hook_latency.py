#!/usr/bin/env python3
"""Hook latency benchmark: prints medians, asserts nothing (`make bench`).

Run as root on a kernel with 802.1Q (`make bench` runs it in the test VM).
Everything happens in a scratch network namespace with a veth as uplink
and veths as guest taps; the hook is the installed drop-in, called exactly
as libvirt calls it (argv + domain XML on stdin), one process per call.

Figures:
- bare interpreter (`python -c pass`, the interpreter the hook uses);
- our hook on an untagged domain (target: <= 1.5x bare);
- a warm tagged lifecycle (prepare, start, started, stopped, release) with
  bridge and feed already there (target: <= 3x the bash reference). As
  libvirt does, the tap is put on <source bridge> (br05) before `start` and
  taken away after `stopped`, outside the timed calls;
- a `start` whose tap libvirt put on another bridge, so the hook moves it;
- a cold prepare that creates the feed and bridge;
- a reference hook in bash with `ip` commands doing the same work.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402  (beside this file)

NS = "vvbench"
UPLINK, TAP, OTHER = "vvbup0", "vvbtap0", "vvbtap1"
BRIDGE, FEED = "br05", UPLINK + ".5"
PARK = "vvbpark"  # a bridge that is not the guest's VLAN bridge
MAC = "52:54:00:be:00:01"
DOMAIN = ("<domain type='qemu'><name>bench</name><uuid>6f1c3a52-0000-4000-8000-00000000be01"
          "</uuid><devices><interface type='bridge'><mac address='%s'/><source bridge='%s'/>"
          "<target dev='%s'/></interface></devices><metadata><vv:vlan xmlns:vv='urn:virt-vlan:1'>"
          "<vv:interface mac='%s' mode='access' vlan='5'/></vv:vlan></metadata></domain>"
          % (MAC, BRIDGE, TAP, MAC)).encode()
UNTAGGED = DOMAIN.split(b"<metadata>")[0] + b"</domain>"
LIFECYCLE = (("prepare", "begin"), ("start", "begin"), ("started", "begin"),
             ("stopped", "end"), ("release", "end"))

# What a careful hand-written hook does for one access guest on VLAN 5.
BASH_REFERENCE = harness.bash_reference(BRIDGE, harness.ACCESS_PREPARE, r"""release)
    ports=$(ls /sys/class/net/%(bridge)s/brif 2>/dev/null | grep -vx %(feed)s)
    [ -n "$ports" ] || { ip link del dev %(bridge)s; ip link del dev %(feed)s; } ;;""",
                                        feed=FEED, uplink=UPLINK)


def sh(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def timed(argv: List[str], stdin: bytes, env: Dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit("bench: %s failed (%d): %s" % (" ".join(argv), done.returncode,
                                                        done.stderr.decode().strip()))
    return elapsed


def median_ms(label: str, runs: int, one: Callable[[], float],
              between: Callable[[], None] = lambda: None) -> float:
    samples = []
    for _ in range(runs):
        samples.append(one())
        between()
    value = statistics.median(samples) * 1000
    print("bench: %-20s %8.1f ms" % (label, value), file=sys.stderr, flush=True)
    return value


def enter_namespace() -> None:
    """Move this process (and so every child) into a fresh scratch netns."""
    subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
    sh("ip", "netns", "add", NS)
    from pyroute2 import netns  # bench only; the product's import is in apply.py

    netns.setns(NS)
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", UPLINK + "p")
    for tap in (TAP, OTHER):
        sh("ip", "link", "add", tap, "type", "veth", "peer", "name", tap + "p")
    for dev in (UPLINK, UPLINK + "p", TAP, OTHER):
        sh("ip", "link", "set", dev, "up")


def reset_cold() -> None:
    for dev in (BRIDGE, FEED):
        subprocess.run(["ip", "link", "del", dev], stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root and 802.1Q (run it with `make bench`)")

    sys.path.insert(0, os.path.join(HERE, "..", "..", "src"))
    from virtvlan.cli import install

    work = tempfile.mkdtemp(prefix="vv-bench-")
    try:
        enter_namespace()
        install.install(os.path.join(work, "hooks"), apparmor_dir=os.path.join(work, "aa"))
        hook = os.path.join(work, "hooks", "qemu.d", "virt-vlan")
        bash_hook = os.path.join(work, "reference.sh")
        with open(bash_hook, "w") as handle:
            handle.write(BASH_REFERENCE)
        os.chmod(bash_hook, 0o755)
        conf = os.path.join(work, "virt-vlan.conf")
        with open(conf, "w") as handle:
            handle.write("[uplink %s]\nallowed-vlans = 5\n" % UPLINK)
        env = dict(os.environ, VIRT_VLAN_CONFIG=conf, VIRT_VLAN_RUN_DIR=os.path.join(work, "run"),
                   VIRT_VLAN_LOCK=os.path.join(work, "run", "lock"))

        def detach_tap() -> None:
            sh("ip", "link", "set", TAP, "nomaster")

        def attach_tap(bridge: str) -> None:
            sh("ip", "link", "set", TAP, "master", bridge)

        def lifecycle(argv0: str) -> Callable[[], float]:
            def one() -> float:
                total = 0.0
                for op, sub in LIFECYCLE:
                    if op == "start":
                        attach_tap(BRIDGE)  # libvirt: tap onto <source bridge>
                    total += timed([argv0, "bench", op, sub, "-"], DOMAIN, env)
                    if op == "stopped":
                        detach_tap()  # libvirt: the tap is gone
                return total
            return one

        def start_moving(argv0: str) -> Callable[[], float]:
            def one() -> float:
                attach_tap(PARK)  # <source bridge> named another bridge
                took = timed([argv0, "bench", "start", "begin", "-"], DOMAIN, env)
                detach_tap()
                return took
            return one

        results = {}
        results["bare"] = median_ms("bare", args.runs, lambda: timed(
            [sys.executable, "-c", "pass"], b"", env))
        results["untagged"] = median_ms("untagged", args.runs, lambda: timed(
            [hook, "plain", "prepare", "begin", "-"], UNTAGGED, env))
        results["untagged-all-ops"] = median_ms("untagged-all-ops", args.runs, lambda: sum(
            timed([hook, "plain", op, sub, "-"], UNTAGGED, env) for op, sub in LIFECYCLE))

        # Cold: nothing exists; prepare creates feed + bridge.
        results["cold-prepare"] = median_ms("cold-prepare", args.runs, lambda: timed(
            [hook, "bench", "prepare", "begin", "-"], DOMAIN, env),
            lambda: (reset_cold(), shutil.rmtree(os.path.join(work, "run"), True)))
        results["bash-cold-prepare"] = median_ms("bash-cold-prepare", args.runs, lambda: timed(
            [bash_hook, "bench", "prepare", "begin", "-"], DOMAIN, env), reset_cold)

        # Warm: bridge and feed exist and another guest (OTHER) keeps them.
        timed([hook, "bench", "prepare", "begin", "-"], DOMAIN, env)
        sh("ip", "link", "set", OTHER, "master", BRIDGE)
        results["warm-lifecycle"] = median_ms("warm-lifecycle", args.runs, lifecycle(hook))
        results["bash-warm-lifecycle"] = median_ms("bash-warm-lifecycle", args.runs,
                                                   lifecycle(bash_hook))
        sh("ip", "link", "add", PARK, "type", "bridge")
        results["start-moving"] = median_ms("start-moving", args.runs, start_moving(hook))
        results["bash-start-moving"] = median_ms("bash-start-moving", args.runs,
                                                 start_moving(bash_hook))
    finally:
        subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)

    ratio_untagged = results["untagged"] / results["bare"]
    ratio_warm = results["warm-lifecycle"] / results["bash-warm-lifecycle"]
    print("hook latency, medians of %d runs (ms); kernel %s, Python %s, %s"
          % (args.runs, os.uname().release, sys.version.split()[0],
             "inside the test VM" if os.environ.get("VIRT_VLAN_IN_VM") == "1" else "on the host"))
    rows = [("bare interpreter (python -c pass)", results["bare"]),
            ("untagged domain, one hook call", results["untagged"]),
            ("untagged domain, 5 lifecycle calls", results["untagged-all-ops"]),
            ("tagged warm lifecycle (5 calls)", results["warm-lifecycle"]),
            ("bash reference warm lifecycle", results["bash-warm-lifecycle"]),
            ("tagged start moving the tap", results["start-moving"]),
            ("bash reference start moving the tap", results["bash-start-moving"]),
            ("tagged cold prepare", results["cold-prepare"]),
            ("bash reference cold prepare", results["bash-cold-prepare"])]
    for label, value in rows:
        print("  %-38s %8.1f" % (label, value))
    print("untagged / bare = %.2fx (target <= 1.5x: %s)"
          % (ratio_untagged, "met" if ratio_untagged <= 1.5 else "MISSED"))
    print("warm lifecycle / bash reference = %.2fx (target <= 3x: %s)"
          % (ratio_warm, "met" if ratio_warm <= 3 else "MISSED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
