"""Every environment variable virt-vlan reads, and its exit statuses.

The modules that read a variable keep their own constant (a lower layer
cannot import cli/); this table is what virt-vlan(8) prints in ENVIRONMENT,
and a unit test checks that each `os.environ` read under src/ names a
variable listed here and that each variable listed here is read somewhere.
"""

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class EnvVar:
    name: str
    meaning: str  # who reads it and what it changes
    default: str  # what applies when it is unset or empty


ENVIRONMENT: Tuple[EnvVar, ...] = (
    EnvVar("VIRT_VLAN_CONFIG",
           "The host config file, for the CLI, the hooks and the agent; the --config "
           "option wins over it.", "/etc/virt-vlan/virt-vlan.conf"),
    EnvVar("VIRT_VLAN_RUN_DIR",
           "The run-time state directory (reservations, the agent's held heals).",
           "/run/virt-vlan"),
    EnvVar("VIRT_VLAN_LOCK",
           "The host-wide lock file every change takes.", "/run/virt-vlan/lock"),
    EnvVar("VIRT_VLAN_AGENT_SOCKET",
           "The agent's hook socket: where the agent listens and where the hook drop-ins "
           "send their calls.", "/run/virt-vlan/agent.sock"),
    EnvVar("VIRT_VLAN_NO_AGENT",
           "1: the hook drop-ins do the work themselves instead of asking the agent.",
           "unset (ask the agent when its socket exists)"),
    EnvVar("VIRT_VLAN_SERVE_HOOKS",
           "0: the agent does not serve the hooks' calls (no hook socket); they run in "
           "the hook process.", "1"),
    EnvVar("VIRT_VLAN_HEAL_LIMIT",
           "The agent's rebuild limit LIMIT/WINDOW/HOLD: more than LIMIT deletions of one "
           "device it rebuilds within WINDOW seconds put that device on hold (not rebuilt) "
           "for HOLD seconds.",
           "5/60/300"),
    EnvVar("VIRT_VLAN_MODEL_CHECK",
           "Debug aid: 1 makes the agent compare its live host model with a full read "
           "of the host at every call it serves, log each difference and read the host "
           "again (it then costs that full read; without it, the check runs at each "
           "periodic reconcile only).", "unset"),
    EnvVar("VIRT_VLAN_FAIL_AT",
           "Test aid: N fails a change before its action N (0-based), to exercise the "
           "rollback. Never set it on a host.", "unset"),
    EnvVar("VIRT_VLAN_BENCH_TIMES",
           "Bench aid (make bench): a file each tagged hook call appends its time points "
           "to, one line per call (a served call asks the agent for its own). Never set it "
           "on a host.", "unset (no time points)"),
    EnvVar("NOTIFY_SOCKET",
           "Set by systemd: the agent reports READY=1, its status and STOPPING=1 there.",
           "unset (no notifications)"),
    EnvVar("WATCHDOG_USEC",
           "Set by systemd (WatchdogSec=): the agent pings the watchdog every half of it.",
           "unset (no watchdog)"),
    EnvVar("WATCHDOG_PID",
           "Set by systemd: the watchdog applies only when it names the agent's process.",
           "unset (the watchdog is the agent's)"),
    EnvVar("JOURNAL_STREAM",
           "Set by systemd when stderr is the journal: the agent then logs through syslog "
           "only, not also to stderr.", "unset (also log to stderr)"),
)

# (status, meaning) per program, from cli/commands.py, cli/check.py and the
# hook contract in hook/handler.py.
EXIT_STATUS: Tuple[Tuple[str, Tuple[Tuple[str, str], ...]], ...] = (
    ("virt-vlan", (
        ("0", "Success."),
        ("1", "Refused or failed: one line on stderr names the object, the value and "
              "the fix (bad config or input, kernel refusal, lock timeout)."),
        ("2", "Command-line usage error."),
        ("130", "Interrupted (Ctrl-C)."),
    )),
    ("virt-vlan check", (
        ("0", "The host's VLAN wiring is as the config and the running guests want."),
        ("1", "Warnings only (or check could not run: one line on stderr says why)."),
        ("2", "Problems found (or a usage error)."),
    )),
    ("hook drop-ins", (
        ("0", "Done, or nothing to do (an untagged domain, an operation libvirt does "
              "not wait for)."),
        ("1", "Refused: libvirt shows the one-line reason in the error of virsh start or "
              "virsh net-start, and the guest or network does not start."),
    )),
)
