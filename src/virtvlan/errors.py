"""The one exception hierarchy of virt-vlan: each kind says whose fault it is.

    VirtVlanError            anything virt-vlan refuses or fails to do
    +-- InputError           bad domain XML, config file or argument (the admin's)
    +-- Refused              the planner will not do it: unsafe (policy)
    +-- LockTimeout          another virt-vlan process held the host lock
    +-- InternalError        a bug of virt-vlan (planner or program)
    +-- ApplyError           changing the host failed; this run's changes undone
        +-- KernelRefused    the kernel said no (errno name, device, command)
        +-- StaleSnapshot    the host changed under the run (another tool)
        +-- VerifyFailed     the result read back is not what was planned
        +-- ApplyBug         InternalError found while applying (also an ApplyError)

Every message is one line that says what failed, where (the device, file
or guest), why, and the fix, so that it can be shown as-is by virsh, the
CLI and the journal. Exit codes do not depend on the kind: every
VirtVlanError is a refusal (hooks exit 1, the CLI exits 1).
"""

import errno
import os
from typing import Optional, Sequence

# Shown after a message whose fault is ours.
REPORT = "please report this bug with the log lines around it"

# What the admin can do about a kernel refusal, by errno name.
_KERNEL_FIXES = {
    "EPERM": "run virt-vlan as root (it needs CAP_NET_ADMIN)",
    "EACCES": "run virt-vlan as root (it needs CAP_NET_ADMIN)",
    "EOPNOTSUPP": "the kernel lacks the feature; load its module (bridge, 8021q) or "
                  "check the device type",
    "EBUSY": "another program holds the device; see `ip -d link show` and stop it",
    "EEXIST": "a device or entry of that name exists; rename or delete it",
    "EINVAL": "the kernel rejected a value (an MTU above the parent's or a port's, "
              "a reserved VLAN id); fix the config or the device, then retry",
    "ERANGE": "a value is out of the kernel's range (MTU?); fix the config",
    "ENOBUFS": "the kernel ran out of buffers; retry",
    "ENOMEM": "the kernel ran out of memory; retry",
}
_KERNEL_FIX = "see `ip -d link show %s` and the kernel log (`dmesg`), fix the device, then retry"

# Characters of one error line: libvirt copies a hook's line into its error
# and its log, so hostile input quoted in it must not make it megabytes.
LINE_MAX = 500
QUOTE_MAX = 40  # characters of one value quoted from input


def cut(text: str, limit: int = QUOTE_MAX) -> str:
    """`text`, or its start and "..." when longer than `limit` characters:
    for values quoted from input (a VLAN list, a MAC, an uplink name)."""
    return text if len(text) <= limit else text[:max(limit - 3, 0)] + "..."


def one_line(message: object, limit: int = LINE_MAX) -> str:
    """`message` folded onto one line of at most `limit` characters. A longer
    one keeps its start (the object and value) and its end (the fix)."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    tail = limit // 3
    return text[:limit - tail - 5] + " ... " + text[len(text) - tail:]


class VirtVlanError(Exception):
    """Base class: anything virt-vlan refuses or fails to do.

    The message is folded onto one line of at most LINE_MAX characters:
    values quoted from hostile input (an XML attribute with a newline,
    lxml's error text, a megabyte VLAN list) must not break the one-line
    contract that virsh and the journal rely on.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class InputError(VirtVlanError):
    """Bad domain XML, config file or command-line argument. Nothing changed."""


class Refused(VirtVlanError):
    """The planner will not produce the requested state (it would be unsafe)."""


class LockTimeout(VirtVlanError):
    """Another virt-vlan process held the host-wide lock for too long."""


class InternalError(VirtVlanError):
    """A bug of virt-vlan (the planner's, or the program's): not the admin's
    fault, and no fix but a bug report. `wrap` words any unexpected
    exception the same way for the entry points (hook, CLI).

    `report` says what to send along (where the traceback is)."""

    def __init__(self, message: str, report: str = REPORT) -> None:
        super().__init__("internal error: %s; %s" % (message, report))

    @classmethod
    def wrap(cls, err: BaseException, during: str, report: str = REPORT) -> "InternalError":
        """`err` (not a VirtVlanError) raised while doing `during`."""
        return cls("%s failed: %s: %s" % (during, type(err).__name__, err), report)


class ApplyError(VirtVlanError):
    """Changing the host failed part way; what this run changed was undone.

    The message is "DETAIL; ROLLBACK; FIX": what failed where and why, what
    the rollback did (note_rollback adds it once known), and the fix. The
    kinds below say whose fault it was; a plain ApplyError is none of those
    (the test aid's injected failure)."""

    def __init__(self, detail: str, fix: str = "") -> None:
        self.detail = detail
        self.fix = fix
        self.rollback = ""
        super().__init__(self._text())

    def _text(self) -> str:
        return "; ".join(part for part in (self.detail, self.rollback, self.fix) if part)

    def note_rollback(self, summary: str) -> None:
        """Say what the rollback did ('rolled back 2 change(s)')."""
        self.rollback = summary
        VirtVlanError.__init__(self, self._text())


class KernelRefused(ApplyError):
    """The kernel refused a request: names the command, the device and the
    errno by its name (EINVAL, never 22), with the fix for that errno."""

    def __init__(self, action: str, device: str, code: int,
                 text: Optional[str] = None) -> None:
        self.action = action
        self.device = device
        self.code = code
        self.errno_name = errno.errorcode.get(code, "errno %d" % code)
        why = "%s (%s)" % (self.errno_name, text or os.strerror(code))
        fix = _KERNEL_FIXES.get(self.errno_name, _KERNEL_FIX % (device or "..."))
        where = " on %s" % device if device and device not in action.split() else ""
        super().__init__("`%s` failed%s: %s" % (action, where, why), fix)


class StaleSnapshot(ApplyError):
    """The host changed between the snapshot the plan was made from and the
    change (another tool created or deleted a device): nobody's bug."""

    def __init__(self, detail: str,
                 fix: str = "another program changed the host meanwhile; retry") -> None:
        super().__init__(detail, fix)


class VerifyFailed(ApplyError):
    """The links read back after apply differ from the plan's simulation.

    The one-line message names the first `shown` mismatches and how many
    there are; the verification logs every one of them to the journal."""

    shown = 3

    def __init__(self, mismatches: Sequence[str]) -> None:
        self.mismatches = tuple(mismatches)
        count = len(self.mismatches)
        first = "; ".join(self.mismatches[:self.shown])
        more = " (and %d more)" % (count - self.shown) if count > self.shown else ""
        super().__init__(
            "verification after apply failed: %s%s" % (first, more),
            "%d mismatch%s in all, each logged to the journal; another program may have "
            "changed these devices meanwhile: retry, and if it fails again %s"
            % (count, "" if count == 1 else "es", REPORT))


class ApplyBug(InternalError, ApplyError):
    """A bug found while applying (an action that does not fit its own
    snapshot, no handler for an action): an InternalError that, like every
    failure after apply began, is also an ApplyError."""

    def __init__(self, message: str) -> None:
        ApplyError.__init__(self, "internal error: %s" % message, REPORT)
