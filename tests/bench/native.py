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

Figures (each a median; ratios are within this run). The variants of a
figure (hook and bash, empty and busy namespace) are measured interleaved,
call by call, so that the load of a shared machine falls on them alike.
- paths: untagged domain; tagged `start` that changes nothing; tagged
  `start` that moves the tap onto br0; a `prepare` that makes the uplink
  a port of br0 (a cold prepare that creates br0 needs VLAN filtering: a
  trunk bridge virt-vlan creates filters; it is measured in the VM);
- scale: the tagged calls again in a second namespace with 1000 virt-vlan
  bridges and 2000 taps, and what one snapshot read (rtnl.read_snapshot)
  costs in each (goal: calls at most 1.5x the empty namespace);
- storm: 200 guests' prepare + start hook processes launched together
  (a host booting with libvirt autostarting its guests; goals: served,
  at most 1.2x the same 200 guests one after another; alone, none fails
  on the lock), all wired, the longest lock wait (from an strace of
  flock(2) in a second storm);
- where the time goes: each tagged path again, its time points recorded
  ($VIRT_VLAN_BENCH_TIMES, host/phases.py), as a table of phases (drop-in
  interpreter start, request, agent queue, lock wait, snapshot read, plan,
  apply, reply, ...): medians per phase, in both namespaces;
- peak memory (ru_maxrss) of one tagged hook process (goal < 40 MiB
  alone, < 15 MiB served) and of each agent (VmHWM; goal < 80 MiB with
  1000 bridges and 2000 taps).

`--with-agent CMD` also runs every figure with CMD serving the hooks: one
agent in each namespace (an agent serves the namespace it runs in), each
waited for until its socket exists; without it the hook works alone
(VIRT_VLAN_NO_AGENT=1).
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
from harness import domain_xml, ip_batch, mac_of, sh, timed  # noqa: E402

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
    exec` also mounts its /sys), with a second one, `name`-scale, beside
    it; delete both after."""
    names = (name, name + "-scale")
    for each in names:
        subprocess.run(["ip", "netns", "del", each], stderr=subprocess.DEVNULL)
        sh("ip", "netns", "add", each)
    try:
        return subprocess.run(["ip", "netns", "exec", name, sys.executable] + sys.argv,
                              env=dict(os.environ, **{INNER: name})).returncode
    finally:
        for each in names:
            subprocess.run(["ip", "netns", "del", each], stderr=subprocess.DEVNULL)


def base_host() -> List[str]:
    """lo, the uplink (a veth) on the admin's trunk bridge br0, a parking
    bridge (where <source bridge> put a tap the hook must move) and a tap."""
    return ["link set lo up",
            "link add %s type veth peer name %sp" % (UPLINK, UPLINK),
            "link set %sp up" % UPLINK,
            "link add %s type bridge stp_state 0 forward_delay 0" % BRIDGE,
            "link set %s up" % BRIDGE,
            "link set %s master %s up" % (UPLINK, BRIDGE),
            "link add %s type bridge stp_state 0 forward_delay 0" % PARK,
            "link set %s up" % PARK,
            "link add %s type veth peer name %sp" % (TAP, TAP),
            "link set %sp up" % TAP]


def populate(bridges: int, taps: int) -> List[str]:
    """`bridges` access bridges marked as virt-vlan marks its own (ifalias),
    `taps` guest taps (tuntap, as libvirt's) spread over them."""
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
    return lines


def snapshot_s(netns: Optional[str]) -> float:
    """Seconds of one rtnl.read_snapshot(): the read every tagged hook call
    makes under the lock."""
    from virtvlan.host import rtnl

    start = time.perf_counter()
    rtnl.read_snapshot(netns)
    return time.perf_counter() - start


class Bench:
    """The figures on one topology in one namespace (`ns`: None for the
    one this process runs in). This one: the host kernel's, an admin's
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
                 env: Dict[str, str], ns: Optional[str] = None) -> None:
        self.args, self.work, self.hook, self.bash, self.ns = args, work, hook, bash, ns
        # Each namespace its own run directory (reservations, lock).
        self.run_dir = os.path.join(work, "run-" + (ns or "here"))
        self.env = dict(env, VIRT_VLAN_RUN_DIR=self.run_dir,
                        VIRT_VLAN_LOCK=os.path.join(self.run_dir, "lock"))
        self.xml = domain_xml("bench", 1, mac_of(1), TAP, PARK, self.spec)
        # While set (breakdowns()): call() records the phases of each call.
        self.times: Optional[str] = None
        self.last_phases: Dict[str, float] = {}
        self.phases: Dict[str, Dict[str, float]] = {}  # path key -> median ms per phase
        self.setup_host()

    def ip(self, *args: str) -> None:
        sh(*harness.ip_args(self.ns), *args)

    def batch(self, lines: List[str]) -> None:
        ip_batch(lines, self.ns)

    def links(self) -> Dict[str, dict]:
        return harness.links(self.ns)

    def setup_host(self) -> None:
        self.batch(base_host())

    @classmethod
    def config_text(cls, args: argparse.Namespace) -> str:
        return CONFIG % {"uplink": UPLINK, "bridge": BRIDGE, "first": SCALE_FIRST_VID,
                         "last": SCALE_FIRST_VID + max(args.bridges, 1) - 1}

    def populate(self) -> None:
        self.batch(populate(self.args.bridges, self.args.taps))

    def call(self, argv0: str, op: str) -> float:
        argv = [argv0, "bench", op, "begin", "-"]
        if self.times is None:
            return timed(argv, self.xml, self.env, self.ns)
        self.last_phases = harness.breakdown(argv, self.xml, self.env, self.times, self.ns)
        return self.last_phases["total"]

    def breakdowns(self, runs: int) -> None:
        """Each tagged path `runs` times more, its phases recorded: the
        medians go to self.phases (interleaved, as medians_ms does)."""
        self.times = os.path.join(self.work, "times-%s" % self.ns)
        samples: Dict[str, List[Dict[str, float]]] = {key: [] for key in self.path_calls()}
        try:
            for _ in range(runs):
                for key, make in self.path_calls().items():
                    make(self.hook)()
                    samples[key].append(self.last_phases)
        finally:
            self.times = None
        self.phases = {key: harness.median_phases_ms(rows) for key, rows in samples.items()}

    # --- the tagged paths: a factory per path gives one call of `argv0`
    # (hook or bash) that resets the host first, untimed.

    def path_calls(self) -> Dict[str, Callable[[str], Callable[[], float]]]:
        return {"start-nochange": self.start_nochange, "start-moving": self.start_moving,
                "prepare-join": self.prepare_join}

    def after_paths(self) -> None:
        """Back to the state the paths started from (nothing to do here)."""

    def start_nochange(self, argv0: str) -> Callable[[], float]:
        def one() -> float:
            self.ip("link", "set", TAP, "master", self.target)  # libvirt: <source bridge>
            return self.call(argv0, "start")
        return one

    def start_moving(self, argv0: str) -> Callable[[], float]:
        def one() -> float:
            self.ip("link", "set", TAP, "master", PARK)  # <source bridge> named another
            took = self.call(argv0, "start")
            if self.links()[TAP].get("master") != self.target:
                raise harness.Failed("bench: %s did not move %s onto %s"
                                     % (argv0, TAP, self.target))
            return took
        return one

    def prepare_join(self, argv0: str) -> Callable[[], float]:
        # A cold prepare that creates br0 is not measurable here: a trunk
        # bridge virt-vlan creates filters VLANs, which this kernel lacks
        # (ENOTSUP). The prepare that changes something here puts the
        # uplink onto the admin's br0.
        def one() -> float:
            self.ip("link", "set", UPLINK, "nomaster")
            harness.cleanup(self.run_dir)  # reservations of earlier calls
            took = self.call(argv0, "prepare")
            if self.links()[UPLINK].get("master") != BRIDGE:
                raise harness.Failed("bench: %s did not put %s on %s" % (argv0, UPLINK, BRIDGE))
            return took
        return one

    def memory(self, r: Dict[str, float]) -> None:
        """Peak RSS of the hook process on the two start paths (largest of
        `runs` calls)."""
        for key, source in (("rss-start-nochange", self.target), ("rss-start-moving", PARK)):
            peak = 0
            for _ in range(self.args.runs):
                self.ip("link", "set", TAP, "master", source)
                peak = max(peak, harness.peak_kib([self.hook, "bench", "start", "begin", "-"],
                                                  self.xml, self.env, self.ns))
            r[key] = harness.mib(peak)
        r["rss-launcher"] = harness.mib(harness.launcher_kib())

    def storm(self, r: Dict[str, float]) -> None:
        """`--storm` guests at once and one after another (see the module doc)."""
        # The storm's threads spawn hooks in this process's namespace.
        assert self.ns in (None, os.environ.get(INNER))
        count = self.args.storm
        taps = ["vvs%d" % n for n in range(count)]
        guests = [(domain_xml("storm%d" % n, 100 + n, mac_of(100 + n), tap, PARK, self.spec),
                   "storm%d" % n) for n, tap in enumerate(taps)]
        self.batch(["link add %s type veth peer name %sp" % (tap, tap) for tap in taps]
                   + ["link set %sp up" % tap for tap in taps])

        def park() -> None:
            self.batch(["link set %s master %s" % (tap, PARK) for tap in taps])
            harness.cleanup(self.run_dir)

        def wired(key: str, took: Tuple[float, List[str]]) -> None:
            """Record the time, the failed guests and the taps not wired."""
            now = self.links()
            r[key] = took[0] * 1000
            r[key + "-failed"] = len(took[1])
            r[key + "-timeouts"] = sum("held the lock" in line for line in took[1])
            r[key + "-unwired"] = sum(now[tap].get("master") != self.target
                                      or "UP" not in now[tap]["flags"] for tap in taps)
            for line in took[1][:3]:
                print(line, file=sys.stderr)

        park()
        wired("sequential", harness.storm(guests, self.hook, self.env, False))
        park()
        wired("storm", harness.storm(guests, self.hook, self.env, True))
        park()
        traces = os.path.join(self.work, "traces")
        harness.cleanup(traces)
        os.makedirs(traces)
        wired("storm-traced", harness.storm(guests, self.hook, self.env, True, traces))
        waits, r["lock-gave-up"] = harness.lock_waits(traces)
        r["lock-wait-max"] = max(waits) * 1000 if waits else 0.0
        r["lock-calls"] = len(waits)
        print("bench: storm of %d guests %.0f ms, sequential %.0f ms, longest lock wait %.0f ms"
              % (count, r["storm"], r["sequential"], r["lock-wait-max"]),
              file=sys.stderr, flush=True)
        self.batch(["link del %s" % tap for tap in taps])


# The goals (issue "The agent keeps the host in memory" for the served
# calls, issue "Fast at scale" for the hook alone), by mode.
GOALS = {"hook": {"tagged/bash": 2.0, "scale": 1.5, "rss-hook": 40.0},
         "agent": {"tagged/bash": 1.3, "scale": 1.1, "storm": 1.2, "rss-hook": 15.0,
                   "rss-agent": 80.0}}


def report(bench: "Bench", r: Dict[str, float], mode: str,
           busy: Optional["Bench"] = None) -> None:
    args = bench.args
    goals = GOALS[mode]

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
    print("tagged / bash reference, worst path = %.2fx (goal <= %gx: %s)"
          % (worst, goals["tagged/bash"], verdict(worst, goals["tagged/bash"])))
    if "start-nochange@scale" in r:
        print("scale: %d virt-vlan bridges, %d taps; snapshot read %.1f ms -> %.1f ms (%.2fx)"
              % (args.bridges, args.taps, r["snapshot"], r["snapshot@scale"],
                 ratio("snapshot@scale", "snapshot")))
        for label, key in paths:
            if key + "@scale" in r:
                value = ratio(key + "@scale", key)
                print("  %-44s %6.2fx (goal <= %gx: %s)" % (
                    label + " @scale / empty", value, goals["scale"],
                    verdict(value, goals["scale"])))
    if "storm" in r:
        value = ratio("storm", "sequential")
        lost = r["storm-failed"] + r["storm-unwired"]
        if mode == "agent":
            goal = "goal <= %gx with all wired: %s" % (
                goals["storm"], "MISSED: %d guests failed, %d taps not wired"
                % (r["storm-failed"], r["storm-unwired"]) if lost
                else verdict(value, goals["storm"]))
        else:
            goal = "goal: all wired, none fails on the lock: %s" % (
                "MISSED: %d guests failed (%d on the lock), %d taps not wired"
                % (r["storm-failed"], r["storm-timeouts"], r["storm-unwired"]) if lost
                else "met")
        print("storm: %d guests (prepare + start each) launched together %.0f ms, one after "
              "another %.0f ms: %.2fx (%s)"
              % (args.storm, r["storm"], r["sequential"], value, goal))
        for key, label in (("sequential", "one after another"), ("storm", "together"),
                           ("storm-traced", "together, under strace")):
            print("  %-24s %d guests failed (%d lock timeouts), %d of %d taps not wired"
                  % (label + ":", r[key + "-failed"], r[key + "-timeouts"],
                     r[key + "-unwired"], args.storm))
        print("  longest lock wait %.0f ms over %d calls that tried the lock, %d of them "
              "gave up (the storm under strace -e flock, %.0f ms)"
              % (r["lock-wait-max"], r["lock-calls"], r["lock-gave-up"], r["storm-traced"]))
    for key, label in (("rss-start-nochange", "start, no change"),
                       ("rss-start-moving", "start moving the tap")):
        if key in r:
            print("peak memory of one hook process, %s: %.1f MiB (goal < %g MiB: %s; "
                  "its launcher alone: %.1f MiB)"
                  % (label, r[key], goals["rss-hook"], verdict(r[key], goals["rss-hook"]),
                     r["rss-launcher"]))
    for tag, label in (("", "empty namespace"),
                       ("@scale", "%d bridges, %d taps" % (args.bridges, args.taps))):
        if "rss-agent" + tag in r:
            print("peak memory of the agent (VmHWM), %s: %.1f MiB (goal < %g MiB: %s)"
                  % (label, r["rss-agent" + tag], goals["rss-agent"],
                     verdict(r["rss-agent" + tag], goals["rss-agent"])))
    for tag, label in (("", "empty namespace"),
                       ("@scale", "%d bridges, %d taps" % (args.bridges, args.taps))):
        if "agent-ready" + tag in r:
            print("agent start to READY=1 (its hook socket listens; the libvirt daemons, "
                  "ordered after it, wait this long at boot), %s: %.0f ms"
                  % (label, r["agent-ready" + tag]))
    labels = {key: key.replace("start-", "").replace("prepare-", "prep-") for _l, key in paths}
    for where, each in (("empty namespace", bench), ("%d bridges, %d taps"
                                                      % (args.bridges, args.taps), busy)):
        if each is not None and each.phases:
            harness.print_breakdown(
                "where the time goes (%s, %s), medians of %d calls per phase:"
                % ("hook alone" if mode == "hook" else "served", where, args.breakdown),
                [(labels[key], each.phases[key]) for _l, key in paths if key in each.phases])


def measure(empty: Bench, busy: Optional[Bench]) -> Dict[str, float]:
    """Every figure; `busy` (if any) is the namespace with the scale
    population, measured interleaved with `empty`."""
    args, hook, env = empty.args, empty.hook, empty.env
    r: Dict[str, float] = {}
    r.update(harness.medians_ms(args.runs, {
        "bare": lambda: timed([sys.executable, "-IS", "-c", "pass"], b"", env),
        "untagged": lambda: timed([hook, "plain", "prepare", "begin", "-"],
                                  harness.untagged(empty.xml), env)}))
    where = [("", empty)] + ([("@scale", busy)] if busy else [])
    for key in empty.path_calls():
        ones = {}
        for tag, bench in where:
            make = bench.path_calls()[key]
            ones[key + tag] = make(bench.hook)
            ones["bash-" + key + tag] = make(bench.bash)
        r.update(harness.medians_ms(args.runs, ones))
    if args.breakdown:
        for _tag, bench in where:
            bench.breakdowns(args.breakdown)
    for _tag, bench in where:
        bench.after_paths()
    r.update(harness.medians_ms(args.runs, {
        "snapshot" + tag: (lambda ns=bench.ns: snapshot_s(ns)) for tag, bench in where}))
    if args.storm:
        empty.storm(r)
    empty.memory(r)
    return r


def main(bench_class: type = Bench, storm: int = 200, bridges: int = 1000,
         taps: int = 2000) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--bridges", type=int, default=bridges)
    parser.add_argument("--taps", type=int, default=taps)
    parser.add_argument("--storm", type=int, default=storm, help="guests (0: no storm)")
    parser.add_argument("--mode", choices=("both", "hook", "agent"), default="both",
                        help="measure the hook alone, served (needs --with-agent), or both")
    parser.add_argument("--breakdown", type=int, default=5, metavar="RUNS",
                        help="calls per path whose phases are recorded (0: none)")
    parser.add_argument("--with-agent", metavar="CMD",
                        help="also measure with CMD (started in the namespace) serving hooks")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (a scratch network namespace)")
    if os.environ.get(INNER) != bench_class.netns:
        return reexec_in_namespace(bench_class.netns)

    work = harness.scratch()
    agents: List[harness.Agent] = []
    try:
        hook = harness.install_hook(work)
        bash = harness.write_script(os.path.join(work, "reference.sh"), bench_class.bash_text)
        conf = os.path.join(work, "virt-vlan.conf")
        with open(conf, "w") as handle:
            handle.write(bench_class.config_text(args))
        base = dict(os.environ, VIRT_VLAN_CONFIG=conf)
        # The empty namespace is this process's own, but named like the
        # busy one, so that calls in both are started alike (a child that
        # enters a namespace is forked, not vforked).
        empty = bench_class(args, work, hook, bash, base, bench_class.netns)
        busy = None
        if args.bridges or args.taps:
            busy = bench_class(args, work, hook, bash, base, bench_class.netns + "-scale")
            started = time.perf_counter()
            busy.populate()
            print("bench: %d bridges and %d taps made in %.1f s"
                  % (args.bridges, args.taps, time.perf_counter() - started),
                  file=sys.stderr, flush=True)
        benches = [bench for bench in (empty, busy) if bench is not None]
        # The empty namespace is the one this process runs in (its agent
        # starts here); the busy one's agent is started inside it.
        agents = [harness.Agent(args.with_agent, os.path.join(work, "agent-%s.sock" % bench.ns),
                                None if bench is empty else bench.ns) for bench in benches]
        for mode in [m for m in agents[0].modes() if args.mode in ("both", m)]:
            for bench, agent in zip(benches, agents):
                bench.env = agent.env(bench.env, mode)
            try:
                if mode == "agent":
                    for bench, agent in zip(benches, agents):
                        agent.start(bench.env)
                r = measure(empty, busy)
                if mode == "agent":
                    for tag, agent in zip(("", "@scale"), agents):
                        r["rss-agent" + tag] = agent.peak_mib()
                        if agent.ready_s is not None:
                            r["agent-ready" + tag] = agent.ready_s * 1000
                report(empty, r, mode, busy)
            finally:
                for agent in agents:
                    agent.stop()
    finally:
        for agent in agents:
            agent.stop()
        harness.cleanup(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
