"""The hook server under hostile or broken clients (issue 19, items 2 and 4).

Real UNIX sockets in a temp dir. Nothing here asserts on time: the bounds
are tested through what they bound (counts of connections and bytes) and
through behaviour (a request is answered while others stall). The clients'
socket timeouts only keep a failing test from hanging.
"""

import socket
import struct
import threading
from pathlib import Path
from typing import Iterator, List

import pytest

from test_agent_serve import REFUSED, TAGGED, _request, refused  # noqa: F401
from test_agent_serve import conf, dropin, server, sock_path  # noqa: F401 (fixtures)
from virtvlan.agent import serve

GUARD = 30  # seconds a client waits before the test fails (never reached when it passes)


def _open(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(GUARD)
    sock.connect(str(path))
    return sock


def _reply(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # closed with our bytes unread
            return data
        if not chunk:
            return data
        data += chunk


def _until(condition) -> None:  # type: ignore[no-untyped-def]
    """Wait for the server's state to change (a hang guard, not a timing)."""
    done = threading.Event()
    for _ in range(GUARD * 100):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("the server never got there")


@pytest.fixture
def idle(sock_path) -> Iterator[List[socket.socket]]:
    """Connections that never send a byte; closed at the end."""
    opened: List[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_deep_json_frame_is_refused_and_the_next_request_answered(conf, server, dropin):
    body = b"[" * 100_000
    with _open(server.path) as sock:
        sock.sendall(struct.pack("!I", len(body)) + body)
        reply = _reply(sock)
    assert b"not JSON: nested too deeply" in reply, reply[:200]
    assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) == (1, refused(conf))
    assert (server.served, server.refused) == (1, 1)


def test_request_is_answered_while_20_idle_connections_are_open(conf, sock_path, dropin,
                                                               idle, monkeypatch):
    # Idle clients are never cut off in this test: only reading them all at
    # once lets the real request through.
    monkeypatch.setattr(serve, "READ_TIMEOUT", 3600.0)
    running = serve.HookServer(path=str(sock_path), preload=False)
    running.start()
    try:
        idle.extend(_open(sock_path) for _ in range(20))
        idle[0].sendall(struct.pack("!I", 1000) + b'{"v": 2')  # one that stops mid-request
        with _open(sock_path) as sock:
            sock.sendall(_request(v=2))
            reply = _reply(sock)
        assert reply[4:] == b"1\n" + refused(conf).encode()
        assert running.served == 1 and running.refused == 0
    finally:
        running.stop()


def test_slow_client_is_cut_off_at_its_deadline_not_per_byte(server, monkeypatch):
    # A byte at a time, forever: a timeout per recv would never fire.
    monkeypatch.setattr(serve, "READ_TIMEOUT", 0.3)
    stop = threading.Event()
    with _open(server.path) as sock:
        sock.sendall(struct.pack("!I", 1_000_000))

        def trickle() -> None:
            while not stop.wait(0.02):
                try:
                    sock.send(b" ")
                except OSError:
                    return
        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            reply = _reply(sock)
        finally:
            stop.set()
            thread.join(GUARD)
    assert b"request not complete 0.3 s after connecting" in reply, reply
    assert server.refused == 1


def test_connections_past_the_cap_are_refused_at_once_and_the_hook_works_itself(
        sock_path, dropin, idle, monkeypatch):
    monkeypatch.setattr(serve, "MAX_PENDING", 3)
    monkeypatch.setattr(serve, "READ_TIMEOUT", 3600.0)
    running = serve.HookServer(path=str(sock_path), preload=False)
    running.start()
    try:
        idle.extend(_open(sock_path) for _ in range(3))
        _until(lambda: running.reading == 3)
        assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) is None  # refused: local run
        assert running.refused == 1 and running.served == 0
        idle.pop().close()  # one slot free again: served
        _until(lambda: running.reading == 2)
        with _open(sock_path) as sock:
            sock.sendall(_request(v=2, args=["vm1", "started"]))
            assert _reply(sock)[4:] == b"0\n"
    finally:
        running.stop()


def test_bytes_held_at_once_are_capped(sock_path, idle, monkeypatch):
    monkeypatch.setattr(serve, "MAX_BUFFERED", 3000)
    monkeypatch.setattr(serve, "READ_TIMEOUT", 3600.0)
    running = serve.HookServer(path=str(sock_path), preload=False)
    running.start()
    try:
        first = _open(sock_path)
        idle.append(first)
        first.sendall(struct.pack("!I", 2000) + b"{")  # 2004 bytes charged, never finished
        with _open(sock_path) as sock:
            sock.sendall(struct.pack("!I", 1000) + b"{")  # would hold 3008
            reply = _reply(sock)
        assert b"the agent holds 2004 bytes of requests already" in reply, reply
        with _open(sock_path) as sock:
            sock.sendall(_request(args=["vm1", "started"]))  # small enough: served
            assert b'"rc": 0' in _reply(sock)
    finally:
        running.stop()


def test_second_request_on_one_connection_is_refused(server):
    with _open(server.path) as sock:
        sock.sendall(_request(args=["vm1", "started"]) * 2)
        reply = _reply(sock)
    assert b"after the request; send one request per connection" in reply, reply
    assert server.served == 0


def test_reader_thread_that_fails_is_restarted(conf, server, dropin, monkeypatch):
    real = serve.HookServer._read_one
    failed = []

    def broken(self, *args):  # type: ignore[no-untyped-def]
        if not failed:
            failed.append(1)
            raise MemoryError("simulated")  # escapes every per-request guard
        return real(self, *args)
    monkeypatch.setattr(serve.HookServer, "_read_one", broken)
    with _open(server.path) as sock:
        sock.sendall(_request(v=2))
        assert _reply(sock) == b""  # dropped with the failed loop: its hook works itself
    assert failed
    assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) == (1, refused(conf))


def test_reply_that_cannot_be_encoded_does_not_stop_the_worker(sock_path, dropin):
    def handler(driver, args, xml, config):  # type: ignore[no-untyped-def]
        return (1, "bad \udcff name\n") if args[0] == "odd" else (0, "")

    running = serve.HookServer(path=str(sock_path), handler=handler, preload=False)
    running.start()
    try:
        assert dropin["ask_agent"]("qemu", ["odd", "start"], TAGGED) == (1, "bad ? name\n")
        assert dropin["ask_agent"]("qemu", ["vm1", "start"], TAGGED) == (0, "")
    finally:
        running.stop()
