"""Running virt-vlan networks whose ports get port security, as the
network hook recorded them.

libvirt attaches a network's ports to its bridge itself; virt-vlan adds
each port's filter at the guest's qemu `start` hook, when its tap exists
and its CPUs do not run yet (the network hook's `port-created` comes
before the tap exists and does not name it). That hook gets the domain XML
only, and a hook must never ask libvirt for the network's. So the network
hook's `start` records the network's XML here (under the run dir, a tmpfs:
nothing survives a reboot, when no network runs), `stopped` removes it, and
the qemu hooks, the drop-in's pre-filter and the agent read it.

One file per network, named by the network: its name when that is a
plain word (`NAME_RE`), else "%" and the name's UTF-8 in hex (the drop-in
decodes both). Callers parse the XML with parse/metadata.parse_network.
"""

import logging
import os
import re
from typing import Dict

from virtvlan.host import state

log = logging.getLogger(__name__)

FOLDER = "networks"
# Names kept as they are; the drop-in (hook/dropin.py) matches them in the
# domain XML as network='NAME' without decoding, so no XML escape may apply.
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+:-]*")


def folder() -> str:
    return os.path.join(state.run_dir(), FOLDER)


def file_name(network: str) -> str:
    """The record's file name for `network` (see the module doc)."""
    if NAME_RE.fullmatch(network):
        return network
    return "%" + network.encode("utf-8", "surrogateescape").hex()


def network_name(entry: str) -> str:
    """file_name()'s inverse."""
    if entry.startswith("%"):
        return bytes.fromhex(entry[1:]).decode("utf-8", "surrogateescape")
    return entry


def record(network: str, xml: bytes) -> None:
    """Record that `network` runs with this XML (replacing an old record)."""
    path = os.path.join(folder(), file_name(network))
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        handle.write(xml)
    os.replace(tmp, path)  # atomic: a reader sees the old or the new record


def forget(network: str) -> None:
    try:
        os.unlink(os.path.join(folder(), file_name(network)))
    except FileNotFoundError:
        pass


def recorded() -> Dict[str, bytes]:
    """Network name -> its recorded XML; {} when none (one failed listdir)."""
    try:
        entries = os.listdir(folder())
    except FileNotFoundError:
        return {}
    except OSError as err:  # not a directory, unreadable
        log.warning("ignoring %s: %s; remove it", folder(), err.strerror or err)
        return {}
    out: Dict[str, bytes] = {}
    for entry in entries:
        if entry.endswith(".tmp"):
            continue
        try:
            name = network_name(entry)
        except ValueError:
            log.warning("ignoring %s: not a name virt-vlan writes; remove it",
                        os.path.join(folder(), entry))
            continue
        try:
            with open(os.path.join(folder(), entry), "rb") as handle:
                out[name] = handle.read()
        except FileNotFoundError:
            continue  # the network stopped meanwhile
        except OSError as err:  # a directory, unreadable: not one of ours
            log.warning("ignoring %s: %s; virt-vlan writes only files there, remove it",
                        os.path.join(folder(), entry), err.strerror or err)
    return out
