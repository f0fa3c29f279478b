"""Read side of virt-vlan's nftables table (port security): which guest
ports have a filter chain, and its rules as specs (their comments).

read_filters() dumps the table over netlink (NETLINK_NETFILTER, stdlib
only: about 1 ms), run only when some uplink has port security on (the
engine asks), never by an untagged hook call. read_filters_nft() reads
the same with `nft -j list table bridge virt_vlan` (a process: ~10 ms);
the kernel tests check that both agree. Writing is the executor's
(apply/executor.py), through host/nftwrite.py (libnftables in process).
"""

import json
import logging
import os
import shutil
import socket
import subprocess
import threading
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


# Where nft was found: a served call asks up to three times (read, write,
# read back) and a PATH search costs ~0.1 ms; checked again when it is gone.
_nft_path: Optional[str] = None


def nft_command(netns: Optional[str] = None) -> Optional[List[str]]:
    """The argv prefix that runs nft (in `netns`); None when nft is missing."""
    global _nft_path
    nft = _nft_path
    if nft is None or not os.access(nft, os.X_OK):
        # Hooks may run with a PATH lacking /usr/sbin.
        nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
        _nft_path = nft
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
    """virt-vlan's port filters of the host (or of `netns`), read over
    netlink; () when the table does not exist, None when nft is not
    installed (virt-vlan could not write them). ApplyError on a failure."""
    if nft_command() is None:
        return None
    return read_filters_netlink(netns)


def read_filters_nft(netns: Optional[str] = None) -> Optional[Tuple[PortFilter, ...]]:
    """read_filters() with `nft -j`: () when the table does not exist, None
    when nft is not installed. ApplyError when nft fails otherwise."""
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


# --- the same, read over netlink (NETLINK_NETFILTER), without a subprocess ------------
#
# linux/netfilter/nfnetlink.h and nf_tables.h: a dump of the table's rules
# (NFT_MSG_GETRULE filtered by NFTA_RULE_TABLE) and of the map's elements
# (NFT_MSG_GETSETELEM). A rule's comment is in NFTA_RULE_USERDATA as libnftnl
# writes it: TLVs of (u8 type, u8 length, value), type 0 the comment,
# NUL-terminated. About 1 ms instead of the ~10 ms of an `nft` process.

_NFNL_SUBSYS_NFTABLES = 10
_NFT_MSG_GETRULE, _NFT_MSG_GETSETELEM = 7, 13
_NFPROTO_BRIDGE = 7
_NFTA_RULE_TABLE, _NFTA_RULE_CHAIN, _NFTA_RULE_EXPRESSIONS, _NFTA_RULE_USERDATA = 1, 2, 4, 7
_NFTA_LIST_ELEM, _NFTA_EXPR_NAME = 1, 1
_NFTA_SET_ELEM_LIST_TABLE, _NFTA_SET_ELEM_LIST_SET, _NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
_NFTA_SET_ELEM_KEY, _NFTA_SET_ELEM_DATA = 1, 2
_NFTA_DATA_VALUE, _NFTA_DATA_VERDICT, _NFTA_VERDICT_CHAIN = 1, 2, 2
_UDATA_RULE_COMMENT = 0


def _attr(kind: int, value: bytes) -> bytes:
    import struct

    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def _text(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode(errors="replace")


def _comment(userdata: bytes) -> Optional[str]:
    offset = 0
    while offset + 2 <= len(userdata):
        kind, length = userdata[offset], userdata[offset + 1]
        if kind == _UDATA_RULE_COMMENT:
            return _text(userdata[offset + 2:offset + 2 + length])
        offset += 2 + length
    return None


def _dump(sock, seq: int, msg: int, attrs: bytes) -> List[bytes]:  # type: ignore[no-untyped-def]
    """Payloads (after the nfgenmsg) of one nf_tables dump; [] when the
    table or map does not exist (ENOENT)."""
    import errno
    import struct

    from virtvlan.host.nlconst import NLM_F_DUMP, NLM_F_REQUEST, NLMSGHDR
    from virtvlan.host.rtnl import split_messages

    body = struct.pack("=BBH", _NFPROTO_BRIDGE, 0, 0) + attrs
    sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), (_NFNL_SUBSYS_NFTABLES << 8) | msg,
                            NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
    out: List[bytes] = []
    while True:
        data = sock.recv(1 << 20)
        try:
            found, done, _intr = split_messages(data, seq, "virt-vlan's nftables table")
        except ApplyError as err:
            if errno.errorcode[errno.ENOENT] in str(err):
                return []
            raise
        out.extend(payload[4:] for payload in found)
        if done:
            return out


# The reading socket of this process's own namespace, kept open (see
# read_filters_netlink), the pid that made it, and the last sequence number.
_shared: Optional[socket.socket] = None
_shared_pid = 0
_shared_seq = 0
_shared_lock = threading.Lock()


def read_filters_netlink(netns: Optional[str] = None) -> Tuple[PortFilter, ...]:
    """The filters over netlink: the same answer as read_filters_nft()
    (tests/kernel compare them).

    In the caller's own namespace the socket stays open for the next read:
    closing a NETLINK_NETFILTER socket makes nf_tables wait for the freeing
    of the objects of the last transaction (nft_rcv_nl_event flushes its
    destroy work, an RCU grace period: 7-15 ms on a loaded 2-core host),
    which the read-back right after writing a filter would pay every time."""
    global _shared, _shared_pid, _shared_seq
    if netns is not None:
        sock = _netfilter_socket(netns)
        try:
            return _read_table(sock, 1)
        finally:
            sock.close()
    with _shared_lock:
        if _shared is None or _shared_pid != os.getpid():
            # A forked child makes its own: never share the parent's port id.
            _shared, _shared_pid = _netfilter_socket(None), os.getpid()
        # Fresh sequence numbers: replies of another dump are skipped.
        _shared_seq = (_shared_seq + 2) % (1 << 31)
        try:
            return _read_table(_shared, _shared_seq)
        except BaseException:
            # Unread replies may be left in it: the next read opens a new one.
            _shared.close()
            _shared = None
            raise


def _netfilter_socket(netns: Optional[str]) -> socket.socket:
    from virtvlan.host import rtnl
    from virtvlan.host.nlconst import NETLINK_NETFILTER

    try:
        return rtnl.route_socket(None if netns is None else rtnl.netns_path(netns),
                                 NETLINK_NETFILTER)
    except OSError as err:
        raise ApplyError("cannot open a netfilter netlink socket: %s"
                         % rtnl.errno_name(err.errno or 0)) from err


def _read_table(sock: socket.socket, seq: int) -> Tuple[PortFilter, ...]:
    """The filters, dumped on `sock` with sequence numbers seq and seq+1."""
    from virtvlan.host import rtnl

    table = NFT_TABLE.encode() + b"\0"
    try:
        rules = _dump(sock, seq, _NFT_MSG_GETRULE, _attr(_NFTA_RULE_TABLE, table))
        elems = _dump(sock, seq + 1, _NFT_MSG_GETSETELEM,
                      _attr(_NFTA_SET_ELEM_LIST_TABLE, table)
                      + _attr(_NFTA_SET_ELEM_LIST_SET, NFT_MAP.encode() + b"\0"))
    except OSError as err:
        raise ApplyError("netlink dump of virt-vlan's nftables table failed: %s"
                         % rtnl.errno_name(err.errno or 0)) from err
    chains: Dict[str, List[str]] = {}
    hooked = False
    for payload in rules:
        attrs = rtnl.attributes(payload)
        chain = _text(attrs.get(_NFTA_RULE_CHAIN, b""))
        if chain == NFT_BASE:
            exprs = rtnl.attribute_list(attrs.get(_NFTA_RULE_EXPRESSIONS, b""))
            hooked = hooked or any(
                _text(rtnl.attributes(expr).get(_NFTA_EXPR_NAME, b"")) == "lookup"
                for kind, expr in exprs if kind == _NFTA_LIST_ELEM)
            continue
        comment = _comment(attrs.get(_NFTA_RULE_USERDATA, b""))
        chains.setdefault(chain, []).append(comment or FOREIGN)
    ports: Dict[str, str] = {}
    for payload in elems:
        attrs = rtnl.attributes(payload)
        for kind, elem in rtnl.attribute_list(attrs.get(_NFTA_SET_ELEM_LIST_ELEMENTS, b"")):
            if kind != _NFTA_LIST_ELEM:
                continue
            fields = rtnl.attributes(elem)
            key = rtnl.attributes(fields.get(_NFTA_SET_ELEM_KEY, b"")).get(_NFTA_DATA_VALUE, b"")
            verdict = rtnl.attributes(rtnl.attributes(
                fields.get(_NFTA_SET_ELEM_DATA, b"")).get(_NFTA_DATA_VERDICT, b""))
            target = _text(verdict.get(_NFTA_VERDICT_CHAIN, b""))
            if key and target:
                ports[_text(key)] = target
    found = []
    for port, chain in sorted(ports.items()):
        rules_of = tuple(chains.get(chain, ()))
        if not hooked:
            rules_of = (UNHOOKED,) + rules_of
        found.append(PortFilter(port, rules_of or (FOREIGN,)))
    return tuple(found)
