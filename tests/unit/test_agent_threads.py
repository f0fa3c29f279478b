"""A thread of the agent that dies ends the agent (exit 1, systemd restarts
it) and takes the hook server's socket with it: never a half-alive agent."""

import threading

import pytest

from virtvlan.agent import service

GUARD = 60  # seconds before a failing test gives up on the agent


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRT_VLAN_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("VIRT_VLAN_LOCK", str(tmp_path / "run" / "lock"))
    monkeypatch.setenv("VIRT_VLAN_AGENT_SOCKET", str(tmp_path / "run" / "agent.sock"))
    conf = tmp_path / "vv.conf"
    conf.write_text("[uplink eth0]\ndevice = vvnouplink0\nallowed-vlans = 5,7\n")
    return tmp_path


def _run(agent: service.Agent) -> dict:
    result: dict = {}

    def main() -> None:
        try:
            result["code"] = agent.run()
        except BaseException as err:  # noqa: B902 (what the process would die of)
            result["raised"] = err
    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    thread.join(GUARD)
    if thread.is_alive():
        agent.stop()
        thread.join(GUARD)
        pytest.fail("the agent kept running after its thread died")
    return result


def test_a_dead_thread_ends_the_agent_with_exit_1_and_its_socket(env, monkeypatch):
    def monitor_that_dies(self):  # type: ignore[no-untyped-def]
        def boom() -> None:
            raise RuntimeError("simulated bug in a monitor thread")
        threading.Thread(target=boom, name="vv-linkmon-read", daemon=True).start()
    monkeypatch.setattr(service.Agent, "_start_monitor", monitor_that_dies)
    agent = service.Agent("test:///default", str(env / "vv.conf"))
    seen = []
    real = service.serve.HookServer.start

    def start(server):  # type: ignore[no-untyped-def]
        real(server)
        seen.append((env / "run" / "agent.sock").exists())
    monkeypatch.setattr(service.serve.HookServer, "start", start)
    assert _run(agent) == {"code": 1}
    assert seen == [True] and agent.failed == "vv-linkmon-read"
    assert not (env / "run" / "agent.sock").exists()
    assert threading.excepthook is not agent._thread_died  # restored


def test_a_crash_of_the_main_thread_removes_the_socket(env, monkeypatch):
    def broken_load(path, who):  # type: ignore[no-untyped-def]
        raise ValueError("simulated bug reading the config")
    monkeypatch.setattr(service, "load_or_refuse", broken_load)
    agent = service.Agent("test:///default", str(env / "vv.conf"), heal=False)
    result = _run(agent)
    assert isinstance(result.get("raised"), ValueError), result
    assert agent.hook_server is not None
    assert not (env / "run" / "agent.sock").exists()
