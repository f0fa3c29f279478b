"""Write side of virt-vlan's nftables table (port security): run one nft
script as one transaction, the kernel applies all of it or none.

In process through libnftables (`libnftables.so.1`, the library `nft`
itself is built on, shipped with nftables on Debian 12, Ubuntu 22.04 and
RHEL 9) loaded with ctypes: about 0.5 ms against the 15-80 ms of an
`nft -f -` process (most of it nft starting, loading its libraries and
fetching its cache). One library context per process, made at the first
write and reused: the agent writes many filters. When the library cannot
be loaded, an `nft -f -` process writes instead (logged once).

For a network namespace (the executor's `netns`, tests and containers) the
write runs in a short-lived thread that entered the namespace with setns()
and makes its own context there: libnftables opens its netlink socket when
the context is made, and setns() moves only the calling thread.
"""

import logging
import os
import subprocess
import threading
from typing import Any, Callable, Optional

from virtvlan.errors import ApplyError
from virtvlan.host.nftables import nft_command
from virtvlan.host.rtnl import in_netns, netns_path

log = logging.getLogger(__name__)

LIBRARY = "libnftables.so.1"
_NFT_CTX_DEFAULT = 0  # libnftables.h: a context with its netlink socket

# The loaded library: False before the first attempt, None when it failed.
_lib: Any = False
_load_lock = threading.Lock()
# The context of this process's own namespace, and the pid that made it (a
# forked child makes its own: it must not share the parent's netlink socket).
_ctx: Optional[int] = None
_ctx_pid = 0
_ctx_lock = threading.Lock()


def library() -> Any:
    """libnftables through ctypes, loaded once; None when it cannot be
    (the reason is logged once)."""
    global _lib
    with _load_lock:
        if _lib is False:
            _lib = _load(LIBRARY)
        return _lib


def _load(name: str) -> Any:
    import ctypes

    try:
        lib = ctypes.CDLL(name)
        lib.nft_ctx_new.argtypes, lib.nft_ctx_new.restype = [ctypes.c_uint32], ctypes.c_void_p
        lib.nft_ctx_free.argtypes, lib.nft_ctx_free.restype = [ctypes.c_void_p], None
        for buffered in (lib.nft_ctx_buffer_output, lib.nft_ctx_buffer_error):
            buffered.argtypes, buffered.restype = [ctypes.c_void_p], ctypes.c_int
        for getter in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
            getter.argtypes, getter.restype = [ctypes.c_void_p], ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    except (OSError, AttributeError) as err:  # missing, or too old (< 0.9.1: no buffers)
        log.info("cannot use %s (%s): port filters are written by `nft -f -` processes",
                 name, err)
        return None
    log.debug("port filters are written in process with %s", name)
    return lib


def _new_context(lib: Any) -> int:
    ctx = lib.nft_ctx_new(_NFT_CTX_DEFAULT)
    if not ctx:
        raise ApplyError("%s could not make a context (nft_ctx_new failed: out of memory, "
                         "or no netfilter netlink socket)" % LIBRARY,
                         "check that the kernel has nf_tables, or uninstall %s" % LIBRARY)
    # Errors and output go to buffers, never to our stdout/stderr (a hook's
    # stdout is libvirt's).
    lib.nft_ctx_buffer_output(ctx)
    lib.nft_ctx_buffer_error(ctx)
    return int(ctx)


def _run(lib: Any, ctx: int, script: str) -> Optional[str]:
    """The script through context `ctx`: None when applied, else nft's
    first error line."""
    failed = lib.nft_run_cmd_from_buffer(ctx, script.encode())
    # Reading a buffer also empties it for the next script.
    lib.nft_ctx_get_output_buffer(ctx)
    errors = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
    if failed == 0:
        return None
    lines = errors.strip().splitlines()
    return lines[0] if lines else "libnftables refused the script (no message)"


def run_script(script: str, netns: Optional[str] = None) -> Optional[str]:
    """Apply nft `script` as one transaction (in network namespace `netns`,
    a name in /run/netns or a path): in process when libnftables loads,
    else with `nft -f -`. None when the kernel applied it, else nft's first
    error line (then nothing was applied). ApplyError when it cannot run."""
    if library() is None:
        return run_script_nft(script, netns)
    return run_script_in_process(script, netns)


def run_script_in_process(script: str, netns: Optional[str] = None) -> Optional[str]:
    """run_script() through libnftables; ApplyError when it cannot be loaded."""
    global _ctx, _ctx_pid
    lib = library()
    if lib is None:
        raise ApplyError("cannot load %s" % LIBRARY, "install nftables")
    if netns is not None:
        return _in_netns(netns_path(netns), lambda: _run_once(lib, script))
    with _ctx_lock:
        if _ctx is None or _ctx_pid != os.getpid():
            _ctx, _ctx_pid = _new_context(lib), os.getpid()
        return _run(lib, _ctx, script)


def _run_once(lib: Any, script: str) -> Optional[str]:
    ctx = _new_context(lib)
    try:
        return _run(lib, ctx, script)
    finally:
        lib.nft_ctx_free(ctx)


def run_script_nft(script: str, netns: Optional[str] = None) -> Optional[str]:
    """run_script() with an `nft -f -` process."""
    argv = nft_command(netns)
    if argv is None:
        raise ApplyError("nft is not installed, so virt-vlan's nftables table cannot be "
                         "written", "install nftables, or set port-security = no")
    argv += ["-f", "-"]
    try:
        done = subprocess.run(argv, input=script.encode(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ApplyError("cannot run `%s`: %s" % (" ".join(argv), err)) from err
    if done.returncode == 0:
        return None
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    return lines[0] if lines else "exit %d" % done.returncode


def _in_netns(path: str, func: Callable[[], Optional[str]]) -> Optional[str]:
    """func() in the network namespace at `path` (rtnl.in_netns); ApplyError
    when the namespace cannot be entered."""
    try:
        return in_netns(path, func)
    except OSError as err:
        if err.filename != path:
            raise
        raise ApplyError("cannot enter network namespace %s: %s" % (path, err.strerror or err),
                         "see `ip netns list`") from err
