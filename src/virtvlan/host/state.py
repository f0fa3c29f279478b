"""Reservations: which bridges guests and networks hold between hook calls.

libvirt creates a guest's tap only after our `prepare` built its bridge; a
`release` of another guest running in that gap would see the bridge empty and
delete it. So `prepare` (and a virt-vlan network's `start`) records the
bridges it needs in a file under /run, `release` (and `stopped`) removes it,
and cleanup keeps every reserved bridge. /run is a tmpfs: after a reboot no
guest runs and no reservation survives, which is what we want.
Callers hold the host lock (lock.py) around reads and writes.
"""

import logging
import os
import re
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

log = logging.getLogger(__name__)

ENV_DIR = "VIRT_VLAN_RUN_DIR"
DEFAULT_DIR = "/run/virt-vlan"


def run_dir() -> str:
    return os.environ.get(ENV_DIR) or DEFAULT_DIR


_DOMAIN, _NETWORK = "domain-", "network-"


def domain_key(uuid: Optional[str], name: str) -> str:
    """The reservation key of a domain: its UUID, else its name. The hook,
    the domain commands and the agent use it, so that all see one
    reservation per guest."""
    return _DOMAIN + (uuid or name)


def network_key(name: str) -> str:
    """The reservation key of a libvirt network (network names are unique)."""
    return _NETWORK + name


def is_network_key(key: str) -> bool:
    """True for a key made by network_key()."""
    return key.startswith(_NETWORK)


def _path(key: str) -> str:
    # libvirt names may hold characters a file name must not, so keep a
    # safe spelling.
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
    except OSError as err:  # not a directory, unreadable
        log.warning("ignoring %s: %s; remove it", folder, err.strerror or err)
        return frozenset()
    for entry in entries:
        if entry.endswith(".tmp"):
            continue
        path = os.path.join(folder, entry)
        try:
            # surrogateescape: garbage bytes become names no bridge has, so a
            # broken file keeps nothing extra and costs no crash.
            with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                names.update(line.strip() for line in handle if line.strip())
        except FileNotFoundError:
            continue
        except OSError as err:  # a directory, unreadable: not one of ours
            log.warning("ignoring %s: %s; virt-vlan writes only files there, remove it",
                        path, err.strerror or err)
    return frozenset(names)


# -- creations in flight ------------------------------------------------------
#
# The kernel takes a device's alias (our mark, model.MANAGED_ALIAS) only in a
# request after the one that creates it. A run killed between the two (an
# agent or hook SIGKILLed mid-change) would leave a device that later runs
# take for the admin's and never remove. So apply.py writes an intent file
# before the create and removes it once the mark is set; the next run reads
# the leftovers under the lock and finishes the mark (engine.py).

def _intent_path(name: str) -> str:
    return os.path.join(run_dir(), "creating", name)


def intend(name: str, kind: str, addrgen: bool) -> None:
    """Record that a `kind` device `name` is about to be created and marked."""
    path = _intent_path(name)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("%s %d\n" % (kind, int(addrgen)))
    os.replace(tmp, path)


def _device_name(name: str) -> bool:
    """Whether `name` can be a Linux interface name (IFNAMSIZ, no '/')."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # an undecodable file name (surrogateescape)
        return False
    return 0 < size <= 15 and "/" not in name and name not in (".", "..")


def intended(name: str) -> None:
    """The creation of `name` is over (marked, or not made after all)."""
    try:
        os.unlink(_intent_path(name))
    except FileNotFoundError:
        pass


def _listing(sub: str) -> Tuple[str, List[str]]:
    """(the run dir's folder `sub`, its entries); no entries when it does
    not exist, or is unusable (logged: not a directory, unreadable)."""
    folder = os.path.join(run_dir(), sub)
    try:
        return folder, os.listdir(folder)
    except FileNotFoundError:
        return folder, []
    except OSError as err:
        log.warning("ignoring %s: %s; remove it", folder, err.strerror or err)
        return folder, []


def intents() -> Dict[str, Tuple[str, bool]]:
    """Leftover intents: device name -> (kind, addrgen). {} in the common
    case (one failed listdir)."""
    folder, entries = _listing("creating")
    found: Dict[str, Tuple[str, bool]] = {}
    for entry in entries:
        if entry.endswith(".tmp"):
            continue
        path = os.path.join(folder, entry)
        try:
            with open(path, encoding="utf-8") as handle:
                words = handle.read(64).split()
        except FileNotFoundError:
            continue
        except UnicodeDecodeError:
            words = []  # garbage: as a torn write, below
        except OSError as err:  # a directory, unreadable: not one of ours
            log.warning("ignoring %s: %s; virt-vlan writes only files there, remove it",
                        path, err.strerror or err)
            continue
        if not _device_name(entry):
            # Not a name we write (not UTF-8, too long): nothing to finish by it.
            log.warning("removing %s: not a device name virt-vlan creates", path)
            words = []
        if len(words) == 2 and words[1] in ("0", "1"):
            found[entry] = (words[0], words[1] == "1")
        else:
            intended(entry)  # unreadable (a torn write): nothing to finish by it
    return found


# -- ports virt-vlan protects ---------------------------------------------------
#
# Port security (docs/port-security.md) is added at a guest's start, plug,
# re-tag or hot-plug, never by a pass of the agent over a guest that was
# already running (one running across the upgrade that turned it on keeps its
# traffic until its next start). But a filter that vanishes (`nft flush
# ruleset`) leaves no trace in the kernel, so the agent could not tell a port
# that lost its filter from one that never had one. The engine records each
# port it gives a filter, with the tap's ifindex (a tap name is reused by the
# next guest; an ifindex is not, until the counter wraps), and drops the
# record when it removes the filter. /run is a tmpfs: no record outlives the
# taps it names across a reboot.

def _protected_path(port: str) -> str:
    return os.path.join(run_dir(), "protected", port)


def protect(port: str, index: int) -> None:
    """Record that virt-vlan gave tap `port` (ifindex `index`) its filter."""
    path = _protected_path(port)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("%d\n" % index)
    os.replace(tmp, path)  # atomic: a reader sees the old record or the new one


def unprotect(port: str) -> None:
    """Drop the record of `port` (its filter was removed, or the tap is gone)."""
    try:
        os.unlink(_protected_path(port))
    except FileNotFoundError:
        pass


def protected() -> Dict[str, int]:
    """The recorded ports: tap name -> ifindex it had when its filter went
    in. {} in the common case of no record (one failed listdir). A record
    that cannot be read counts as none: its port is then treated as never
    protected, which leaves its traffic as it is."""
    folder, entries = _listing("protected")
    found: Dict[str, int] = {}
    for entry in entries:
        if entry.endswith(".tmp") or not _device_name(entry):
            continue
        path = os.path.join(folder, entry)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read(32).strip()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as err:
            log.warning("ignoring %s: %s; virt-vlan writes only files there, remove it",
                        path, getattr(err, "strerror", None) or err)
            continue
        if text.isdigit():
            found[entry] = int(text)
    return found
