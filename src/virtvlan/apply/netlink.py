"""pyroute2 helpers for the executor: open a socket, look links up, map names.

Together with executor.py this is the only code that imports pyroute2 (the
host is read through host/rtnl.py, without it). It is
written against the API common to pyroute2 0.7.3 (Debian 12, RHEL 9) and
0.9.x: `IPRoute()`, `NetNS(name, flags=0)`, `link/addr/route` calls and
`get_attr` on the messages.
"""

import errno
from contextlib import contextmanager
from socket import AF_INET, AF_INET6
from typing import Iterator, Optional

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError

from virtvlan.errors import ApplyError
from virtvlan.host.nlconst import PROTOS, ROUTE_SCOPES
from virtvlan.host.rtnl import errno_name


def family_number(family: str) -> int:
    return AF_INET6 if family == "inet6" else AF_INET


def proto_number(name: str) -> int:
    """`ip` accepts a protocol by name or number; so do we."""
    for number, known in PROTOS.items():
        if known == name:
            return number
    return int(name)


def scope_number(name: str) -> int:
    for number, known in ROUTE_SCOPES.items():
        if known == name:
            return number
    if name == "global":
        return 0
    return int(name)


def errno_text(err: BaseException) -> str:
    """'EEXIST (File exists)': errno name plus the kernel's (or extack) text."""
    code = getattr(err, "code", None) or getattr(err, "errno", None)
    if not isinstance(code, int):
        return str(err)
    return errno_name(code, err.args[1] if len(err.args) > 1 else None)


@contextmanager
def open_socket(netns: Optional[str] = None) -> Iterator[IPRoute]:
    """An rtnetlink socket in the current or the named network namespace.

    flags=0: NetNS would otherwise create a missing namespace (O_CREAT), and a
    typo in a namespace name must not silently configure an empty one.
    """
    try:
        ipr = IPRoute() if netns is None else NetNS(netns, flags=0)
    except OSError as err:
        if netns is not None and err.errno == errno.ENOENT:
            raise ApplyError("network namespace %s does not exist (see `ip netns list`)"
                             % netns) from err
        raise ApplyError("cannot open a netlink socket%s: %s"
                         % (" in netns %s" % netns if netns else "", errno_text(err))) from err
    try:
        yield ipr
    finally:
        ipr.close()


def link_index(ipr: IPRoute, name: str) -> Optional[int]:
    """Index of the link called `name`, None when there is none (ENODEV)."""
    try:
        return int(ipr.link("get", ifname=name)[0]["index"])
    except NetlinkError as err:
        if err.code == errno.ENODEV:
            return None
        raise


def link_alias(ipr: IPRoute, index: int) -> Optional[str]:
    return ipr.link("get", index=index)[0].get_attr("IFLA_IFALIAS")
