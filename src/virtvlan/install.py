"""Install and remove the libvirt hook drop-ins (libvirt 6.5+ `<driver>.d/`).

libvirt runs `<hooks>/qemu` and then every executable in `<hooks>/qemu.d/`
in name order, each one's output feeding the next (empty output = XML
unchanged). So a drop-in never has to touch an admin's monolithic `qemu`
script, and we never overwrite it. libvirtd scans for hooks only when it
starts: after installing, it must be restarted.
"""

import os
import sys
from typing import List, Optional

from .errors import InputError

DROPIN_NAME = "virt-vlan"
DRIVERS = ("qemu", "network")
MARKER = "virt-vlan libvirt hook drop-in"
APPARMOR_LOCAL = "local/usr.sbin.libvirtd"
APPARMOR_BEGIN = "# BEGIN virt-vlan (managed by virt-vlan install-hooks)"
APPARMOR_END = "# END virt-vlan"


def dropin_text(interpreter: Optional[str] = None) -> str:
    """The drop-in: dropin.py with its #! line naming `interpreter`."""
    with open(os.path.join(os.path.dirname(__file__), "dropin.py"), encoding="utf-8") as handle:
        body = handle.read().split("\n", 1)[1]
    # The venv's own python (not its resolved target): that path is what
    # makes Python find the venv's site-packages (pyvenv.cfg beside it).
    # One option word: Linux passes everything after the interpreter as one
    # argument, and python parses "-IS" as -I -S.
    return "#!%s -IS\n%s" % (interpreter or sys.executable, body)


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
            apparmor_dir: str = "/etc/apparmor.d") -> List[str]:
    """Write our drop-ins (idempotent); returns lines telling what happened."""
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
    out.append("libvirtd reads hooks only at start: restart it (systemctl restart libvirtd, "
               "or virtqemud and virtnetworkd) before starting guests")
    return out


def uninstall(hooks_dir: str, dry_run: bool = False,
              apparmor_dir: str = "/etc/apparmor.d") -> List[str]:
    """Remove only our drop-ins and AppArmor block."""
    out = []
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
