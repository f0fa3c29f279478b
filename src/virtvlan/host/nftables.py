"""Read side of virt-vlan's nftables table (port security): which guest
ports have a filter chain, and its rules as specs (their comments).

`nft -j list table bridge virt_vlan` in a subprocess: about 5 ms, run only
when some uplink has port security on (the engine asks), never by an
untagged hook call. Writing is the executor's (apply/executor.py).
"""

import json
import logging
import shutil
import subprocess
from typing import Dict, List, Optional, Tuple

from virtvlan.errors import ApplyError
from virtvlan.model import NFT_BASE, NFT_FAMILY, NFT_MAP, NFT_TABLE, PortFilter

log = logging.getLogger(__name__)

# A chain that the dispatch map points at while the dispatch rule itself is
# gone (`nft flush chain ... prerouting` by hand) filters nothing: its ports
# read as this spec, which no wanted chain has, so the planner rewrites them.
UNHOOKED = "!unhooked"
# A rule without a comment is not one of ours: likewise never equal.
FOREIGN = "!foreign"


def nft_command(netns: Optional[str] = None) -> Optional[List[str]]:
    """The argv prefix that runs nft (in `netns`); None when nft is missing."""
    # Hooks may run with a PATH lacking /usr/sbin.
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if nft is None:
        return None
    return ["ip", "netns", "exec", netns, nft] if netns else [nft]


def parse_table(document: dict) -> Tuple[PortFilter, ...]:
    """The port filters in `nft -j list table` output (see module doc)."""
    chains: Dict[str, List[str]] = {}
    ports: Dict[str, str] = {}
    hooked = False
    for item in document.get("nftables", ()):
        if "rule" in item:
            rule = item["rule"]
            chain = rule.get("chain", "")
            if chain == NFT_BASE:
                hooked = hooked or any("vmap" in expr for expr in rule.get("expr", ()))
                continue
            chains.setdefault(chain, []).append(rule.get("comment") or FOREIGN)
        elif "chain" in item:
            chains.setdefault(item["chain"].get("name", ""), [])
        elif "map" in item and item["map"].get("name") == NFT_MAP:
            for elem in item["map"].get("elem", ()):
                if isinstance(elem, list) and len(elem) == 2 and isinstance(elem[1], dict):
                    key, verdict = elem
                    target = verdict.get("jump", {}).get("target")
                    if isinstance(key, str) and target:
                        ports[key] = target
    found = []
    for port, chain in sorted(ports.items()):
        rules = tuple(chains.get(chain, ()))
        if not hooked:
            rules = (UNHOOKED,) + rules
        found.append(PortFilter(port, rules or (FOREIGN,)))
    return tuple(found)


def read_filters(netns: Optional[str] = None) -> Optional[Tuple[PortFilter, ...]]:
    """virt-vlan's port filters of the host (or of `netns`); () when the
    table does not exist, None when nft is not installed. ApplyError when
    nft fails otherwise."""
    argv = nft_command(netns)
    if argv is None:
        return None
    argv += ["-j", "list", "table", NFT_FAMILY, NFT_TABLE]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ApplyError("cannot run `%s`: %s" % (" ".join(argv), err)) from err
    if done.returncode != 0:
        text = done.stderr.decode(errors="replace")
        if "No such file or directory" in text:
            return ()
        raise ApplyError("`%s` failed: %s" % (" ".join(argv), text.strip().splitlines()[0]
                                              if text.strip() else "exit %d" % done.returncode))
    try:
        return parse_table(json.loads(done.stdout or b"{}"))
    except ValueError as err:
        raise ApplyError("`%s` printed no JSON: %s" % (" ".join(argv), err)) from err
