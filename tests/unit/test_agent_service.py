"""The agent's libvirt side against libvirt's test driver (real libvirt code,
in process: test:///default is shared by every connection of this process).

Events flow from libvirt's native event loop through the Watch callbacks to
the agent's queue and cache. The taps named here do not exist on this host,
so the engine wires nothing (reconcile.present skips absent taps): these
tests change nothing on the machine.
"""

import threading
import time

import libvirt
import pytest

from virtvlan.agent import service

UUID = "9a7c3b2e-5d4f-4e6a-8b1c-0d2e3f405162"
MAC = "52:54:00:0a:9e:01"


def domain_xml(vlan):
    return ("<domain type='test'><name>vv-agent-unit</name><uuid>%s</uuid><memory>65536</memory>"
            "<os><type>hvm</type></os><metadata><vv:vlan xmlns:vv='urn:virt-vlan:1'>"
            "<vv:interface mac='%s' mode='access' vlan='%d'/></vv:vlan></metadata><devices>"
            "<interface type='bridge'><mac address='%s'/><source bridge='lan'/>"
            "<target dev='vvnotap0'/></interface></devices></domain>" % (UUID, MAC, vlan, MAC))


def wait(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for %s" % what)
        time.sleep(0.05)


@pytest.fixture
def agent(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRT_VLAN_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("VIRT_VLAN_LOCK", str(tmp_path / "run" / "lock"))
    conf = tmp_path / "vv.conf"
    conf.write_text("[uplink eth0]\ndevice = vvnouplink0\nallowed-vlans = 5,7\n")
    running = service.Agent("test:///default", str(conf), heal=False)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    wait(lambda: running._connection() is not None, "the agent to connect")
    yield running
    running.stop()
    thread.join(30)
    assert not thread.is_alive(), "the agent did not stop"


@pytest.fixture
def conn():
    connection = libvirt.open("test:///default")
    yield connection
    try:
        dom = connection.lookupByUUIDString(UUID)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    except libvirt.libvirtError:
        pass
    connection.close()


def cached(agent):
    entry = agent.domains.get("domain-" + UUID)
    return [(w.port, w.vlans) for w in entry.wants] if entry else None


def test_events_keep_the_cache_of_running_tagged_guests(agent, conn):
    dom = conn.defineXML(domain_xml(5))
    assert cached(agent) is None  # defined, not running
    dom.create()
    wait(lambda: cached(agent) == [("vvnotap0", (5,))], "the started guest in the cache")
    # A live metadata change (METADATA_CHANGE) is read again at once.
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    "<vlan><interface mac='%s' mode='access' vlan='7'/></vlan>" % MAC, "vv",
                    "urn:virt-vlan:1", libvirt.VIR_DOMAIN_AFFECT_LIVE)
    wait(lambda: cached(agent) == [("vvnotap0", (7,))], "the new VLAN in the cache")
    dom.destroy()
    wait(lambda: cached(agent) is None, "the stopped guest out of the cache")


def test_metadata_for_a_nic_not_attached_yet_is_pending(agent, conn):
    dom = conn.defineXML(domain_xml(5))
    dom.create()
    wait(lambda: cached(agent) is not None, "the guest in the cache")
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    "<vlan><interface mac='%s' mode='access' vlan='5'/>"
                    "<interface mac='52:54:00:0a:9e:02' mode='access' vlan='7'/></vlan>" % MAC,
                    "vv", "urn:virt-vlan:1", libvirt.VIR_DOMAIN_AFFECT_LIVE)
    wait(lambda: agent.domains["domain-" + UUID].pending == ("52:54:00:0a:9e:02",),
         "the prepared entry as pending")
    assert cached(agent) == [("vvnotap0", (5,))]


def test_refused_metadata_is_cached_as_an_error_and_the_agent_carries_on(agent, conn):
    dom = conn.defineXML(domain_xml(5).replace("vlan='5'", "vlan='9'"))
    dom.create()
    wait(lambda: "domain-" + UUID in agent.domains, "the guest in the cache")
    assert "VLAN 9 not allowed on uplink eth0" in agent.domains["domain-" + UUID].error
    assert agent._connection() is not None


def test_verbose_logging_leaves_out_pyroute2s_message_dumps(monkeypatch):
    import logging

    from virtvlan.agent import service

    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("pyroute2").level)
    try:
        service.setup_logging(verbose=True)
        assert root.getEffectiveLevel() == logging.DEBUG
        assert logging.getLogger("virtvlan.apply.engine").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("pyroute2.netlink.core").isEnabledFor(logging.DEBUG)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("pyroute2").setLevel(saved[2])


def test_a_running_agent_plans_from_its_live_model_and_gives_it_up_at_stop(agent):
    from virtvlan.apply import engine

    assert agent.live is not None, "the agent made no live host model"
    assert engine._live is agent.live
    assert agent.live.consistency() == []  # this machine's own namespace, read twice


def test_the_periodic_check_reads_the_host_again_when_the_model_drifted(caplog):
    class Drifted:
        resets = 0

        def consistency(self):
            return ["br05 has mtu=1400 in the model, 1500 on the host"]

        def reset(self):
            self.resets += 1

    idle = service.Agent("test:///default", None, heal=False)
    idle.live = Drifted()
    with caplog.at_level("ERROR"):
        idle._check_live_model()
    assert idle.live.resets == 1
    assert "live host model differs from the host" in caplog.text
    assert "br05 has mtu=1400" in caplog.text
