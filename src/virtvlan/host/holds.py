"""The agent's heal holds as a file in the run directory.

The agent's link monitor holds back a device deleted too often (agent/
ratelimit.py) and writes its holds here; `virt-vlan check` reads them and
reports each as a problem. The file is JSON, replaced atomically.
"""

import json
import os
import time
from dataclasses import dataclass
from typing import List, Optional

from virtvlan.errors import VirtVlanError
from virtvlan.host import state

HELD_FILE = "heal-held.json"


@dataclass(frozen=True)
class HeldDevice:
    """One entry of HELD_FILE (times are Unix epoch seconds)."""

    device: str
    deletions: int
    window: float
    since: float
    until: float


def held_path() -> str:
    return os.path.join(state.run_dir(), HELD_FILE)


def write_holds(holds: List[HeldDevice], path: Optional[str] = None) -> None:
    """Replace HELD_FILE atomically; remove it when nothing is held."""
    path = path or held_path()
    if not holds:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    body = {"version": 1, "held": [
        {"device": h.device, "deletions": h.deletions, "window": h.window,
         "since": round(h.since, 3), "until": round(h.until, 3)} for h in holds]}
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(body, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def read_holds(path: Optional[str] = None, now: Optional[float] = None) -> List[HeldDevice]:
    """The holds in force (until > now) from HELD_FILE; [] without the file.

    A hold left behind by an agent that died has an `until` in the past and
    is not reported. A file that cannot be parsed raises VirtVlanError.
    """
    path = path or held_path()
    now = time.time() if now is None else now
    try:
        with open(path, encoding="utf-8") as handle:
            body = json.load(handle)
        holds = [HeldDevice(device=str(e["device"]), deletions=int(e["deletions"]),
                            window=float(e["window"]), since=float(e["since"]),
                            until=float(e["until"])) for e in body["held"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise VirtVlanError("cannot read %s: %s (delete it; the agent rewrites it)"
                            % (path, err)) from err
    return [h for h in holds if h.until > now]
