"""xml-examples/: every example against its golden file, and the examples' own hygiene.

Each xml-examples/NAME.xml (and virt-vlan.conf) has xml-examples/expected/NAME.txt
with its exact outcome against xml-examples/virt-vlan.conf: for valid domains
and networks the parsed specs and the resulting wants; for invalid ones the
one-line error. After a deliberate change, regenerate and review the diff:

    VIRT_VLAN_REGEN=1 .venv/bin/python -m pytest -q tests/unit/test_xml_examples.py

Regenerating writes the files and fails the run, so that CI never regenerates
silently; run again without VIRT_VLAN_REGEN to see it pass.
"""

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import List

import pytest
from lxml import etree

from virtvlan.parse import config, metadata
from virtvlan.parse.config import Config
from virtvlan.errors import VirtVlanError
from virtvlan.model import Link, Snapshot
from virtvlan.plan.planner import plan
from virtvlan.parse.vlans import format_vlan_list

EXAMPLES = Path(__file__).resolve().parents[2] / "xml-examples"
EXPECTED = EXAMPLES / "expected"
CONF = EXAMPLES / "virt-vlan.conf"
# The path messages show: stable, whatever the checkout's location.
CONF_SHOWN = "xml-examples/virt-vlan.conf"
REGEN = os.environ.get("VIRT_VLAN_REGEN") == "1"

XML_FILES = sorted(EXAMPLES.glob("*.xml"))
ALL_FILES = XML_FILES + [CONF]
REQUIRED = [
    "access-vlan5.xml", "trunk-ranges.xml", "two-nics-mixed-modes.xml", "uplink-override.xml",
    "untagged.xml", "network-vlan5.xml", "guest-on-network-vlan5.xml", "invalid-vlan0.xml",
    "invalid-vlan4095.xml", "invalid-vlan5000.xml", "invalid-vlan-not-numeric.xml",
    "invalid-reversed-range.xml", "invalid-duplicate-mac.xml", "invalid-mac-not-on-domain.xml",
    "invalid-unknown-mode.xml", "invalid-vlan-on-trunk.xml", "invalid-vlans-on-access.xml",
    "invalid-unknown-attribute.xml", "invalid-unknown-uplink.xml",
    "invalid-doctype-external-entity.xml", "virt-vlan.conf",
]


def example_config() -> Config:
    return config.parse(CONF.read_text(encoding="utf-8"), CONF_SHOWN)


def root_tag(xml: bytes) -> str:
    found = re.search(rb"<(domain|network)[\s/>]", xml)
    assert found, "neither <domain> nor <network>"
    return found.group(1).decode()


def safe_tree(path: Path):  # type: ignore[no-untyped-def]
    """The example as a tree, with no DTD or entity processing."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.parse(str(path), parser).getroot()


# --- the outcome, in the stable text form of the golden files -----------------


def _where(conf: Config, uplink_name: str, mode: str, vlans) -> str:
    uplink = conf.uplink(uplink_name, "example")
    if mode == "trunk":
        return "bridge %s" % uplink.trunk_bridge
    return "bridge %s fed by %s" % (uplink.access_bridge(vlans[0]), uplink.feed(vlans[0]))


def _native(native) -> str:
    """', native V' for a trunk with a native VLAN ('' otherwise: older goldens stay)."""
    return "" if native is None else ", native %d" % native


def describe_domain(xml: bytes, conf: Config) -> List[str]:
    dom = metadata.parse_domain(xml)
    lines = ["domain %s (uuid %s)" % (dom.name, dom.uuid),
             "is_tagged: %s" % ("yes" if metadata.is_tagged(xml) else "no")]
    for nic in dom.nics:
        lines.append("nic %s: type %s, source %s, target %s" % (
            nic.mac, nic.type, nic.source_bridge or nic.source_network or "-", nic.target or "-"))
    for spec in dom.specs:
        lines.append("spec %s: %s %s%s, uplink %s" % (spec.mac, spec.mode,
                                                       format_vlan_list(spec.vlans),
                                                       _native(spec.native),
                                                       spec.uplink or "(default)"))
    wants = metadata.wants(dom, conf)
    for spec, want in zip(dom.specs, wants):
        lines.append("want %s: uplink %s, %s %s%s, port %s; %s" % (
            spec.mac, want.uplink, want.mode, format_vlan_list(want.vlans),
            _native(want.native), want.port or "-",
            _where(conf, want.uplink, want.mode, want.vlans)))
    if not wants:
        lines.append("wants: none")
    return lines


def describe_network(xml: bytes, conf: Config) -> List[str]:
    net = metadata.parse_network(xml)
    lines = ["network %s: forward %s, bridge %s, vlan %s, uplink %s" % (
        net.name, net.forward, net.bridge, net.vlan, net.uplink or "(default)")]
    if net.vlan is None:
        return lines + ["wants: none"]
    want = metadata.network_want(net, conf)
    lines.append("want: uplink %s, %s %s; %s" % (want.uplink, want.mode,
                                                 format_vlan_list(want.vlans),
                                                 _where(conf, want.uplink, want.mode, want.vlans)))
    return lines


def outcome(path: Path) -> str:
    """What virt-vlan makes of the example, as the golden file holds it."""
    if path == CONF:
        return config.describe(example_config()) + "\n"
    xml = path.read_bytes()
    try:
        describe = describe_network if root_tag(xml) == "network" else describe_domain
        return "\n".join(describe(xml, example_config())) + "\n"
    except VirtVlanError as err:
        return "%s: %s\n" % (type(err).__name__, err)


def golden(path: Path) -> Path:
    return EXPECTED / (path.stem + ".txt")


# --- golden files -------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_example_matches_its_golden_file(path):
    actual = outcome(path)
    expected = golden(path)
    if REGEN:
        EXPECTED.mkdir(exist_ok=True)
        expected.write_text(actual, encoding="utf-8")
        pytest.fail("VIRT_VLAN_REGEN=1: wrote %s; review the diff, then run again without "
                    "VIRT_VLAN_REGEN" % expected.relative_to(EXAMPLES.parent))
    assert expected.exists(), ("%s has no golden file %s; write it with VIRT_VLAN_REGEN=1 "
                               "(see this module's docstring)" % (path.name, expected.name))
    assert actual == expected.read_text(encoding="utf-8")


def test_every_golden_file_has_an_example():
    stems = {path.stem for path in ALL_FILES}
    assert sorted(p.name for p in EXPECTED.glob("*.txt") if p.stem not in stems) == []


def test_required_examples_exist():
    assert [name for name in REQUIRED if not (EXAMPLES / name).exists()] == []


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: p.name)
def test_invalid_examples_fail_with_one_line_and_valid_ones_do_not(path):
    lines = outcome(path).splitlines()
    if path.name.startswith("invalid-"):
        assert len(lines) == 1
        assert lines[0].startswith("InputError: ")
    else:
        assert not lines[0].startswith("InputError")


# --- the examples are usable as they stand ------------------------------------


def domain_files():
    return [p for p in XML_FILES if root_tag(p.read_bytes()) == "domain"]


def network_files():
    return [p for p in XML_FILES if root_tag(p.read_bytes()) == "network"]


@pytest.mark.parametrize("path", domain_files(), ids=lambda p: p.name)
def test_domain_example_is_a_complete_kvm_domain(path):
    dom = safe_tree(path)
    assert dom.tag == "domain" and dom.get("type") == "kvm"
    uuid.UUID(dom.findtext("uuid"))
    for child in ("name", "memory", "vcpu", "os/type"):
        assert dom.findtext(child), child
    interfaces = dom.findall("devices/interface")
    assert interfaces
    for iface in interfaces:
        assert iface.get("type") in ("bridge", "network")
        assert iface.find("mac").get("address")
        assert iface.find("source").get(iface.get("type"))
        assert iface.find("model").get("type") == "virtio"
    # libvirt has no <graphics type='none'/>; a headless guest has no <graphics>.
    assert dom.find("devices/graphics") is None


@pytest.mark.parametrize("path", network_files(), ids=lambda p: p.name)
def test_network_example_is_a_bridge_network(path):
    net = safe_tree(path)
    uuid.UUID(net.findtext("uuid"))
    assert net.findtext("name")
    assert net.find("forward").get("mode") == "bridge"
    assert net.find("bridge").get("name")


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: p.name)
def test_example_validates_against_libvirt_schema(path):
    # tests/setup-host installs libvirt-clients: a missing validator is a
    # broken set-up, not a reason to skip.
    assert shutil.which("virt-xml-validate"), "install libvirt-clients (tests/setup-host)"
    kind = root_tag(path.read_bytes())
    result = subprocess.run(["virt-xml-validate", str(path), kind], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_domain_names_and_uuids_are_unique():
    trees = [safe_tree(p) for p in domain_files()] + [safe_tree(p) for p in network_files()]
    names = [(t.tag, t.findtext("name")) for t in trees]
    uuids = [t.findtext("uuid") for t in trees]
    assert len(set(names)) == len(names)
    assert len(set(uuids)) == len(uuids)


VALID_DOMAINS = [p for p in domain_files() if not p.name.startswith("invalid-")]


@pytest.mark.parametrize("path", VALID_DOMAINS, ids=lambda p: p.name)
def test_tagged_nics_name_the_bridge_virt_vlan_wires_them_to(path):
    conf = example_config()
    dom = metadata.parse_domain(path.read_bytes())
    for spec, want in zip(dom.specs, metadata.wants(dom, conf)):
        uplink = conf.uplink(want.uplink, "example")
        bridge = (uplink.trunk_bridge if want.mode == "trunk"
                  else uplink.access_bridge(want.vlans[0]))
        assert dom.nic(spec.mac).source_bridge == bridge


@pytest.mark.parametrize("path", VALID_DOMAINS, ids=lambda p: p.name)
def test_valid_domain_is_plannable_on_a_plain_host(path):
    conf = example_config()
    dom = metadata.parse_domain(path.read_bytes())
    taps = tuple(Link(nic.target, kind="tun") for nic in dom.nics if nic.target)
    # filters=(): nft is installed and virt-vlan's table is empty (port
    # security is on by default, and the examples plan with it).
    host = Snapshot(links=(Link("eth0", mac="52:54:00:aa:00:00"),
                           Link("eth1", mac="52:54:00:aa:00:01")) + taps, filters=())
    wants = metadata.wants(dom, conf)
    first = plan(wants, conf, host)
    assert not plan(wants, conf, first.simulate(host))


@pytest.mark.parametrize("path", VALID_DOMAINS, ids=lambda p: p.name)
def test_untagged_domain_takes_the_fast_path(path):
    xml = path.read_bytes()
    assert metadata.is_tagged(xml) == metadata.parse_domain(xml).tagged


def test_guest_on_network_uses_the_network_example():
    dom = metadata.parse_domain((EXAMPLES / "guest-on-network-vlan5.xml").read_bytes())
    net = metadata.parse_network((EXAMPLES / "network-vlan5.xml").read_bytes())
    assert [nic.source_network for nic in dom.nics] == [net.name]


# --- the example config and the README ----------------------------------------


def test_example_config_loads_from_disk():
    loaded = config.load(str(CONF))
    assert loaded is not None
    assert [u.name for u in loaded.uplinks] == ["eth0", "eth1"]
    assert [u.wiring for u in loaded.uplinks] == ["access", "trunk"]
    assert loaded.uplinks[1].host_vlans


@pytest.mark.parametrize("key", sorted(config.GLOBAL_KEYS | config.UPLINK_KEYS))
def test_example_config_shows_every_key(key):
    text = CONF.read_text(encoding="utf-8")
    assert re.search(r"^#? ?%s =" % re.escape(key), text, re.MULTILINE), key


def test_readme_lists_every_example():
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    assert [p.name for p in ALL_FILES if p.name not in readme] == []
