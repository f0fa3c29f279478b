"""The agent's hook server and the drop-in's client, over a real UNIX socket.

The server runs in a thread of the test; the client is the drop-in itself
(its ask_agent function, or the drop-in file run as libvirt runs it). The
requests used here are refusals: they run the hook's
real code (config, metadata, planner) and change nothing on the host.
"""

import json
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from test_hook_dropin import DROPIN, TAGGED, UNTAGGED, _load_dropin, installed  # noqa: F401
from virtvlan.hook import handler as hook
from virtvlan.cli import install
from virtvlan.agent import serve

# A prepare the config refuses (VLAN 5 not allowed): it runs the hook's real code and
# changes nothing. (migrate and restore are never served: see test_filter_ops_*.)
REFUSED = ["vm1", "prepare", "begin", "-"]


def refused(conf: Path) -> str:
    """The hook's one line for REFUSED of TAGGED under the `conf` fixture."""
    return ("virt-vlan: domain vm1, interface 52:54:00:00:00:01: VLAN 5 not allowed on uplink "
            "eth0 (allowed: 7); ask the host admin to add it to allowed-vlans in [uplink eth0] "
            "of %s\n" % conf)


@pytest.fixture
def conf(tmp_path, monkeypatch) -> Path:
    """A host config that refuses VLAN 5 (allowed: 7): the hook refuses with one line."""
    path = tmp_path / "vv.conf"
    path.write_text("[uplink eth0]\nallowed-vlans = 7\n")
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(path))
    monkeypatch.delenv("VIRT_VLAN_NO_AGENT", raising=False)
    return path


@pytest.fixture
def sock_path(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "run" / "agent.sock"
    monkeypatch.setenv("VIRT_VLAN_AGENT_SOCKET", str(path))
    return path


@pytest.fixture
def server(sock_path) -> Iterator[serve.HookServer]:
    """The real hook server (hook.serve behind it) on a socket in tmp."""
    running = serve.HookServer(path=str(sock_path), preload=False)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def dropin() -> dict:
    return _load_dropin()


def _raw(path: Path, payload: bytes) -> dict:
    """Send raw bytes to the server; the decoded reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(payload)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    (size,) = struct.unpack("!I", data[:4])
    assert len(data) == 4 + size, data
    return json.loads(data[4:])


def _request(**fields) -> bytes:  # type: ignore[no-untyped-def]
    message = {"v": 1, "driver": "qemu", "args": REFUSED, "xml": TAGGED.decode("latin-1"),
               "config": None}
    message.update(fields)
    return serve.encode(message)


# --- agreement between the two files ------------------------------------------------------

def test_dropin_and_server_agree_on_path_and_version(dropin):
    assert dropin["AGENT_SOCKET"] == serve.SOCKET_PATH == "/run/virt-vlan/agent.sock"
    with open(DROPIN, encoding="utf-8") as handle:
        text = handle.read()
    assert '{"v": %d,' % serve.VERSION in text


# --- served: the same answer as the hook's own run ---------------------------------------------

def test_served_reply_is_what_the_hook_itself_answers(conf, server, dropin):
    local = hook.serve("qemu", REFUSED, TAGGED)
    assert local == (1, refused(conf))
    assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) == local
    assert server.served == 1


def test_served_request_uses_the_hooks_config_path(tmp_path, conf, server, dropin, monkeypatch):
    # The drop-in passes its $VIRT_VLAN_CONFIG on: the agent answers with that file.
    absent = tmp_path / "absent.conf"
    monkeypatch.setenv("VIRT_VLAN_CONFIG", str(absent))
    code, err = dropin["ask_agent"]("qemu", ["vm1", "prepare", "begin", "-"], TAGGED)
    assert code == 1 and "%s does not exist" % absent in err, err
    assert err.startswith("virt-vlan: domain vm1 asks for VLANs but ")
    assert server.served == 1


def test_dropin_process_is_served_and_matches_the_local_run(conf, server, installed):
    env = dict(os.environ)
    served = subprocess.run([installed] + REFUSED, input=TAGGED, capture_output=True, env=env,
                            timeout=60)
    assert server.served == 1
    env["VIRT_VLAN_NO_AGENT"] = "1"
    local = subprocess.run([installed] + REFUSED, input=TAGGED, capture_output=True, env=env,
                           timeout=60)
    assert server.served == 1  # VIRT_VLAN_NO_AGENT=1: not asked
    assert (served.returncode, served.stdout, served.stderr) == (
        local.returncode, local.stdout, local.stderr) == (1, b"", refused(conf).encode())


def test_requests_are_served_one_at_a_time_in_order(sock_path, dropin):
    inside: List[int] = []
    most = []
    gate = threading.Lock()

    def handler(driver, args, xml, config):  # type: ignore[no-untyped-def]
        with gate:
            inside.append(1)
            most.append(len(inside))
        code = int(args[0])
        with gate:
            inside.pop()
        return code, "served %s\n" % args[0]

    running = serve.HookServer(path=str(sock_path), handler=handler, preload=False)
    running.start()
    try:
        results = {}

        def ask(n: int) -> None:
            results[n] = dropin["ask_agent"]("qemu", [str(n), "start", "begin", "-"], TAGGED)
        threads = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        running.stop()
    assert results == {n: (n, "served %d\n" % n) for n in range(8)}
    assert max(most) == 1 and running.served == 8


# --- the socket ----------------------------------------------------------------------------

def test_socket_is_root_only_replaces_a_stale_one_and_goes_on_stop(sock_path):
    sock_path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))  # a killed agent's socket: nobody listens
    stale.close()
    running = serve.HookServer(path=str(sock_path), preload=False)
    running.start()
    try:
        info = os.stat(sock_path)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(sock_path.parent).st_mode) & 0o022 == 0
        assert os.listdir(sock_path.parent) == ["agent.sock"]  # no temporary name left
        reply = _raw(sock_path, _request(args=["vm1", "started", "begin", "-"]))
        assert reply == {"v": 1, "rc": 0, "err": ""}
    finally:
        running.stop()
    assert not sock_path.exists()


def test_stop_leaves_a_socket_that_a_newer_agent_bound(sock_path):
    first = serve.HookServer(path=str(sock_path), preload=False)
    first.start()
    second = serve.HookServer(path=str(sock_path), preload=False)
    second.start()
    try:
        first.stop()
        assert sock_path.exists()
        assert _raw(sock_path, _request(args=["vm1", "started"]))["rc"] == 0
        assert (first.served, second.served) == (0, 1)
    finally:
        second.stop()
    assert not sock_path.exists()


# --- bad requests: an error reply, and the server keeps serving ----------------------------------

@pytest.mark.parametrize("payload, reason", [
    (struct.pack("!I", serve.MAX_REQUEST + 1), "over the limit"),
    (struct.pack("!I", 5) + b"{nope", "not JSON"),
    (_request(v=3), "protocol version 3"),
    (_request(v=True), "protocol version True"),
    (_request(driver="lxc"), "driver 'lxc'"),
    (_request(args="vm1 start"), "args must be a list"),
    (_request(xml=None), "xml must be a string"),
    (_request(xml="\u20ac"), "not latin-1"),
    (serve.encode([1, 2]), "protocol version None"),
])
def test_bad_request_gets_an_error_reply_and_the_server_survives(conf, server, dropin,
                                                                  payload, reason):
    reply = _raw(server.path, payload)
    assert reply["rc"] is None and reason in reply["err"], reply
    assert server.served == 0
    assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) == (1, refused(conf))
    assert server.served == 1


def test_bad_version_2_request_is_refused_in_version_2_form(server, dropin):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(server.path)
        body = dropin["request_for"]("lxc", REFUSED, TAGGED, None)
        sock.sendall(struct.pack("!I", len(body)) + body)
        data = sock.recv(65536, socket.MSG_WAITALL)
    assert data[4:].startswith(b"-\ndriver 'lxc' is not qemu or network"), data
    assert server.served == 0


def test_client_that_hangs_up_mid_request_does_not_stop_the_server(conf, server, dropin):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(server.path)
        sock.sendall(struct.pack("!I", 1000) + b'{"v": 1')
    assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) == (1, refused(conf))


def test_handler_crash_is_a_refusal_reply_and_the_server_survives(sock_path, dropin):
    calls = []

    def handler(driver, args, xml, config):  # type: ignore[no-untyped-def]
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return 0, ""

    running = serve.HookServer(path=str(sock_path), handler=handler, preload=False)
    running.start()
    try:
        assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) is None  # the hook works itself
        assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) == (0, "")
    finally:
        running.stop()


# --- fallback: anything but a whole reply means "do it yourself" ---------------------------------

def test_no_agent_socket_means_local(sock_path, dropin):
    assert not sock_path.exists()
    assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) is None


def test_no_agent_env_means_local_without_connecting(server, dropin, monkeypatch):
    monkeypatch.setenv("VIRT_VLAN_NO_AGENT", "1")
    assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) is None
    assert server.served == 0


def test_socket_nobody_listens_on_means_local(sock_path, dropin):
    sock_path.parent.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))
    dead.close()  # ECONNREFUSED, as after `kill -9` of the agent
    assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) is None


def _fake_agent(path: Path, behave: Callable[[socket.socket], None]) -> threading.Thread:
    """An agent that misbehaves: accepts one connection and runs `behave` on it."""
    path.parent.mkdir(exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve_one() -> None:
        conn, _ = listener.accept()
        try:
            behave(conn)
        finally:
            conn.close()
            listener.close()
    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    return thread


def _read_request(conn: socket.socket) -> dict:
    (size,) = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))
    return json.loads(conn.recv(size, socket.MSG_WAITALL))


def _reply(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


@pytest.mark.parametrize("name, behave", [
    ("closes before replying", lambda conn: conn.recv(10)),
    ("dies mid-reply", lambda conn: (_read_request(conn),
                                      conn.sendall(struct.pack("!I", 100) + b"0\nvirt-"))),
    ("garbled reply", lambda conn: (_read_request(conn), conn.sendall(_reply(b"not a code")))),
    ("refusal", lambda conn: (_read_request(conn), conn.sendall(_reply(b"-\nbad request")))),
    ("reply without a code", lambda conn: (_read_request(conn), conn.sendall(_reply(b"\nx")))),
    ("reply with a quoted code", lambda conn: (_read_request(conn),
                                                conn.sendall(_reply(b'"0"\n')))),
    ("a version 1 reply", lambda conn: (_read_request(conn), conn.sendall(
        serve.encode({"v": 1, "rc": 0, "err": ""})))),
    ("stderr that is not UTF-8", lambda conn: (_read_request(conn),
                                                conn.sendall(_reply(b"1\n\xff")))),
])
def test_agent_failing_before_a_whole_reply_means_local(sock_path, dropin, name, behave):
    thread = _fake_agent(sock_path, behave)
    assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) is None, name
    thread.join(10)


def test_agent_that_never_replies_times_out_into_local(sock_path, dropin):
    done = threading.Event()
    thread = _fake_agent(sock_path, lambda conn: (_read_request(conn), done.wait(30)))
    dropin["REPLY_TIMEOUT"] = 0.5
    assert dropin["ask_agent"]("qemu", REFUSED, TAGGED) is None
    done.set()
    thread.join(10)


def test_request_carries_the_hooks_bytes_args_and_config(sock_path, dropin, conf):
    seen = []
    xml = TAGGED + b"<!-- \xe9\xff\x00 -->"

    def behave(conn: socket.socket) -> None:
        seen.append(_read_request(conn))
        conn.sendall(serve.encode_reply(2, 3, "three\n"))
    thread = _fake_agent(sock_path, behave)
    assert dropin["ask_agent"]("network", ["net1", "start", "begin", "-"], xml) == (3, "three\n")
    thread.join(10)
    (request,) = seen
    assert request == {"v": 2, "driver": "network", "args": ["net1", "start", "begin", "-"],
                       "xml": xml.decode("latin-1"), "config": str(conf)}
    assert request["xml"].encode("latin-1") == xml


@pytest.mark.parametrize("text", ['plain', 'quote " and backslash \\ and \\u0041',
                                  "controls \x00\x01\t\n\r\x1f\x7f", "latin-1 \xe9\xff"])
def test_hand_written_request_is_the_json_the_server_reads(dropin, text):
    xml = text.encode("latin-1")
    body = dropin["request_for"]("qemu", [text, "start"], xml, text)
    assert json.loads(body.decode("utf-8")) == {"v": 2, "driver": "qemu", "args": [text, "start"],
                                                "xml": text, "config": text}
    assert json.loads(dropin["request_for"]("qemu", [], b"", None))["config"] is None


def test_version_1_request_of_an_older_dropin_gets_a_version_1_reply(conf, server, sock_path):
    reply = _raw(sock_path, _request(v=1))
    assert reply == {"v": 1, "rc": 1, "err": refused(conf)}


def test_dropin_process_falls_back_to_local_when_the_agent_dies(conf, sock_path, installed):
    thread = _fake_agent(sock_path, lambda conn: conn.recv(10))
    done = subprocess.run([installed] + REFUSED, input=TAGGED, capture_output=True,
                          env=dict(os.environ), timeout=60)
    thread.join(10)
    assert (done.returncode, done.stdout, done.stderr) == (1, b"", refused(conf).encode())


# --- the untagged fast path stays as it was ----------------------------------------------------

def test_untagged_domain_imports_neither_socket_nor_json(tmp_path, sock_path):
    base = getattr(sys, "_base_executable", sys.executable)
    path = tmp_path / "hooks" / "qemu.d" / "virt-vlan"
    path.parent.mkdir(parents=True)
    path.write_text(install.dropin_text(base))
    path.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "VIRT_VLAN_AGENT_SOCKET": str(sock_path),
           "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run([base, "-X", "importtime", "-IS", str(path), "plain", "prepare",
                           "begin", "-"], input=UNTAGGED, capture_output=True, env=env,
                          timeout=60)
    assert done.returncode == 0 and done.stdout == b""
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.decode().splitlines()}
    assert "encodings" in imported  # the import log works...
    assert not {"socket", "json", "_socket", "site"} & imported  # ...and these never load


def test_served_call_imports_neither_socket_nor_json(conf, server, sock_path, installed):
    base = getattr(sys, "_base_executable", sys.executable)
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    done = subprocess.run([base, "-X", "importtime", "-IS", installed] + REFUSED, input=TAGGED,
                          capture_output=True, env=env, timeout=60)
    assert server.served == 1
    lines = done.stderr.decode().splitlines()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time")}
    assert done.returncode == 1 and refused(conf) in done.stderr.decode()
    assert "_socket" in imported  # the import log works...
    assert not {"socket", "json", "struct", "re", "site"} & imported  # ...and these never load


def test_tagged_domain_without_an_agent_socket_imports_nothing_to_ask_it(tmp_path):
    # No socket: one stat, then the hook's own run; socket/json are not
    # loaded just to find nobody there.
    base = getattr(sys, "_base_executable", sys.executable)
    code = ("import importlib.util, sys\n"
            "spec = importlib.util.spec_from_file_location('dropin', sys.argv[1])\n"
            "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
            "print(mod.ask_agent('qemu', ['vm1', 'start'], b'x'),"
            " sorted({'socket', 'json', 'struct'} & set(sys.modules)))\n")
    done = subprocess.run([base, "-IS", "-c", code, str(DROPIN)], capture_output=True,
                          text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin",
                               "VIRT_VLAN_AGENT_SOCKET": str(tmp_path / "absent.sock")})
    assert (done.returncode, done.stdout.strip()) == (0, "None []"), done.stderr


# --- migrate and restore: the drop-in runs them itself -------------------------------------

@pytest.mark.parametrize("op", ["migrate", "restore"])
def test_filter_ops_are_refused_so_an_older_dropin_works_itself(conf, server, sock_path,
                                                                dropin, op):
    # libvirt reads these hooks' stdout as the domain XML; no reply carries it.
    args = ["vm1", op, "begin", "-"]
    assert dropin["ask_agent"]("qemu", args, TAGGED) is None  # version 2: not served
    reply = _raw(sock_path, _request(v=1, args=args))
    assert reply["v"] == 1 and reply["rc"] is None and "drop-in runs it itself" in reply["err"]
    assert server.served == 0


def test_filter_ops_never_reach_the_agent_from_this_dropin(conf, server, installed, caplog):
    done = subprocess.run([installed, "vm1", "migrate", "begin", "-"], input=TAGGED,
                          capture_output=True, env=dict(os.environ), timeout=60)
    # Neither served nor refused: the drop-in did not connect at all.
    assert server.served == 0
    assert not [r for r in caplog.records if "hook request refused" in r.getMessage()]
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.decode() == refused(conf)
