"""Reservations: which bridges guests and networks hold between hook calls.

libvirt creates a guest's tap only after our `prepare` built its bridge; a
`release` of another guest running in that gap would see the bridge empty and
delete it. So `prepare` (and a virt-vlan network's `start`) records the
bridges it needs in a file under /run, `release` (and `stopped`) removes it,
and cleanup keeps every reserved bridge. /run is a tmpfs: after a reboot no
guest runs and no reservation survives, which is what we want.
Callers hold the host lock (lock.py) around reads and writes.
"""

import os
import re
from typing import FrozenSet, Iterable

ENV_DIR = "VIRT_VLAN_RUN_DIR"
DEFAULT_DIR = "/run/virt-vlan"


def run_dir() -> str:
    return os.environ.get(ENV_DIR) or DEFAULT_DIR


def _path(key: str) -> str:
    # Keys are "domain-<uuid or name>" / "network-<name>"; libvirt names may
    # hold characters a file name must not, so keep a safe spelling.
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
    return os.path.join(run_dir(), "reserved", safe)


def reserve(key: str, bridges: Iterable[str]) -> None:
    """Record that `key` needs `bridges` (replacing what it held before)."""
    path = _path(key)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("".join(name + "\n" for name in sorted(set(bridges))))
    os.replace(tmp, path)  # atomic: a reader sees the old or the new list


def unreserve(key: str) -> None:
    try:
        os.unlink(_path(key))
    except FileNotFoundError:
        pass


def reserved() -> FrozenSet[str]:
    """Every bridge some guest or network currently reserves."""
    folder = os.path.join(run_dir(), "reserved")
    names = set()
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        return frozenset()
    for entry in entries:
        if entry.endswith(".tmp"):
            continue
        try:
            with open(os.path.join(folder, entry), encoding="utf-8") as handle:
                names.update(line.strip() for line in handle if line.strip())
        except FileNotFoundError:
            continue
    return frozenset(names)
