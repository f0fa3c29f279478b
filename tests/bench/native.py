#!/usr/bin/env python3
"""Hook figures on this machine's own CPU: prints medians, asserts nothing.

Runs as root in a scratch network namespace (created here, deleted at the
end), on any kernel with bridges and veth: no 802.1Q or bridge VLAN
filtering needed, so only the paths such a kernel supports are measured:
an admin-made trunk bridge br0 without VLAN filtering (served as it is, with
a warning: trunk-filtering = no), a trunk guest's tap on it. The hook is the
installed drop-in, called as libvirt calls it (argv, domain XML on stdin),
one process per call; beside each path a bash hook does the same work with
`ip` (the reference of issue "Fast at scale").

Figures (each a median; ratios are within this run):
- paths: untagged domain; tagged `start` that changes nothing; tagged
  `start` that moves the tap onto br0; a `prepare` that makes the uplink
  a port of br0 (a cold prepare that creates br0 needs VLAN filtering: a
  trunk bridge virt-vlan creates filters; it is measured in the VM);
- scale: the tagged calls again with 1000 virt-vlan bridges and 2000 taps
  in the namespace, and what one snapshot read (rtnl.read_snapshot) costs
  in each (goal: calls at most 1.5x the empty namespace);
- storm: 50 guests' prepare + start hook processes launched together
  (goal: at most 1.5x the same 50 guests one after another), all wired,
  the longest lock wait (from an strace of flock(2) in a second storm);
- peak memory (ru_maxrss) of one tagged hook process (goal < 40 MiB).

`--with-agent CMD` also runs every figure with CMD serving the hooks (it
is started in the namespace and waited for until its socket exists);
without it the hook works alone (VIRT_VLAN_NO_AGENT=1).
"""

import argparse
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "src"))

import harness  # noqa: E402  (beside this file)
from harness import domain_xml, ip_batch, mac_of, median_ms, run_hook, sh, timed  # noqa: E402

NS = "vvnative"
INNER = "VIRT_VLAN_BENCH_NS"  # set in the re-executed copy inside the namespace
UPLINK, BRIDGE, PARK, TAP = "vvup0", "br0", "vvpark", "vvtap0"
VLANS = "5,7"
SCALE_FIRST_VID = 2001  # the scale bridges are access bridges br0<vid> of the config

CONFIG = """[uplink %(uplink)s]
wiring = trunk
trunk-bridge = %(bridge)s
trunk-filtering = no
allowed-vlans = 5,7,%(first)d-%(last)d
"""

# The bash reference for one trunk guest on an admin's bridge: prepare
# makes sure the bridge exists with the uplink on it.
BASH_REFERENCE = harness.bash_reference(BRIDGE, r"""    ip link show dev %(bridge)s >/dev/null 2>&1 || {
        ip link add name %(bridge)s type bridge stp_state 0 forward_delay 0 &&
        ip link set dev %(bridge)s up; } || exit 1
    ip link set dev %(uplink)s master %(bridge)s up""", uplink=UPLINK)


def reexec_in_namespace(name: str) -> int:
    """Run this script again inside a fresh namespace `name` (`ip netns
    exec` also mounts its /sys); delete the namespace after."""
    subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
    sh("ip", "netns", "add", name)
    try:
        return subprocess.run(["ip", "netns", "exec", name, sys.executable] + sys.argv,
                              env=dict(os.environ, **{INNER: name})).returncode
    finally:
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)


def base_host() -> None:
    """lo, the uplink (a veth) on the admin's trunk bridge br0, a parking
    bridge (where <source bridge> put a tap the hook must move) and a tap."""
    ip_batch(["link set lo up",
              "link add %s type veth peer name %sp" % (UPLINK, UPLINK),
              "link set %sp up" % UPLINK,
              "link add %s type bridge stp_state 0 forward_delay 0" % BRIDGE,
              "link set %s up" % BRIDGE,
              "link set %s master %s up" % (UPLINK, BRIDGE),
              "link add %s type bridge stp_state 0 forward_delay 0" % PARK,
              "link set %s up" % PARK,
              "link add %s type veth peer name %sp" % (TAP, TAP),
              "link set %sp up" % TAP])


def populate(bridges: int, taps: int) -> None:
    """`bridges` access bridges marked as virt-vlan marks its own (ifalias),
    each with taps/bridges guest taps (tuntap, as libvirt's), in one batch."""
    lines = []
    for n in range(bridges):
        name = "br0%d" % (SCALE_FIRST_VID + n)
        lines += ["link add %s type bridge stp_state 0 forward_delay 0" % name,
                  "link set dev %s alias %s" % (name, harness.MANAGED_ALIAS),
                  "link set %s up" % name]
    for n in range(taps):
        tap = "vnet%d" % (n + 100)
        lines += ["tuntap add dev %s mode tap" % tap,
                  "link set %s master br0%d" % (tap, SCALE_FIRST_VID + n % max(bridges, 1))]
    ip_batch(lines)


def snapshot_ms(runs: int) -> float:
    """Median of rtnl.read_snapshot() in this process: the read every
    tagged hook call makes under the lock."""
    from virtvlan import rtnl

    def one() -> float:
        start = time.perf_counter()
        rtnl.read_snapshot()
        return time.perf_counter() - start
    return median_ms("snapshot read", runs, one)


class Bench:
    """The figures on one topology. This one: the host kernel's, an admin's
    trunk bridge br0 (no VLAN filtering) and trunk guests on it;
    at_scale.py subclasses it for the VM's access wiring."""

    where = "native, in a scratch network namespace"
    netns = NS
    target = BRIDGE  # where a guest's tap must end
    spec = "mode='trunk' vlans='%s'" % VLANS
    bash_text = BASH_REFERENCE
    # (label, result key) of the tagged paths, for the report.
    paths = [("tagged start, changes nothing", "start-nochange"),
             ("tagged start, moves the tap onto br0", "start-moving"),
             ("tagged prepare, uplink joins br0", "prepare-join")]

    def __init__(self, args: argparse.Namespace, work: str, hook: str, bash: str,
                 env: Dict[str, str]) -> None:
        self.args, self.work, self.hook, self.bash, self.env = args, work, hook, bash, env
        self.xml = domain_xml("bench", 1, mac_of(1), TAP, PARK, self.spec)
        self.results: Dict[str, float] = {}

    @classmethod
    def setup_host(cls) -> None:
        base_host()

    @classmethod
    def config_text(cls, args: argparse.Namespace) -> str:
        return CONFIG % {"uplink": UPLINK, "bridge": BRIDGE, "first": SCALE_FIRST_VID,
                         "last": SCALE_FIRST_VID + max(args.bridges, 1) - 1}

    def populate(self) -> None:
        populate(self.args.bridges, self.args.taps)

    def depopulate(self) -> None:
        ip_batch(["link del vnet%d" % (n + 100) for n in range(self.args.taps)]
                 + ["link del br0%d" % (SCALE_FIRST_VID + n) for n in range(self.args.bridges)])

    def put(self, key: str, label: str, one: Callable[[], float],
            between: Callable[[], None] = lambda: None, runs: Optional[int] = None) -> float:
        self.results[key] = median_ms(label, runs or self.args.runs, one, between)
        return self.results[key]

    def call(self, argv0: str, op: str, xml: Optional[bytes] = None) -> float:
        return timed([argv0, "bench", op, "begin", "-"], xml or self.xml, self.env)

    def start_nochange(self, argv0: str) -> Callable[[], float]:
        def one() -> float:
            sh("ip", "link", "set", TAP, "master", self.target)  # libvirt: <source bridge>
            return self.call(argv0, "start")
        return one

    def start_moving(self, argv0: str) -> Callable[[], float]:
        def one() -> float:
            sh("ip", "link", "set", TAP, "master", PARK)  # <source bridge> named another
            took = self.call(argv0, "start")
            if harness.links()[TAP].get("master") != self.target:
                raise harness.Failed("bench: %s did not move %s onto %s"
                                     % (argv0, TAP, self.target))
            return took
        return one

    def tagged(self, tag: str) -> None:
        """The tagged paths, hook and bash reference, keys suffixed `tag`."""
        self.put("start-nochange" + tag, "start, no change" + tag,
                 self.start_nochange(self.hook))
        self.put("bash-start-nochange" + tag, "bash start, no change" + tag,
                 self.start_nochange(self.bash))
        self.put("start-moving" + tag, "start moving the tap" + tag, self.start_moving(self.hook))
        self.put("bash-start-moving" + tag, "bash start moving the tap" + tag,
                 self.start_moving(self.bash))
        self.prepare_path(tag)

    def prepare_path(self, tag: str) -> None:
        # A cold prepare that creates br0 is not measurable here: a trunk
        # bridge virt-vlan creates filters VLANs, which this kernel lacks
        # (ENOTSUP). The prepare that changes something here puts the
        # uplink onto the admin's br0.
        self.put("prepare-join" + tag, "prepare, uplink joins br0" + tag,
                 self.prepare_join(self.hook))
        self.put("bash-prepare-join" + tag, "bash prepare, uplink joins br0" + tag,
                 self.prepare_join(self.bash))

    def prepare_join(self, argv0: str) -> Callable[[], float]:
        def one() -> float:
            sh("ip", "link", "set", UPLINK, "nomaster")
            harness.cleanup(os.path.join(self.work, "run"))  # reservations of earlier calls
            took = self.call(argv0, "prepare")
            if harness.links()[UPLINK].get("master") != BRIDGE:
                raise harness.Failed("bench: %s did not put %s on %s" % (argv0, UPLINK, BRIDGE))
            return took
        return one

    def memory(self) -> None:
        """Peak RSS of the hook process on the two start paths (largest of
        `runs` calls)."""
        for key, prepare in (("rss-start-nochange", lambda: sh(
                "ip", "link", "set", TAP, "master", self.target)),
                             ("rss-start-moving", lambda: sh(
                                 "ip", "link", "set", TAP, "master", PARK))):
            peak = 0
            for _ in range(self.args.runs):
                prepare()
                peak = max(peak, run_hook([self.hook, "bench", "start", "begin", "-"],
                                          self.xml, self.env)[1])
            self.results[key] = harness.mib(peak)

    def storm(self) -> None:
        count = self.args.storm
        guests = []
        lines = []
        for n in range(count):
            tap = "vvs%d" % n
            guests.append((domain_xml("storm%d" % n, 100 + n, mac_of(100 + n), tap, PARK,
                                      self.spec), "storm%d" % n))
            lines += ["link add %s type veth peer name %sp" % (tap, tap), "link set %sp up" % tap]
        ip_batch(lines)
        taps = ["vvs%d" % n for n in range(count)]

        def park() -> None:
            ip_batch(["link set %s master %s" % (tap, PARK) for tap in taps])
            harness.cleanup(os.path.join(self.work, "run"))

        def wired(key: str, took: Tuple[float, List[str]]) -> None:
            """Record the time, the failed guests and the taps not wired."""
            now = harness.links()
            r[key] = took[0] * 1000
            r[key + "-failed"] = len(took[1])
            r[key + "-timeouts"] = sum("held the lock" in line for line in took[1])
            r[key + "-unwired"] = sum(now[tap].get("master") != self.target
                                      or "UP" not in now[tap]["flags"] for tap in taps)
            for line in took[1][:3]:
                print(line, file=sys.stderr)

        r = self.results
        park()
        wired("sequential", harness.storm(guests, self.hook, self.env, False))
        park()
        wired("storm", harness.storm(guests, self.hook, self.env, True))
        park()
        traces = os.path.join(self.work, "traces")
        harness.cleanup(traces)
        os.makedirs(traces)
        wired("storm-traced", harness.storm(guests, self.hook, self.env, True, traces))
        waits = harness.lock_waits(traces)
        r["lock-wait-max"] = max(waits) * 1000 if waits else 0.0
        r["lock-calls"] = len(waits)
        print("bench: storm of %d guests %.0f ms, sequential %.0f ms, longest lock wait %.0f ms"
              % (count, r["storm"], r["sequential"], r["lock-wait-max"]),
              file=sys.stderr, flush=True)
        ip_batch(["link del %s" % tap for tap in taps])


def report(bench: Bench, mode: str) -> None:
    r, args = bench.results, bench.args

    def ratio(a: str, b: str) -> float:
        return r[a] / r[b]

    def verdict(value: float, goal: float) -> str:
        return "met" if value <= goal else "MISSED by %.0f%%" % ((value / goal - 1) * 100)

    print("hook figures %s (%s), medians of %d runs (ms); kernel %s, Python %s, %d CPUs, "
          "load average %.1f at the end" % (
              bench.where, "hook alone" if mode == "hook" else "with the agent", args.runs,
              os.uname().release, sys.version.split()[0], os.cpu_count() or 0,
              os.getloadavg()[0]))
    print("  %-44s %9s %9s %7s" % ("path", "hook", "bash", "ratio"))
    print("  %-44s %9.1f %9s %7s" % ("bare interpreter (python -IS -c pass)", r["bare"], "", ""))
    print("  %-44s %9.1f %9s %7s" % ("untagged domain", r["untagged"], "", ""))
    paths = bench.paths
    for label, key in paths:
        for tag, suffix in (("", ""), (" @scale", "@scale")):
            if key + suffix in r:
                print("  %-44s %9.1f %9.1f %6.2fx" % (
                    label + tag, r[key + suffix], r["bash-" + key + suffix],
                    ratio(key + suffix, "bash-" + key + suffix)))
    print("untagged / bare = %.2fx" % ratio("untagged", "bare"))
    worst = max(ratio(key, "bash-" + key) for _label, key in paths if key in r)
    print("tagged / bash reference, worst path = %.2fx (goal <= 2x: %s)"
          % (worst, verdict(worst, 2)))
    if "start-nochange@scale" in r:
        print("scale: %d virt-vlan bridges, %d taps; snapshot read %.1f ms -> %.1f ms (%.2fx)"
              % (args.bridges, args.taps, r["snapshot"], r["snapshot@scale"],
                 ratio("snapshot@scale", "snapshot")))
        for label, key in paths:
            if key + "@scale" in r:
                value = ratio(key + "@scale", key)
                print("  %-44s %6.2fx (goal <= 1.5x: %s)" % (
                    label + " @scale / empty", value, verdict(value, 1.5)))
    if "storm" in r:
        value = ratio("storm", "sequential")
        lost = r["storm-failed"] + r["storm-unwired"]
        print("storm: %d guests (prepare + start each) launched together %.0f ms, one after "
              "another %.0f ms: %.2fx (goal <= 1.5x with all wired: %s)"
              % (args.storm, r["storm"], r["sequential"], value,
                 "MISSED: %d guests failed or not wired" % r["storm-failed"] if lost
                 else verdict(value, 1.5)))
        for key, label in (("sequential", "one after another"), ("storm", "together"),
                           ("storm-traced", "together, under strace")):
            print("  %-24s %d guests failed (%d lock timeouts), %d of %d taps not wired"
                  % (label + ":", r[key + "-failed"], r[key + "-timeouts"],
                     r[key + "-unwired"], args.storm))
        print("  longest lock wait %.0f ms over %d locked calls (the storm under "
              "strace -e flock, %.0f ms)" % (r["lock-wait-max"], r["lock-calls"],
                                            r["storm-traced"]))
    for key, label in (("rss-start-nochange", "start, no change"),
                       ("rss-start-moving", "start moving the tap")):
        if key in r:
            print("peak memory of one hook process, %s: %.1f MiB (goal < 40 MiB: %s)"
                  % (label, r[key], verdict(r[key], 40)))


def measure(bench: Bench) -> Bench:
    r, args, hook, env = bench.results, bench.args, bench.hook, bench.env
    bench.put("bare", "bare interpreter", lambda: timed([sys.executable, "-IS", "-c", "pass"],
                                                         b"", env))
    bench.put("untagged", "untagged", lambda: timed(
        [hook, "plain", "prepare", "begin", "-"], harness.untagged(bench.xml), env))
    bench.tagged("")
    r["snapshot"] = snapshot_ms(args.runs)
    if args.storm:
        bench.storm()
    bench.memory()
    if args.bridges or args.taps:
        started = time.perf_counter()
        bench.populate()
        print("bench: %d bridges and %d taps made in %.1f s" % (
            args.bridges, args.taps, time.perf_counter() - started), file=sys.stderr, flush=True)
        bench.tagged("@scale")
        r["snapshot@scale"] = snapshot_ms(args.runs)
        bench.depopulate()
    return bench


def main(bench_class: type = Bench, storm: int = 50, bridges: int = 1000,
         taps: int = 2000) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--bridges", type=int, default=bridges)
    parser.add_argument("--taps", type=int, default=taps)
    parser.add_argument("--storm", type=int, default=storm, help="guests (0: no storm)")
    parser.add_argument("--with-agent", metavar="CMD",
                        help="also measure with CMD (started in the namespace) serving hooks")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (a scratch network namespace)")
    if os.environ.get(INNER) != bench_class.netns:
        return reexec_in_namespace(bench_class.netns)

    work = harness.scratch()
    agent = harness.Agent(args.with_agent, work)
    try:
        bench_class.setup_host()
        hook = harness.install_hook(work)
        bash = harness.write_script(os.path.join(work, "reference.sh"), bench_class.bash_text)
        conf = os.path.join(work, "virt-vlan.conf")
        with open(conf, "w") as handle:
            handle.write(bench_class.config_text(args))
        base = dict(os.environ, VIRT_VLAN_CONFIG=conf,
                    VIRT_VLAN_RUN_DIR=os.path.join(work, "run"),
                    VIRT_VLAN_LOCK=os.path.join(work, "run", "lock"))
        for mode in agent.modes():
            env = agent.env(base, mode)
            if mode == "agent":
                agent.start(env)
            try:
                report(measure(bench_class(args, work, hook, bash, env)), mode)
            finally:
                agent.stop()
    finally:
        agent.stop()
        harness.cleanup(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
