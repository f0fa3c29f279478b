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
            "config": the hook's $VIRT_VLAN_CONFIG or null,
            optional "times": true (make bench: the reply carries the call's
            time points)}
  reply    version 2: the exit code in decimal ASCII, "\n", then the
           stderr text (UTF-8) the hook writes before it exits with it;
           "-\n" and the reason for a request the server refuses (bad,
           oversized, wrong version): the hook then does the work itself.
           The drop-in can read that without importing json (json and
           socket cost about 15 ms of a served call natively, -X importtime).
           Version 1 (a drop-in older than the agent): UTF-8 JSON
           {"v": 1, "rc": int or null for a refusal, "err": str}.
           With "times" (version 2 only), the stderr text is followed by a
           NUL and the call's time points (host/phases.py encode()).

A qemu `migrate` or `restore` request is refused: libvirt reads those hooks'
stdout as the domain XML, which no reply carries, so the drop-in does the
work itself (drop-ins since then never send them; older ones fall back).
A request whose version cannot be read is refused in version 1's form;
a version 2 drop-in takes that as no answer and works itself.
One request per connection; the server closes it after the reply.

Bounds (docs/hardening.md): one reader thread reads every connection at
once (non-blocking), each request within READ_TIMEOUT of its connect, so an
idle or slow client holds up no other; at most MAX_PENDING connections are
read and MAX_BUFFERED bytes held (read or queued) at a time: past either,
a request is refused at once and its hook does the work itself. A request
the reader cannot decode, whatever the reason, is refused, never the end
of the reader.

The server never calls libvirt: a hook runs while libvirtd holds the
domain, so a libvirt call from here could deadlock. It needs no libvirt
connection either, and starts before the agent connects.
"""

import errno
import json
import logging
import os
import queue
import selectors
import socket
import struct
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from virtvlan.errors import VirtVlanError, cut

from virtvlan.host import phases

log = logging.getLogger(__name__)

SOCKET_PATH = "/run/virt-vlan/agent.sock"
SOCKET_ENV = "VIRT_VLAN_AGENT_SOCKET"
VERSION = 2
VERSIONS = (1, 2)  # answered; 1 is the JSON reply of earlier drop-ins
MAX_REQUEST = 8 << 20  # bytes: domain XMLs are kilobytes; a request this big is not ours
READ_TIMEOUT = 5.0  # seconds from connect by which a client must have sent its whole request
MAX_PENDING = 32  # connections being read at once
MAX_BUFFERED = 64 << 20  # bytes of requests held at once, being read or queued for the worker
SEND_TIMEOUT = 5.0  # seconds a reply may take to go out
# A boot storm connects all at once. While the backlog is full connect()
# waits, and a drop-in that waits CONNECT_TIMEOUT does the work itself,
# against the agent for the lock: at 128, a storm of 200 guests (make
# bench, under strace) had 142 fail on the lock. The kernel caps it at
# net.core.somaxconn (4096 since Linux 5.4).
BACKLOG = 1024
HEADER = struct.Struct("!I")
# qemu ops whose hook output is the domain XML (stdout): refused, see above.
FILTER_OPS = ("migrate", "restore")

Handler = Callable[[str, Tuple[str, ...], bytes, Optional[str]], Tuple[int, str]]


class BadRequest(VirtVlanError):
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
    body = (("-" if code is None else str(code)).encode("ascii") + b"\n"
            + err.encode("utf-8", "replace"))
    return HEADER.pack(len(body)) + body


# The last item: when the request was read (time.monotonic()) if it asks
# for its time points (make bench), else None.
Request = Tuple[int, str, Tuple[str, ...], bytes, Optional[str], Optional[float]]


class Framer:
    """One connection's request as its bytes arrive: a length, then the body.

    `feed` takes the next bytes and returns the whole request once it is in,
    None while more is due; BadRequest for anything else (bytes after the
    request included). The work is linear in the bytes fed.
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.size: Optional[int] = None

    def feed(self, chunk: bytes) -> Optional[Request]:
        self.data += chunk
        if self.size is None:
            if len(self.data) < HEADER.size:
                return None
            (self.size,) = HEADER.unpack_from(self.data)
            if self.size > MAX_REQUEST:
                raise BadRequest("request of %d bytes is over the limit of %d"
                                 % (self.size, MAX_REQUEST))
        if len(self.data) < HEADER.size + self.size:
            return None
        if len(self.data) > HEADER.size + self.size:
            raise BadRequest("%d bytes after the request; send one request per connection"
                             % (len(self.data) - HEADER.size - self.size))
        return decode_request(bytes(self.data[HEADER.size:]))


def decode_request(body: bytes) -> Request:
    """(version, driver, args, xml, config path) of one request body;
    BadRequest if malformed, whatever is wrong with it."""
    try:
        message = json.loads(body.decode("utf-8"))
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BadRequest("request is not JSON: %s" % err) from None
    except RecursionError:  # "[[[[...": json recurses once per level
        raise BadRequest("request is not JSON: nested too deeply") from None
    version = message.get("v") if isinstance(message, dict) else None
    if type(version) is not int or version not in VERSIONS:
        raise BadRequest("protocol version %s is not one of %s" % (cut(repr(version)), VERSIONS))
    driver, args = message.get("driver"), message.get("args")
    xml, config = message.get("xml"), message.get("config")
    if driver not in ("qemu", "network"):
        raise BadRequest("driver %s is not qemu or network" % cut(repr(driver)), version)
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
    received = time.monotonic() if version >= 2 and message.get("times") is True else None
    return version, driver, tuple(args), data, config, received


class _Reading:
    """A connection being read: its framer, deadline and the bytes it may hold."""

    def __init__(self, conn: socket.socket, deadline: float) -> None:
        self.conn = conn
        self.deadline = deadline
        self.framer = Framer()
        self.charged = 0  # bytes counted against MAX_BUFFERED


def _hook_handler(default_config: Optional[str]) -> Handler:
    from virtvlan.hook.handler import serve

    def handle(driver: str, args: Tuple[str, ...], xml: bytes,
               config: Optional[str]) -> Tuple[int, str]:
        return serve(driver, args, xml, config or default_config)
    return handle


class HookServer:
    """Listens on `path`; `start()` returns at once, `stop()` removes the socket.

    One reader thread accepts and reads every connection at once (bounded
    size, count and time, see the module docstring) and queues whole
    requests; one worker thread runs them in order through `handler`
    (default: hook.serve with `config_path` when the request names no
    config). Neither thread ends on an error of one request.
    """

    def __init__(self, path: Optional[str] = None, config_path: Optional[str] = None,
                 handler: Optional[Handler] = None, preload: bool = True) -> None:
        self.path = path or socket_path()
        self.handler = handler or _hook_handler(config_path)
        self.preload = preload
        self.served = 0
        self.refused = 0  # requests answered with a refusal (bad, late, or the server full)
        self.reading = 0  # connections being read now
        self._sock: Optional[socket.socket] = None
        self._inode: Optional[Tuple[int, int]] = None
        self._queue: "queue.Queue[Optional[Tuple[socket.socket, Any, int]]]" = queue.Queue()
        self._stopping = threading.Event()
        self._threads: list = []
        self._wake: Optional[Tuple[int, int]] = None
        self._buffered = 0  # bytes charged against MAX_BUFFERED
        self._buffered_lock = threading.Lock()

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
        self._sock.setblocking(False)
        self._wake = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        log.info("agent: serving libvirt's hooks on %s", self.path)
        for name, target in (("hook-accept", self._read_loop), ("hook-worker", self._work_loop)):
            thread = threading.Thread(target=_survive(target, self._stopping), name=name,
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop accepting, let the worker finish the request in hand, remove
        the socket (only if it is still ours: a newer agent may have replaced it)."""
        self._stopping.set()
        self._queue.put(None)
        if self._wake is not None:
            try:
                os.write(self._wake[1], b"x")
            except OSError:
                pass
        for thread in self._threads:
            thread.join(10.0)
        if self._sock is not None:
            self._sock.close()
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        try:
            info = os.stat(self.path)
            if (info.st_dev, info.st_ino) == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    # --- the reader thread --------------------------------------------------------------

    def _read_loop(self) -> None:
        assert self._sock is not None and self._wake is not None
        selector = selectors.DefaultSelector()
        selector.register(self._sock, selectors.EVENT_READ, None)
        selector.register(self._wake[0], selectors.EVENT_READ, None)
        reading: Dict[int, _Reading] = {}
        try:
            while not self._stopping.is_set():
                timeout = None
                if reading:
                    timeout = max(0.0, min(r.deadline for r in reading.values())
                                  - time.monotonic())
                self.reading = len(reading)
                for key, _ in selector.select(timeout):
                    if key.fileobj is self._sock:
                        self._accept(selector, reading)
                    elif isinstance(key.data, _Reading):
                        self._read_one(selector, reading, key.data)
                now = time.monotonic()
                for late in [r for r in reading.values() if r.deadline <= now]:
                    self._drop(selector, reading, late, BadRequest(
                        "request not complete %g s after connecting" % READ_TIMEOUT))
        finally:
            for pending in list(reading.values()):
                self._drop(selector, reading, pending, None)
            selector.close()

    def _accept(self, selector: selectors.BaseSelector, reading: Dict[int, _Reading]) -> None:
        assert self._sock is not None
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            if err.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.warning("agent: hook server cannot accept (%s); retrying", err)
                self._stopping.wait(0.1)
            return
        if len(reading) >= MAX_PENDING:
            self._refuse(conn, BadRequest("the agent is reading %d requests already; the hook "
                                          "does the work itself" % len(reading)))
            return
        conn.setblocking(False)
        pending = _Reading(conn, time.monotonic() + READ_TIMEOUT)
        reading[conn.fileno()] = pending
        selector.register(conn, selectors.EVENT_READ, pending)

    def _read_one(self, selector: selectors.BaseSelector, reading: Dict[int, _Reading],
                  pending: _Reading) -> None:
        try:
            chunk = pending.conn.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            log.warning("agent: hook request lost: %s", err)
            self._drop(selector, reading, pending, None)
            return
        if not chunk:
            self._drop(selector, reading, pending, None)  # the hook gave up: no one to tell
            return
        try:
            request = pending.framer.feed(chunk)
            if pending.framer.size is not None and not pending.charged:
                self._charge(pending, HEADER.size + pending.framer.size)
        except BadRequest as err:
            self._drop(selector, reading, pending, err)
            return
        except Exception as err:  # a bug of ours: this request is refused, the reader goes on
            log.exception("agent: cannot read a hook request")
            self._drop(selector, reading, pending, BadRequest("agent failed to read the "
                                                              "request: %s" % err))
            return
        if request is None:
            return
        selector.unregister(pending.conn)
        del reading[pending.conn.fileno()]
        pending.conn.setblocking(True)
        pending.conn.settimeout(SEND_TIMEOUT)
        self._queue.put((pending.conn, request, pending.charged))

    def _charge(self, pending: _Reading, size: int) -> None:
        with self._buffered_lock:
            if self._buffered + size > MAX_BUFFERED:
                raise BadRequest("the agent holds %d bytes of requests already; the hook does "
                                 "the work itself" % self._buffered, 1)
            self._buffered += size
        pending.charged = size

    def _uncharge(self, size: int) -> None:
        with self._buffered_lock:
            self._buffered -= size

    def _drop(self, selector: selectors.BaseSelector, reading: Dict[int, _Reading],
              pending: _Reading, why: Optional[BadRequest]) -> None:
        """End a connection being read: refused with `why`, or just closed."""
        reading.pop(pending.conn.fileno(), None)
        try:
            selector.unregister(pending.conn)
        except (KeyError, ValueError):
            pass
        self._uncharge(pending.charged)
        pending.charged = 0
        if why is None:
            pending.conn.close()
        else:
            self._refuse(pending.conn, why)

    def _refuse(self, conn: socket.socket, why: BadRequest) -> None:
        log.warning("agent: hook request refused: %s", why)
        self.refused += 1
        try:
            # Small: fits the socket's buffer; a client that never reads loses it.
            conn.setblocking(False)
            conn.send(encode_reply(why.version, None, str(why)))
            # Closing with bytes unread resets the connection, and the client
            # may lose the reply: read what already arrived, a bounded amount.
            for _ in range(16):
                if not conn.recv(1 << 16):
                    break
        except OSError:
            pass
        finally:
            conn.close()

    # --- the worker thread --------------------------------------------------------------

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
            conn, request, charged = item
            try:
                self._serve_one(conn, request)
            finally:
                self._uncharge(charged)
        # Stopping: connections still queued get no reply; their hooks do the work.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[0].close()
                self._uncharge(item[2])

    def _serve_one(self, conn: socket.socket, request: Request) -> None:
        version, driver, args, xml, config, received = request
        started = time.monotonic()
        if received is not None:
            phases.start()
        try:
            code, err = self.handler(driver, args, xml, config)
            if received is not None:
                err += "\0" + phases.encode([("received", received), ("dequeued", started)]
                                            + phases.stop() + [("done", time.monotonic())])
            reply = encode_reply(version, code, err)
        except Exception as exc:  # hook.serve catches its own; this is a last resort
            log.exception("agent: hook request %s %s failed", driver, " ".join(args[:3]))
            code = None
            reply = encode_reply(version, None, "agent failed: %s" % cut(str(exc), 200))
        self.served += 1
        log.info("agent: served hook %s %s: exit %s in %.0f ms", driver,
                 cut(" ".join(args[:3]), 200), code, (time.monotonic() - started) * 1000)
        self._reply(conn, reply)

    @staticmethod
    def _reply(conn: socket.socket, reply: bytes) -> None:
        try:
            conn.sendall(reply)
        except OSError as err:  # the hook gave up (timeout, killed): it re-plans itself
            log.warning("agent: could not reply to a hook (%s)", err)
        finally:
            conn.close()


def _survive(loop: Callable[[], None], stopping: threading.Event) -> Callable[[], None]:
    """`loop`, run again after any exception that escapes it (logged): a
    thread of the hook server never dies and leaves the socket unanswered."""
    def run() -> None:
        while not stopping.is_set():
            try:
                loop()
                return
            except Exception:
                log.exception("agent: hook server thread %s failed; restarting it",
                              threading.current_thread().name)
                stopping.wait(0.1)
    return run
