"""Install and remove the libvirt hook drop-ins (libvirt 6.5+ `<driver>.d/`).

libvirt runs `<hooks>/qemu` and then every executable in `<hooks>/qemu.d/`
in name order, each one's output feeding the next (empty output = XML
unchanged). So a drop-in never has to touch an admin's monolithic `qemu`
script, and we never overwrite it. libvirtd scans for hooks only when it
starts: after installing, it must be restarted.
"""

import os
import subprocess
import sys
from typing import List, Optional, Sequence

from virtvlan.errors import InputError

DROPIN_NAME = "virt-vlan"
DRIVERS = ("qemu", "network")
MARKER = "virt-vlan libvirt hook drop-in"
APPARMOR_LOCAL = "local/usr.sbin.libvirtd"
APPARMOR_BEGIN = "# BEGIN virt-vlan (managed by virt-vlan install-hooks)"
APPARMOR_END = "# END virt-vlan"
UNIT_NAME = "virt-vlan-agent.service"
UNIT_DIR = "/etc/systemd/system"
# sd_booted(3): systemd is PID 1 exactly when this directory exists.
SYSTEMD_RUNTIME = "/run/systemd/system"
UNIT_MARKER = "installed by `virt-vlan install-hooks`"
# The virtvlan package folder: the drop-in and the unit ship as files in it.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dropin_text(interpreter: Optional[str] = None) -> str:
    """The drop-in: dropin.py with its #! line naming `interpreter`."""
    with open(os.path.join(_PACKAGE, "hook", "dropin.py"), encoding="utf-8") as handle:
        body = handle.read().split("\n", 1)[1]
    # The venv's own python (not its resolved target): that path is what
    # makes Python find the venv's site-packages (pyvenv.cfg beside it).
    # One option word: Linux passes everything after the interpreter as one
    # argument, and python parses "-IS" as -I -S.
    return "#!%s -IS\n%s" % (interpreter or sys.executable, body)


def unit_text(interpreter: Optional[str] = None) -> str:
    """The agent's unit, its ExecStart running `interpreter` (default: the
    one virt-vlan runs under) with -I, like the drop-ins: the venv's own
    python finds the venv's packages, and nothing from the environment or
    the working directory is imported."""
    path = os.path.join(_PACKAGE, "agent", UNIT_NAME)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return text.replace("@EXEC@", "%s -I -m virtvlan.cli" % (interpreter or sys.executable))


def _systemctl(command: Optional[str], args: Sequence[str], out: List[str]) -> None:
    """Run `systemctl ARGS`; with command None only say what to run."""
    line = "systemctl " + " ".join(args)
    if command is None:
        out.append("run: %s" % line)
        return
    done = subprocess.run([command] + list(args), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        # The hooks are installed either way; the agent is an addition.
        out.append("failed: %s (exit %d): %s" % (line, done.returncode,
                                                 " ".join(done.stderr.split())[:300]))
    else:
        out.append("ran: %s" % line)


def install_unit(dry_run: bool = False, unit_dir: str = UNIT_DIR,
                 systemd_runtime: str = SYSTEMD_RUNTIME,
                 systemctl: Optional[str] = "systemctl") -> List[str]:
    """Write, enable and start the agent's unit where systemd runs."""
    if not os.path.isdir(systemd_runtime):
        return ["skipped %s: systemd is not running here (%s is absent); run `virt-vlan "
                "agent` under your service manager" % (UNIT_NAME, systemd_runtime)]
    out = []
    path = os.path.join(unit_dir, UNIT_NAME)
    text = unit_text()
    try:
        with open(path, encoding="utf-8") as handle:
            current: Optional[str] = handle.read()
    except FileNotFoundError:
        current = None
    if current is not None and UNIT_MARKER not in current:
        raise InputError("install-hooks: %s exists and is not virt-vlan's; move it away "
                         "(or put your changes in a drop-in %s.d/), then run install-hooks "
                         "again" % (path, path))
    if current == text:
        out.append("unchanged %s" % path)
    else:
        out.append("%s %s" % ("would write" if dry_run else "wrote", path))
        if not dry_run:
            os.makedirs(unit_dir, mode=0o755, exist_ok=True)
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
    if dry_run:
        return out + ["would run: systemctl daemon-reload; systemctl enable --now %s"
                      % UNIT_NAME]
    if current != text:
        _systemctl(systemctl, ["daemon-reload"], out)
    _systemctl(systemctl, ["enable", "--now", UNIT_NAME], out)
    if current is not None and current != text:
        _systemctl(systemctl, ["try-restart", UNIT_NAME], out)
    return out


def uninstall_unit(dry_run: bool = False, unit_dir: str = UNIT_DIR,
                   systemd_runtime: str = SYSTEMD_RUNTIME,
                   systemctl: Optional[str] = "systemctl") -> List[str]:
    """Stop, disable and remove our unit (only ours)."""
    path = os.path.join(unit_dir, UNIT_NAME)
    if not os.path.exists(path):
        return ["absent %s" % path]
    with open(path, encoding="utf-8", errors="replace") as handle:
        if UNIT_MARKER not in handle.read():
            return ["left alone %s (not virt-vlan's)" % path]
    if dry_run:
        return ["would run: systemctl disable --now %s" % UNIT_NAME, "would remove %s" % path]
    out: List[str] = []
    running = os.path.isdir(systemd_runtime)
    if running:
        _systemctl(systemctl, ["disable", "--now", UNIT_NAME], out)
    os.unlink(path)
    out.append("removed %s" % path)
    # Without systemd running, `enable` made only this link.
    wants = os.path.join(unit_dir, "multi-user.target.wants", UNIT_NAME)
    if os.path.islink(wants):
        os.unlink(wants)
        out.append("removed %s" % wants)
    if running:
        _systemctl(systemctl, ["daemon-reload"], out)
    return out


def _is_ours(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return MARKER in handle.read(4096)
    except OSError:
        return False


def _apparmor_block() -> str:
    python = sys.executable
    prefix = sys.prefix
    lines = [APPARMOR_BEGIN,
             "# The hook runs under libvirtd's profile: let it run our interpreter,",
             "# read our package and config, talk rtnetlink and keep its lock.",
             "network netlink raw,",
             "%s ix," % python,
             "%s ix," % os.path.realpath(python),
             "%s/** r," % prefix.rstrip("/"),
             "/etc/virt-vlan/** r,",
             "/run/virt-vlan/** rwk,",
             APPARMOR_END]
    return "\n".join(lines) + "\n"


def _strip_block(text: str) -> str:
    if APPARMOR_BEGIN not in text:
        return text
    head, _, rest = text.partition(APPARMOR_BEGIN)
    _, _, tail = rest.partition(APPARMOR_END + "\n")
    return head + tail


def install(hooks_dir: str, dry_run: bool = False,
            apparmor_dir: str = "/etc/apparmor.d", unit_dir: str = UNIT_DIR,
            systemd_runtime: str = SYSTEMD_RUNTIME,
            systemctl: Optional[str] = "systemctl", agent: bool = True) -> List[str]:
    """Write our drop-ins (idempotent), and (with `agent`) the agent's unit
    where systemd runs; returns lines telling what happened."""
    out = []
    text = dropin_text()
    for driver in DRIVERS:
        folder = os.path.join(hooks_dir, driver + ".d")
        path = os.path.join(folder, DROPIN_NAME)
        if os.path.exists(path):
            if not _is_ours(path):
                raise InputError("install-hooks: %s exists and is not virt-vlan's; move it away "
                                 "or rename it, then run install-hooks again" % path)
            with open(path, encoding="utf-8") as handle:
                if handle.read() == text and os.access(path, os.X_OK):
                    out.append("unchanged %s" % path)
                    continue
        out.append("%s %s" % ("would write" if dry_run else "wrote", path))
        if dry_run:
            continue
        os.makedirs(folder, mode=0o755, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    for driver in DRIVERS:
        main_script = os.path.join(hooks_dir, driver)
        if os.path.exists(main_script):
            out.append("left alone %s (libvirt runs it before our drop-in)" % main_script)
    profile = os.path.join(apparmor_dir, "usr.sbin.libvirtd")
    if os.path.exists(profile):
        local = os.path.join(apparmor_dir, APPARMOR_LOCAL)
        try:
            with open(local, encoding="utf-8") as handle:
                current = handle.read()
        except FileNotFoundError:
            current = ""
        wanted = _strip_block(current) + _apparmor_block()
        if current == wanted:
            out.append("unchanged %s" % local)
        else:
            out.append("%s %s; then run: apparmor_parser -r %s"
                       % ("would update" if dry_run else "updated", local, profile))
            if not dry_run:
                os.makedirs(os.path.dirname(local), exist_ok=True)
                with open(local, "w", encoding="utf-8") as handle:
                    handle.write(wanted)
    if agent:
        out.extend(install_unit(dry_run, unit_dir, systemd_runtime, systemctl))
    out.append("libvirtd reads hooks only at start: restart it (systemctl restart libvirtd, "
               "or virtqemud and virtnetworkd) before starting guests")
    return out


def uninstall(hooks_dir: str, dry_run: bool = False,
              apparmor_dir: str = "/etc/apparmor.d", unit_dir: str = UNIT_DIR,
              systemd_runtime: str = SYSTEMD_RUNTIME,
              systemctl: Optional[str] = "systemctl") -> List[str]:
    """Remove only our drop-ins, AppArmor block and agent unit."""
    out = uninstall_unit(dry_run, unit_dir, systemd_runtime, systemctl)
    for driver in DRIVERS:
        path = os.path.join(hooks_dir, driver + ".d", DROPIN_NAME)
        if not os.path.exists(path):
            out.append("absent %s" % path)
        elif not _is_ours(path):
            out.append("left alone %s (not virt-vlan's)" % path)
        else:
            out.append("%s %s" % ("would remove" if dry_run else "removed", path))
            if not dry_run:
                os.unlink(path)
    local = os.path.join(apparmor_dir, APPARMOR_LOCAL)
    if os.path.exists(local):
        with open(local, encoding="utf-8") as handle:
            current = handle.read()
        if APPARMOR_BEGIN in current:
            out.append("%s our rules from %s" % ("would remove" if dry_run else "removed", local))
            if not dry_run:
                with open(local, "w", encoding="utf-8") as handle:
                    handle.write(_strip_block(current))
    return out
