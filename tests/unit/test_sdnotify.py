"""agent/sdnotify.py against a real AF_UNIX datagram socket, as systemd listens."""

import os
import socket

from virtvlan.agent import sdnotify


def _listener(address):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_notify_sends_one_datagram_to_the_socket_path(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with _listener(path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.notify("READY=1\nSTATUS=starting")
        assert sock.recv(4096) == b"READY=1\nSTATUS=starting"


def test_notify_reaches_an_abstract_socket(monkeypatch):
    name = "virt-vlan-test-%d" % os.getpid()
    with _listener("\0" + name) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_systemd_notify_does_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False


def test_notify_to_a_dead_socket_returns_false(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody"))
    assert sdnotify.notify("READY=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert sdnotify.watchdog_interval() is None
