#!/usr/bin/env python3
"""Hook figures at scale in the test VM (802.1Q): prints, asserts nothing.

The figures of native.py (paths beside a bash hook, scale, storm, peak
memory) on the real access path: a VLAN device vvup0.5 on the uplink feeds
the per-VLAN bridge br05, an access guest's tap joins br05, and a cold
`prepare` creates both. Scale adds `--bridges` access bridges, each with its
feed (marked as virt-vlan marks its own), and `--taps` taps on them. The
VM's CPU is emulated (TCG), where a process start costs 10-100x a real
host's, so the defaults are smaller than native.py's (the output says the
size): 250 bridges, 500 taps, a storm of 10 guests.

Run as root in the VM: `make bench`, or
`tests/vm/run .venv/bin/python tests/bench/at_scale.py`.
"""

import argparse
import os
import subprocess
import sys
from typing import Callable, Dict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import native  # noqa: E402

UPLINK, TAP, OTHER, PARK = native.UPLINK, native.TAP, "vvtap1", native.PARK
BRIDGE, FEED = "br05", UPLINK + ".5"
FIRST = native.SCALE_FIRST_VID

CONFIG = """[uplink %(uplink)s]
allowed-vlans = 5,%(first)d-%(last)d
"""

# The bash reference for one access guest on VLAN 5 (feed and bridge at
# prepare).
BASH_REFERENCE = harness.bash_reference(BRIDGE, harness.ACCESS_PREPARE, feed=FEED,
                                        uplink=UPLINK)


class VmBench(native.Bench):
    where = "in the test VM (TCG), access wiring with 802.1Q"
    netns = "vvscale"
    target = BRIDGE
    spec = "mode='access' vlan='5'"
    bash_text = BASH_REFERENCE
    paths = [("tagged start, changes nothing", "start-nochange"),
             ("tagged start, moves the tap onto br05", "start-moving"),
             ("tagged cold prepare (creates feed + br05)", "cold-prepare")]

    def setup_host(self) -> None:
        self.batch(["link set lo up",
                    "link add %s type veth peer name %sp" % (UPLINK, UPLINK),
                    "link set %s up" % UPLINK, "link set %sp up" % UPLINK,
                    "link add %s type bridge stp_state 0 forward_delay 0" % PARK,
                    "link set %s up" % PARK]
                   + ["link add %s type veth peer name %sp" % (tap, tap) for tap in (TAP, OTHER)]
                   + ["link set %sp up" % tap for tap in (TAP, OTHER)])
        self.warm()

    @classmethod
    def config_text(cls, args: argparse.Namespace) -> str:
        return CONFIG % {"uplink": UPLINK, "first": FIRST,
                         "last": FIRST + max(args.bridges, 1) - 1}

    def warm(self) -> None:
        """br05 and its feed exist, and another guest (OTHER) keeps them."""
        self.call(self.hook, "prepare")
        self.ip("link", "set", OTHER, "master", BRIDGE, "up")

    def reset_cold(self) -> None:
        for dev in (BRIDGE, FEED):
            subprocess.run(harness.ip_args(self.ns) + ["link", "del", dev],
                           stderr=subprocess.DEVNULL)
        harness.cleanup(self.run_dir)

    def path_calls(self) -> Dict[str, Callable[[str], Callable[[], float]]]:
        return {"start-nochange": self.start_nochange, "start-moving": self.start_moving,
                "cold-prepare": self.cold}

    def after_paths(self) -> None:
        self.reset_cold()
        self.warm()

    def cold(self, argv0: str) -> Callable[[], float]:
        def one() -> float:
            self.reset_cold()
            took = self.call(argv0, "prepare")
            if self.links().get(FEED, {}).get("master") != BRIDGE:
                raise harness.Failed("bench: %s did not make %s a port of %s"
                                     % (argv0, FEED, BRIDGE))
            return took
        return one

    def populate(self) -> None:
        lines = []
        for n in range(self.args.bridges):
            vid = FIRST + n
            bridge, feed = "br0%d" % vid, "%s.%d" % (UPLINK, vid)
            lines += ["link add link %s name %s type vlan id %d" % (UPLINK, feed, vid),
                      "link add %s type bridge stp_state 0 forward_delay 0" % bridge]
            lines += ["link set dev %s alias %s" % (dev, harness.MANAGED_ALIAS)
                      for dev in (feed, bridge)]
            lines += ["link set %s master %s up" % (feed, bridge), "link set %s up" % bridge]
        for n in range(self.args.taps):
            lines += ["tuntap add dev vnet%d mode tap" % (n + 100),
                      "link set vnet%d master br0%d" % (
                          n + 100, FIRST + n % max(self.args.bridges, 1))]
        self.batch(lines)


if __name__ == "__main__":
    sys.exit(native.main(VmBench, storm=10, bridges=250, taps=500))
