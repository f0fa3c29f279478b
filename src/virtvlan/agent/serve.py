"""The agent's hook server: libvirt's hooks hand their work to the agent.

A hook process pays for a Python start and, for any change, for importing
pyroute2 (0.4 s natively, tens of seconds on an emulated CPU). The agent
has both already, so the drop-in (dropin.py) first offers the call here
over a UNIX stream socket and does the work itself only when no agent
answers. Served calls run exactly the hook's code (hook.serve) under the
same host lock, one at a time, on one worker thread.

Protocol; each message is a 4-byte big-endian length, then that many bytes:
  request  UTF-8 JSON {"v": 2, "driver": "qemu"|"network", "args": [str, ...],
            "xml": the hook's stdin decoded as latin-1 (byte for byte),
            "config": the hook's $VIRT_VLAN_CONFIG or null}
  reply    version 2: the exit code in decimal ASCII, "\n", then the
           stderr text (UTF-8) the hook writes before it exits with it;
           "-\n" and the reason for a request the server refuses (bad,
           oversized, wrong version): the hook then does the work itself.
           The drop-in can read that without importing json (json and
           socket cost about 15 ms of a served call natively, -X importtime).
           Version 1 (a drop-in older than the agent): UTF-8 JSON
           {"v": 1, "rc": int or null for a refusal, "err": str}.
A qemu `migrate` or `restore` request is refused: libvirt reads those hooks'
stdout as the domain XML, which no reply carries, so the drop-in does the
work itself (drop-ins since then never send them; older ones fall back).
A request whose version cannot be read is refused in version 1's form;
a version 2 drop-in takes that as no answer and works itself.
One request per connection; the server closes it after the reply.

The server never calls libvirt: a hook runs while libvirtd holds the
domain, so a libvirt call from here could deadlock. It needs no libvirt
connection either, and starts before the agent connects.
"""

import errno
import json
import logging
import os
import queue
import socket
import struct
import threading
import time
from typing import Any, Callable, Optional, Tuple

log = logging.getLogger(__name__)

SOCKET_PATH = "/run/virt-vlan/agent.sock"
SOCKET_ENV = "VIRT_VLAN_AGENT_SOCKET"
VERSION = 2
VERSIONS = (1, 2)  # answered; 1 is the JSON reply of earlier drop-ins
MAX_REQUEST = 8 << 20  # bytes: domain XMLs are kilobytes; a request this big is not ours
READ_TIMEOUT = 5.0  # seconds a client may take to send its request
BACKLOG = 128  # a boot storm connects all at once; connect() waits while the backlog is full
HEADER = struct.Struct("!I")
# qemu ops whose hook output is the domain XML (stdout): refused, see above.
FILTER_OPS = ("migrate", "restore")

Handler = Callable[[str, Tuple[str, ...], bytes, Optional[str]], Tuple[int, str]]


class BadRequest(Exception):
    """A request the server will not run; the reason goes back to the hook
    (in the reply form of `version`, once the request's version is known)."""

    def __init__(self, why: str, version: int = 1) -> None:
        super().__init__(why)
        self.version = version


def socket_path() -> str:
    return os.environ.get(SOCKET_ENV) or SOCKET_PATH


def encode(message: Any) -> bytes:
    body = json.dumps(message).encode("utf-8")
    return HEADER.pack(len(body)) + body


def encode_reply(version: int, code: Optional[int], err: str) -> bytes:
    """The reply to a request of `version`; `code` None: refused."""
    if version == 1:
        return encode({"v": 1, "rc": code, "err": err})
    body = ("-" if code is None else str(code)).encode("ascii") + b"\n" + err.encode("utf-8")
    return HEADER.pack(len(body)) + body


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = conn.recv(min(size, 1 << 16))
        if not chunk:
            raise BadRequest("connection closed before the whole request arrived")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


Request = Tuple[int, str, Tuple[str, ...], bytes, Optional[str]]


def read_request(conn: socket.socket) -> Request:
    """(version, driver, args, xml, config path) of one request; BadRequest
    if malformed."""
    (size,) = HEADER.unpack(_recv_exact(conn, HEADER.size))
    if size > MAX_REQUEST:
        raise BadRequest("request of %d bytes is over the limit of %d" % (size, MAX_REQUEST))
    try:
        message = json.loads(_recv_exact(conn, size).decode("utf-8"))
    except ValueError as err:
        raise BadRequest("request is not JSON: %s" % err) from None
    version = message.get("v") if isinstance(message, dict) else None
    if type(version) is not int or version not in VERSIONS:
        raise BadRequest("protocol version %r is not one of %s" % (version, VERSIONS))
    driver, args = message.get("driver"), message.get("args")
    xml, config = message.get("xml"), message.get("config")
    if driver not in ("qemu", "network"):
        raise BadRequest("driver %r is not qemu or network" % (driver,), version)
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise BadRequest("args must be a list of strings", version)
    if driver == "qemu" and len(args) > 1 and args[1] in FILTER_OPS:
        raise BadRequest("qemu %s prints the domain XML, which a reply cannot carry; the "
                         "drop-in runs it itself" % args[1], version)
    if not isinstance(xml, str) or not (config is None or isinstance(config, str)):
        raise BadRequest("xml must be a string, config a string or null", version)
    try:
        data = xml.encode("latin-1")
    except UnicodeEncodeError:
        raise BadRequest("xml is not latin-1 text (the hook's bytes)", version) from None
    return version, driver, tuple(args), data, config


def _hook_handler(default_config: Optional[str]) -> Handler:
    from virtvlan.hook.handler import serve

    def handle(driver: str, args: Tuple[str, ...], xml: bytes,
               config: Optional[str]) -> Tuple[int, str]:
        return serve(driver, args, xml, config or default_config)
    return handle


class HookServer:
    """Listens on `path`; `start()` returns at once, `stop()` removes the socket.

    One acceptor thread reads requests (bounded size and time) and queues
    them; one worker thread runs them in order through `handler` (default:
    hook.serve with `config_path` when the request names no config).
    """

    def __init__(self, path: Optional[str] = None, config_path: Optional[str] = None,
                 handler: Optional[Handler] = None, preload: bool = True) -> None:
        self.path = path or socket_path()
        self.handler = handler or _hook_handler(config_path)
        self.preload = preload
        self.served = 0
        self._sock: Optional[socket.socket] = None
        self._inode: Optional[Tuple[int, int]] = None
        self._queue: "queue.Queue[Optional[Tuple[socket.socket, Any]]]" = queue.Queue()
        self._stopping = threading.Event()
        self._threads: list = []

    # --- the socket ---------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        """Bind a temporary name, then rename it over `path`: the socket appears
        complete and root-only, and a stale one left by a killed agent is replaced."""
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o755, exist_ok=True)
        temp = os.path.join(directory, ".%s.%d.tmp" % (os.path.basename(self.path), os.getpid()))
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            # umask, not a chmod after bind: no moment where others may connect.
            old = os.umask(0o177)
            try:
                sock.bind(temp)
            finally:
                os.umask(old)
            os.chmod(temp, 0o600)
            sock.listen(BACKLOG)
            os.rename(temp, self.path)
        except BaseException:
            sock.close()
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise
        info = os.stat(self.path)
        self._inode = (info.st_dev, info.st_ino)
        return sock

    def start(self) -> None:
        self._sock = self._bind()
        log.info("agent: serving libvirt's hooks on %s", self.path)
        for name, target in (("hook-accept", self._accept_loop), ("hook-worker", self._work_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop accepting, let the worker finish the request in hand, remove
        the socket (only if it is still ours: a newer agent may have replaced it)."""
        self._stopping.set()
        self._queue.put(None)
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        for thread in self._threads:
            thread.join(10.0)
        try:
            info = os.stat(self.path)
            if (info.st_dev, info.st_ino) == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    # --- the threads --------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError as err:
                if self._stopping.is_set():
                    return
                if err.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("agent: hook server cannot accept (%s); retrying", err)
                    self._stopping.wait(0.1)
                continue
            try:
                conn.settimeout(READ_TIMEOUT)
                request = read_request(conn)
            except (BadRequest, OSError, struct.error) as err:
                log.warning("agent: hook request refused: %s", err)
                self._reply(conn, encode_reply(getattr(err, "version", 1), None, str(err)))
                continue
            self._queue.put((conn, request))

    def _work_loop(self) -> None:
        if self.preload:
            # pyroute2 once, now, rather than in the first request that changes something.
            try:
                from virtvlan.apply import executor as apply  # noqa: F401
            except Exception:  # each request then reports it, as the hook would
                log.exception("agent: cannot load virtvlan.apply.executor")
        while True:
            item = self._queue.get()
            if item is None:
                break
            conn, (version, driver, args, xml, config) = item
            started = time.monotonic()
            try:
                code, err = self.handler(driver, args, xml, config)
            except Exception as exc:  # hook.serve catches its own; this is a last resort
                log.exception("agent: hook request %s %s failed", driver, " ".join(args[:3]))
                code, err = None, "agent failed: %s" % exc
            self.served += 1
            log.info("agent: served hook %s %s: exit %s in %.0f ms", driver, " ".join(args[:3]),
                     code, (time.monotonic() - started) * 1000)
            self._reply(conn, encode_reply(version, code, err))
        # Stopping: connections still queued get no reply; their hooks do the work.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[0].close()

    @staticmethod
    def _reply(conn: socket.socket, reply: bytes) -> None:
        try:
            conn.sendall(reply)
        except OSError as err:  # the hook gave up (timeout, killed): it re-plans itself
            log.warning("agent: could not reply to a hook (%s)", err)
        finally:
            conn.close()
